"""Business rules for API keys and credentials: create, revoke, import.

Admin actions, management commands, the REST API and Celery tasks all call these.
"""

import base64
import binascii
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.encryption import encryption_key_verify_once
from accounts.models import ApiKey, Credential
from accounts.secrets import digest, encrypt, mask
from common.naming import model_bare

API_KEY_PATTERN = re.compile(r"[A-Za-z0-9._\-]{20,200}")
# 24 characters: a chosen key (or the master key) short enough to guess was accepted before;
# Rotator's own keys are 46. The same rule is MASTER_API_KEY's (config.settings).
OUR_KEY_MIN_CHARS = 24
OUR_KEY_PATTERN = re.compile(rf"\S{{{OUR_KEY_MIN_CHARS},200}}")
OUR_KEY_RULE = (
    f"An API key is {OUR_KEY_MIN_CHARS} to 200 characters without spaces "
    "(shorter ones can be guessed)."
)


# ------------------------------------------------------------------------------ API keys


def api_key_create(
    *,
    user: User,
    name: str = "",
    secret: str | None = None,
    expires_at: datetime | None = None,
    allowed_models: Iterable[str] = (),
    requests_per_minute: int | None = None,
    requests_per_day: int | None = None,
) -> tuple[ApiKey, str]:
    """Creates a Rotator API key for `user`. Returns the key and its secret, which is shown
    this once and never stored. `secret` registers a key clients already use.

    Raises ValidationError for a malformed or already registered secret.
    """
    if secret is None:
        secret = "rk-" + secrets.token_urlsafe(32)
    secret = secret.strip()
    if not OUR_KEY_PATTERN.fullmatch(secret):
        raise ValidationError(OUR_KEY_RULE)
    key_digest = digest(secret)
    if ApiKey.objects.filter(digest=key_digest).exists():
        raise ValidationError("That API key is already registered.")
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=mask(secret),
        digest=key_digest,
        expires_at=expires_at,
        allowed_models=_models_bare(allowed_models),
        requests_per_minute=requests_per_minute,
        requests_per_day=requests_per_day,
    )
    return api_key, secret


_UPDATABLE = ("name", "expires_at", "allowed_models", "requests_per_minute", "requests_per_day")


def api_key_update(*, api_key: ApiKey, **changes: Any) -> ApiKey:
    """Changes a key's name, expiry, allowed models or limits (the names in `changes`; others
    are left alone) and saves only those fields, which reloads its pool everywhere. The
    secret never changes: issue a new key instead. Returns the key."""
    unknown = set(changes) - set(_UPDATABLE)
    if unknown:
        raise ValueError(f"api_key_update cannot change {', '.join(sorted(unknown))}")
    if "allowed_models" in changes:
        changes["allowed_models"] = _models_bare(changes["allowed_models"])
    for name, value in changes.items():
        setattr(api_key, name, value)
    api_key.save(update_fields=list(changes))
    return api_key


def _models_bare(models: Iterable[str]) -> list[str]:
    # Clients name models with or without Google's "models/" prefix; keys store them bare.
    return [model_bare(model) for model in models]


def api_key_revoke(*, api_key: ApiKey, now: datetime) -> None:
    """Revokes a key; every server process refuses it from its next request on. Revoking
    twice keeps the first revocation's time."""
    if api_key.revoked:
        return
    api_key.revoked = True
    api_key.revoked_at = now
    api_key.save(update_fields=["revoked", "revoked_at"])


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class OAuthAccount:
    """A Gemini CLI account as the systems we replace store it; only refresh_token is needed."""

    refresh_token: str
    document: dict[str, Any]
    email: str = ""
    project_id: str = ""
    disabled: bool = False


def _jwt_email(id_token: object) -> str:
    if not isinstance(id_token, str) or id_token.count(".") < 2:
        return ""
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return ""
    email = claims.get("email") if isinstance(claims, dict) else None
    return email if isinstance(email, str) else ""


def oauth_account_parse(value: str | Mapping[str, Any]) -> OAuthAccount:
    """Reads the Gemini CLI's oauth_creds.json shape, an ACCOUNTS entry
    ({refresh_token, disabled, projectId}) or a gcpServiceAccount object.

    Raises ValidationError naming what is wrong.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValidationError("OAuth credentials must be a JSON object.") from None
    if not isinstance(value, Mapping):
        raise ValidationError("OAuth credentials must be a JSON object.")
    refresh_token = value.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token.strip():
        raise ValidationError("OAuth credentials need a refresh_token.")
    keep = ("access_token", "refresh_token", "scope", "token_type", "id_token", "expiry_date")
    document = {k: value[k] for k in keep if k in value}
    project = value.get("projectId") or value.get("project_id") or ""
    if not isinstance(project, str) or len(project) > 200 or "\x00" in project:
        raise ValidationError("projectId must be a text of at most 200 characters.")
    disabled = value.get("disabled", False)
    if isinstance(disabled, str):
        # The Workers' ACCOUNTS variable is often hand-written: "false" means false.
        disabled = disabled.strip().lower() in ("true", "1", "yes")
    elif not isinstance(disabled, bool | int | None):
        raise ValidationError("disabled must be true or false.")
    email = _jwt_email(value.get("id_token"))
    if "\x00" in email or len(email) > 200:
        raise ValidationError("The id_token's e-mail is not a usable label.")
    if "\x00" in refresh_token or len(refresh_token) > 2000:
        raise ValidationError("refresh_token is not a valid token.")
    return OAuthAccount(
        refresh_token=refresh_token.strip(),
        document=document,
        email=email,
        project_id=project,
        disabled=bool(disabled),
    )


def api_key_secret_validate(value: str) -> str:
    """A Gemini API key as pasted: trimmed, checked for shape but not for prefix (Google's
    newer keys no longer start with AIza)."""
    secret = value.strip()
    if not API_KEY_PATTERN.fullmatch(secret):
        raise ValidationError(
            "That does not look like a Gemini API key (20 to 200 letters, digits, '.', '_', '-')."
        )
    return secret


@dataclass(frozen=True, slots=True)
class CredentialAdded:
    credential: Credential
    action: str  # "created", "updated", "replaced" or "duplicate"
    replaced_label: str = ""


def credential_add(
    *,
    user: User,
    api_key: str | None = None,
    oauth: OAuthAccount | None = None,
    label: str = "",
    project_label: str = "",
    oauth_client_id: str = "",
    oauth_client_secret: str = "",
) -> CredentialAdded:
    """Adds a Gemini API key or an OAuth account to `user`'s pool.

    The same secret twice is reported, not doubled (an OAuth account with the same refresh
    token is updated instead). A pool at MAX_CREDENTIALS drops its oldest credential to make
    room, as the systems we replace did. Raises ValidationError for bad input.
    """
    if (api_key is None) == (oauth is None):
        raise ValidationError("Give exactly one of a Gemini API key or an OAuth account.")
    encryption_key_verify_once(key_id=(settings.ROTATOR_ENCRYPTION_KEY, settings.SECRET_KEY))
    if api_key is not None:
        secret = api_key_secret_validate(api_key)
        kind = Credential.Kind.GEMINI_API_KEY
        plaintext = secret
    else:
        assert oauth is not None
        secret = oauth.refresh_token
        kind = Credential.Kind.GEMINI_OAUTH
        plaintext = json.dumps(oauth.document)
        label = label or oauth.email
    secret_digest = digest(secret)
    with transaction.atomic():
        # Lock the owner's row so concurrent adds agree on the count and the oldest.
        User.objects.select_for_update().filter(pk=user.pk).first()
        existing = Credential.objects.filter(user=user, secret_digest=secret_digest).first()
        if existing is not None:
            if oauth is None:
                return CredentialAdded(credential=existing, action="duplicate")
            existing.secret_encrypted = encrypt(plaintext)
            existing.label = label or existing.label
            existing.oauth_project_id = oauth.project_id or existing.oauth_project_id
            existing.enabled = not oauth.disabled
            existing.save()
            return CredentialAdded(credential=existing, action="updated")
        replaced_label = ""
        pool = Credential.objects.filter(user=user)
        if pool.count() >= settings.MAX_CREDENTIALS:
            oldest = pool.order_by("created_at", "id").first()
            assert oldest is not None
            replaced_label = oldest.display_name
            oldest.delete()
        last = pool.order_by("-position").values_list("position", flat=True).first()
        credential = Credential.objects.create(
            user=user,
            kind=kind,
            label=label,
            secret_encrypted=encrypt(plaintext),
            secret_digest=secret_digest,
            secret_mask=mask(secret),
            project_label=project_label,
            oauth_project_id=oauth.project_id if oauth else "",
            oauth_client_id=oauth_client_id,
            oauth_client_secret_encrypted=encrypt(oauth_client_secret)
            if oauth_client_secret
            else "",
            enabled=not (oauth and oauth.disabled),
            position=(last or 0) + 1,
        )
    return CredentialAdded(
        credential=credential,
        action="replaced" if replaced_label else "created",
        replaced_label=replaced_label,
    )


@dataclass(slots=True)
class ImportSummary:
    created: int = 0
    updated: int = 0
    replaced: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, added: CredentialAdded) -> None:
        if added.action == "created":
            self.created += 1
        elif added.action == "replaced":
            self.created += 1
            self.replaced += 1
        elif added.action == "updated":
            self.updated += 1
        else:
            self.duplicates += 1

    @property
    def summary(self) -> str:
        text = (
            f"{self.created} added, {self.updated} updated, {self.duplicates} duplicate(s), "
            f"{self.replaced} replaced"
        )
        if self.errors:
            text += f"; {len(self.errors)} rejected: " + "; ".join(self.errors)
        return text


def credentials_import_text(*, user: User, text: str) -> ImportSummary:
    """Bulk import: one Gemini API key per line, or JSON (one OAuth object or an array)."""
    summary = ImportSummary()
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            document = json.loads(stripped)
        except ValueError:
            summary.errors.append("the JSON could not be parsed")
            return summary
        items = document if isinstance(document, list) else [document]
        for index, item in enumerate(items, start=1):
            try:
                summary.count(credential_add(user=user, oauth=oauth_account_parse(item)))
            except ValidationError as exc:
                summary.errors.append(f"item {index}: {'; '.join(exc.messages)}")
        return summary
    for number, line in enumerate(stripped.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            summary.count(credential_add(user=user, api_key=line))
        except ValidationError as exc:
            summary.errors.append(f"line {number}: {'; '.join(exc.messages)}")
    return summary


def credentials_import_env(*, user: User, environ: Mapping[str, str]) -> ImportSummary:
    """Imports what the systems we replace kept in environment variables: API_KEYS
    (comma-separated), ACCOUNTS (JSON array of {refresh_token, disabled, projectId}),
    GCP_SERVICE_ACCOUNT and GCP_SERVICE_ACCOUNT_1..N (OAuth JSON)."""
    summary = ImportSummary()
    for index, value in enumerate((environ.get("API_KEYS") or "").split(","), start=1):
        if value.strip():
            try:
                summary.count(credential_add(user=user, api_key=value))
            except ValidationError as exc:
                summary.errors.append(f"API_KEYS item {index}: {'; '.join(exc.messages)}")
    accounts = environ.get("ACCOUNTS")
    if accounts:
        try:
            items = json.loads(accounts)
        except ValueError:
            items = None
        if not isinstance(items, list):
            summary.errors.append("ACCOUNTS must be a JSON array")
        else:
            for index, item in enumerate(items, start=1):
                try:
                    summary.count(credential_add(user=user, oauth=oauth_account_parse(item)))
                except ValidationError as exc:
                    summary.errors.append(f"ACCOUNTS item {index}: {'; '.join(exc.messages)}")
    numbered = sorted(
        (n for n in environ if re.fullmatch(r"GCP_SERVICE_ACCOUNT_\d+", n)),
        key=lambda n: int(n.rsplit("_", 1)[1]),
    )
    names = ["GCP_SERVICE_ACCOUNT", *numbered]
    for name in names:
        if environ.get(name):
            try:
                summary.count(credential_add(user=user, oauth=oauth_account_parse(environ[name])))
            except ValidationError as exc:
                summary.errors.append(f"{name}: {'; '.join(exc.messages)}")
    return summary


def first_steps_pending() -> list[str]:
    """What a new install still lacks, in the order an operator adds it: "operator" (an
    active staff user, for /admin and everyone's /stat), "api_key", "credential"."""
    pending = []
    if not User.objects.filter(is_staff=True, is_active=True).exists():
        pending.append("operator")
    if not ApiKey.objects.exists():
        pending.append("api_key")
    if not Credential.objects.exists():
        pending.append("credential")
    return pending
