"""The three secret helpers used everywhere: encrypt/decrypt, digest, mask."""

import base64
import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from common.redact import secret_mask


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured key."""


# In ROTATOR_PREVIOUS_ENCRYPTION_KEYS, the key Rotator derives from SECRET_KEY when
# ROTATOR_ENCRYPTION_KEY is unset (docs/security.md, rotating the key).
DERIVED_KEY_NAME = "SECRET_KEY"


def _fernet_of(name: str, value: str) -> Fernet:
    try:
        return Fernet(value.encode())
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a Fernet key (32 bytes, urlsafe base64); "
            "make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None


def _derived_fernet(secret_key: str) -> Fernet:
    # HKDF separates this key from SECRET_KEY's other uses (sessions, signing).
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"rotator credential encryption"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


@cache
def _fernet_for(configured: str, previous: tuple[str, ...], secret_key: str) -> MultiFernet:
    """Encrypts with the configured key (or the one derived from SECRET_KEY), decrypts with it
    or any previous key. Cached per value, so tests that change the settings get a new one."""
    current = (
        _fernet_of("ROTATOR_ENCRYPTION_KEY", configured)
        if configured
        else _derived_fernet(secret_key)
    )
    older = [
        _derived_fernet(secret_key)
        if value == DERIVED_KEY_NAME
        else _fernet_of("ROTATOR_PREVIOUS_ENCRYPTION_KEYS", value)
        for value in previous
    ]
    return MultiFernet([current, *older])


def _fernet() -> MultiFernet:
    return _fernet_for(
        settings.ROTATOR_ENCRYPTION_KEY,
        tuple(settings.ROTATOR_PREVIOUS_ENCRYPTION_KEYS),
        settings.SECRET_KEY,
    )


def encryption_key_name() -> str:
    """What the operator set to choose the key: named in every error about it."""
    if settings.ROTATOR_ENCRYPTION_KEY:
        return "ROTATOR_ENCRYPTION_KEY"
    return "ROTATOR_ENCRYPTION_KEY (unset, so the key derived from SECRET_KEY)"


def encrypt(plaintext: str) -> str:
    """Returns the Fernet token (text) for plaintext, under the current key."""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Returns the plaintext; raises SecretUnreadable if no configured key opens the token."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretUnreadable(
            f"stored secret cannot be decrypted with {encryption_key_name()}"
        ) from None


def reencrypt(token: str) -> str:
    """Returns `token` encrypted under the current key (read with any configured key);
    raises SecretUnreadable if none opens it."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretUnreadable(
            f"stored secret cannot be decrypted with {encryption_key_name()}"
        ) from None


def is_readable(token: str) -> bool:
    """True when `token` is empty (no secret stored) or a configured key opens it."""
    if not token:
        return True
    try:
        decrypt(token)
    except SecretUnreadable:
        return False
    return True


def digest(secret: str) -> str:
    """SHA-256 hex digest: how API keys are stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_equals(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (the master key)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def mask(secret: str) -> str:
    """The only way a secret is ever shown: 'AIza…x9Qk'."""
    return secret_mask(secret)
