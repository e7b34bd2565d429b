"""API keys that Rotator issues, and the upstream credentials in each user's pool."""

from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from accounts.secrets import decrypt, encrypt, mask

# httpx speaks these to a proxy; socks5h resolves names at the proxy.
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def proxy_url_validate(url: str) -> None:
    """Raises ValidationError unless `url` names a proxy Rotator can use. The message never
    repeats the URL (it may hold a password)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValidationError("The proxy URL is not a valid URL.") from None
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname:
        raise ValidationError(
            "A proxy URL looks like http://host:3128 or socks5://user:password@host:1080."
        )


def api_key_refusal(*, revoked: bool, expires_at: datetime | None, now: datetime) -> str | None:
    """Why a key may not be used at `now` (revoked, expired), or None: the one rule, for the
    model and for the request path's cached view of it."""
    if revoked:
        return "This API key has been revoked."
    if expires_at is not None and expires_at <= now:
        return "This API key has expired."
    return None


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self, *, now: datetime) -> "ApiKeyQuerySet":
        return self.filter(revoked=False).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """A key a client presents to Rotator. Only its SHA-256 digest is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=32, help_text="Masked form, enough to recognise it.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model names this key may use; empty means all."
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    requests_per_day = models.PositiveIntegerField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name or 'key'} ({self.prefix})"

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def is_usable(self, now: datetime) -> bool:
        return api_key_refusal(revoked=self.revoked, expires_at=self.expires_at, now=now) is None


class CredentialQuerySet(models.QuerySet["Credential"]):
    def in_pool(self) -> "CredentialQuerySet":
        """Enabled and not invalid: what selection may choose from."""
        return self.filter(enabled=True, status=Credential.Status.ACTIVE)


class Credential(models.Model):
    """An upstream credential: a Gemini API key or a Gemini CLI OAuth account."""

    class Kind(models.TextChoices):
        GEMINI_API_KEY = "gemini_api_key", "Gemini API key"
        GEMINI_OAUTH = "gemini_oauth", "Gemini CLI OAuth account"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INVALID = "invalid", "Invalid"
        # Disabled by Google (Terms of Service, account suspended): the hourly re-check leaves
        # these alone; only an operator can bring one back.
        SUSPENDED = "suspended", "Suspended by Google"
        # Its secret cannot be decrypted with the configured key (a mixed table after a key
        # change): left out of the pool until `rotateencryptionkey` reads it again.
        UNREADABLE = "unreadable", "Unreadable (wrong encryption key)"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credentials"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    label = models.CharField(max_length=200, blank=True)
    secret_encrypted = models.TextField(
        help_text="The API key, or the OAuth JSON with its refresh token (Fernet)."
    )
    secret_digest = models.CharField(
        max_length=64, help_text="SHA-256 of the API key or refresh token, to spot duplicates."
    )
    secret_mask = models.CharField(max_length=32)
    project_label = models.CharField(
        max_length=100,
        blank=True,
        help_text="Google Cloud project this credential bills to. Google applies quotas per "
        "project, so a quota mark on one credential applies to all with the same label.",
    )
    oauth_project_id = models.CharField(
        max_length=200, blank=True, help_text="Code Assist project (discovered when empty)."
    )
    oauth_client_id = models.CharField(
        max_length=200, blank=True, help_text="OAuth client that minted the refresh token."
    )
    oauth_client_secret_encrypted = models.TextField(blank=True)
    access_token_encrypted = models.TextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    proxy_url_encrypted = models.TextField(
        blank=True,
        help_text="Egress proxy for this credential's upstream calls and token refreshes "
        "(http://, socks5://; Fernet, may hold a password). Empty: direct.",
    )
    proxy_url_mask = models.CharField(max_length=32, blank=True)
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    position = models.PositiveIntegerField(default=0, help_text="Order in the pool.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    requests_total = models.BigIntegerField(default=0)
    requests_since_rotation = models.BigIntegerField(default=0)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        ordering = ["user_id", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "secret_digest"], name="credential_unique_secret_per_user"
            )
        ]
        indexes = [models.Index(fields=["user", "enabled", "status", "position"])]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return f"{self.label} ({self.secret_mask})" if self.label else self.secret_mask

    def secret(self) -> str:
        return decrypt(self.secret_encrypted)

    def proxy_url_set(self, url: str) -> None:
        """Sets (or with "" clears) the egress proxy, encrypted and masked; the caller saves
        proxy_url_encrypted and proxy_url_mask. Raises ValidationError for a URL that is not
        an http:// or socks5:// proxy with a host."""
        url = url.strip()
        if url:
            proxy_url_validate(url)
        self.proxy_url_encrypted = encrypt(url) if url else ""
        self.proxy_url_mask = mask(url) if url else ""


class EncryptionCanary(models.Model):
    """A known text encrypted under the key in use when the first secret was stored.

    Checked at start-up and by /healthz: a server started with another key refuses to run
    instead of answering 500 to every call and writing new secrets under the wrong key.
    """

    PLAINTEXT = "rotator encryption canary"

    token = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"encryption canary of {self.created_at:%Y-%m-%d}"
