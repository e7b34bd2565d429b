"""The encryption key in use: checked against a stored canary, and rotated to a new one."""

from dataclasses import dataclass

from django.db import transaction

from accounts.models import Credential, EncryptionCanary
from accounts.secrets import (
    SecretUnreadable,
    encrypt,
    encryption_key_name,
    is_readable,
    reencrypt,
)

# The encrypted columns of a credential; every one is re-encrypted together.
_ENCRYPTED_FIELDS = ("secret_encrypted", "oauth_client_secret_encrypted", "access_token_encrypted")


class EncryptionKeyMismatch(Exception):
    """The configured key does not open what is stored. The message is one line for operators."""


def _mismatch() -> EncryptionKeyMismatch:
    return EncryptionKeyMismatch(
        f"{encryption_key_name()} is not the key the stored credentials were encrypted with; "
        "set the original key back, or rotate (docs/security.md: rotating the key)"
    )


def encryption_key_verify() -> None:
    """Returns when the configured key opens the stored canary, writing the canary at first use
    (no canary yet, and no stored credential that the key cannot open).

    Raises EncryptionKeyMismatch otherwise. A previous key (ROTATOR_PREVIOUS_ENCRYPTION_KEYS)
    that opens the canary passes: that is a rotation in progress.
    """
    canary = EncryptionCanary.objects.order_by("id").first()
    if canary is not None:
        if not is_readable(canary.token):
            raise _mismatch()
        return
    # An install from before the canary: the oldest stored secret speaks for the key.
    oldest = (
        Credential.objects.exclude(status=Credential.Status.UNREADABLE)
        .order_by("id")
        .values_list("secret_encrypted", flat=True)
        .first()
    )
    if oldest is not None and not is_readable(oldest):
        raise _mismatch()
    # Two processes starting together may both get here; either canary is right.
    EncryptionCanary.objects.create(token=encrypt(EncryptionCanary.PLAINTEXT))


def encryption_health() -> str:
    """ "ok", or what /healthz reports when the key does not open the stored secrets."""
    try:
        encryption_key_verify()
    except EncryptionKeyMismatch:
        return f"error: wrong key ({encryption_key_name()})"
    except Exception as exc:  # the database's own failure is reported beside this one
        return f"error: {type(exc).__name__}"
    return "ok"


_verified: set[tuple[str, ...]] = set()


def encryption_key_verify_once(*, key_id: tuple[str, ...]) -> None:
    """encryption_key_verify, once per process and key (`key_id`): the check before a secret is
    written, so that a command run with the wrong key does not store anything under it."""
    if key_id not in _verified:
        encryption_key_verify()
        _verified.add(key_id)


@dataclass(frozen=True, slots=True)
class RotationSummary:
    reencrypted: int
    restored: int
    unreadable: int

    @property
    def summary(self) -> str:
        return (
            f"{self.reencrypted} credential(s) re-encrypted under {encryption_key_name()}, "
            f"{self.restored} back in their pools, {self.unreadable} still unreadable"
        )


def encryption_key_rotate() -> RotationSummary:
    """Re-encrypts every stored secret and the canary under the current key, reading each
    with the current or a previous key (ROTATOR_PREVIOUS_ENCRYPTION_KEYS), in one transaction.

    A credential that no configured key opens is marked unreadable (out of the pool); one
    marked unreadable that now opens goes back to active. Returns the counts.
    """
    reencrypted = restored = unreadable = 0
    with transaction.atomic():
        for credential in Credential.objects.select_for_update().order_by("id"):
            fields = []
            try:
                for name in _ENCRYPTED_FIELDS:
                    token = getattr(credential, name)
                    if token:
                        setattr(credential, name, reencrypt(token))
                        fields.append(name)
            except SecretUnreadable:
                credential.refresh_from_db()
                if credential.status != Credential.Status.UNREADABLE:
                    credential.status = Credential.Status.UNREADABLE
                    credential.last_error = f"cannot be decrypted with {encryption_key_name()}"
                    # Saved through the model so the pool reloads everywhere (signals).
                    credential.save(update_fields=["status", "last_error"])
                unreadable += 1
                continue
            if credential.status == Credential.Status.UNREADABLE:
                credential.status = Credential.Status.ACTIVE
                fields.append("status")
                restored += 1
            credential.save(update_fields=fields)
            reencrypted += 1
        EncryptionCanary.objects.all().delete()
        EncryptionCanary.objects.create(token=encrypt(EncryptionCanary.PLAINTEXT))
    return RotationSummary(reencrypted=reencrypted, restored=restored, unreadable=unreadable)
