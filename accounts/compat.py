"""The config operation of the Cloudflare Workers Rotator replaces: a user's key plus
credentials in one call, creating the user on first sight."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import ApiKey, Credential
from accounts.secrets import digest
from accounts.services import CredentialAdded, OAuthAccount, api_key_create, credential_add


@dataclass(frozen=True, slots=True)
class ConfigUpdated:
    api_key: ApiKey
    user_created: bool
    added: list[CredentialAdded]
    pool_size: int

    @property
    def summary(self) -> str:
        actions = [added.action for added in self.added]
        counts = ", ".join(
            f"{actions.count(action)} {action}"
            for action in ("created", "updated", "replaced", "duplicate")
        )
        return f"{counts}; the pool holds {self.pool_size} credential(s)"


def api_key_by_secret(*, secret: str) -> ApiKey | None:
    """The registered key with this secret, found by digest (the secret itself is never
    stored)."""
    return ApiKey.objects.select_related("user").filter(digest=digest(secret.strip())).first()


def _username_free(key_digest: str) -> str:
    # The digest's first hex digits name the user without revealing the key; longer slices
    # only matter if two keys share a prefix or an operator already took the name.
    for length in range(8, len(key_digest) + 1, 4):
        candidate = f"user-{key_digest[:length]}"
        if not User.objects.filter(username=candidate).exists():
            return candidate
    raise ValidationError({"apiKey": ["No free user name is left for this key."]})


def api_key_owner_ensure(*, secret: str) -> tuple[ApiKey, bool]:
    """The registered key with this secret, or a new user (no password, not staff) owning it
    as a new key. Returns the key and whether the user was created.

    Raises ValidationError for a malformed key; writes nothing then.
    """
    existing = api_key_by_secret(secret=secret)
    if existing is not None:
        return existing, False
    with transaction.atomic():
        user = User.objects.create_user(username=_username_free(digest(secret.strip())))
        api_key, _ = api_key_create(user=user, name="config/update", secret=secret)
    return api_key, True


def config_update(
    *,
    secret: str,
    gemini_api_keys: Iterable[str] = (),
    oauth_accounts: Iterable[OAuthAccount] = (),
) -> ConfigUpdated:
    """Adds credentials to the pool of the user owning the key `secret`, creating that user and
    registering the key if they are new. Each credential is created, updated (same OAuth
    refresh token), reported as a duplicate (same API key), or replaces the pool's oldest when
    the pool is full (accounts.services.credential_add).

    All or nothing: raises ValidationError (after rolling back everything) if any part fails.
    """
    with transaction.atomic():
        api_key, user_created = api_key_owner_ensure(secret=secret)
        user = api_key.user
        added = [credential_add(user=user, oauth=account) for account in oauth_accounts]
        added += [credential_add(user=user, api_key=key) for key in gemini_api_keys]
        pool_size = Credential.objects.filter(user=user).count()
    return ConfigUpdated(
        api_key=api_key, user_created=user_created, added=added, pool_size=pool_size
    )
