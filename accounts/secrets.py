"""The three secret helpers used everywhere: encrypt/decrypt, digest, mask."""

import base64
import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from common.redact import secret_mask


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured key."""


@cache
def _fernet() -> Fernet:
    configured = settings.ROTATOR_ENCRYPTION_KEY
    if configured:
        try:
            return Fernet(configured.encode())
        except ValueError:
            raise ImproperlyConfigured(
                "ROTATOR_ENCRYPTION_KEY must be a Fernet key (32 bytes, urlsafe base64); "
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None
    # HKDF separates this key from SECRET_KEY's other uses (sessions, signing).
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"rotator credential encryption"
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(plaintext: str) -> str:
    """Returns the Fernet token (text) for plaintext."""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Returns the plaintext; raises SecretUnreadable if the key changed or the token is bad."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretUnreadable(
            "stored secret cannot be decrypted with the configured key"
        ) from None


def digest(secret: str) -> str:
    """SHA-256 hex digest: how API keys are stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_equals(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (the master key)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def mask(secret: str) -> str:
    """The only way a secret is ever shown: 'AIza…x9Qk'."""
    return secret_mask(secret)
