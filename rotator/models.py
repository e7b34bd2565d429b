"""Rotation state kept in the database: pool cursors, availability marks, error history.

With REDIS_URL set, the hot copies of cursors, marks and rate windows live in Redis
(rotator.state); these tables are then the durable record that admin and /stat read and
that Redis is rebuilt from after a restart.
"""

from datetime import datetime

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from rotator.selection import Strategy

# The strategies are rotator.selection's (it reads them on every pick); these are their labels.
STRATEGY_CHOICES = [
    (Strategy.ROUND_ROBIN.value, "Round robin (spread load)"),
    (Strategy.FILL_FIRST.value, "Fill first (stay on one credential until it fails)"),
]


class PoolState(models.Model):
    """One row per user: the pool's selection strategy, shared cursor and change version."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="pool_state",
    )
    strategy = models.CharField(
        max_length=20, choices=STRATEGY_CHOICES, default=Strategy.ROUND_ROBIN
    )
    cursor = models.BigIntegerField(default=0)
    version = models.BigIntegerField(
        default=1, help_text="Bumped on every change to the pool's credentials or keys."
    )
    rotated_at = models.DateTimeField(null=True, blank=True)
    # The pool's egress proxy, for every credential that names none of its own; encrypted like
    # a secret, shown only masked (rotator.pool.pool_proxy_set writes both).
    proxy_url_encrypted = models.TextField(blank=True, default="", editable=False)
    proxy_url_mask = models.CharField("egress proxy", max_length=32, blank=True, editable=False)

    class Meta:
        verbose_name = "pool"

    def __str__(self) -> str:
        return f"pool of {self.user}"


class Mark(models.Model):
    """A (credential, model) that may not be used until `until`."""

    class Reason(models.TextChoices):
        RATE_LIMITED = "rate_limited", "Rate limited"
        QUOTA_EXHAUSTED = "quota_exhausted", "Quota exhausted"
        MODEL_NOT_FOUND = "model_not_found", "Model not available"
        UNSTABLE = "unstable", "Failing upstream (circuit breaker)"

    credential = models.ForeignKey(
        "accounts.Credential", on_delete=models.CASCADE, related_name="marks"
    )
    model = models.CharField(max_length=200)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    until = models.DateTimeField(db_index=True)
    message = models.TextField(blank=True, help_text="Upstream's own words, secrets redacted.")
    quota_value = models.BigIntegerField(
        null=True, blank=True, help_text="The limit Google stated in the 429 (quotaValue)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["credential", "model"], name="mark_unique_per_model")
        ]

    def __str__(self) -> str:
        return f"{self.credential} / {self.model}: {self.reason} until {self.until:%Y-%m-%d %H:%M}"


class BreakerCount(models.Model):
    """Transient failures of one credential in the current window, counted by every server
    process (database state backend only; Redis keeps its own)."""

    credential = models.OneToOneField(
        "accounts.Credential", on_delete=models.CASCADE, primary_key=True
    )
    count = models.PositiveIntegerField(default=0)
    until = models.DateTimeField(help_text="The window ends here; a later failure starts anew.")


class Lease(models.Model):
    """A short lease on one job done by one server process at a time (database state backend
    only): an OAuth token refresh."""

    name = models.CharField(max_length=200, primary_key=True)
    holder = models.CharField(max_length=64)
    until = models.DateTimeField()


class KeyRateWindow(models.Model):
    """Requests counted for one API key in one fixed window (database state backend only)."""

    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE)
    window = models.CharField(max_length=40, help_text="'m:<epoch minute>' or 'd:<quota day>'")
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "window"], name="rate_window_unique")
        ]


class FailureWindow(models.Model):
    """Failed sign-ins counted for one client address in one minute (database state backend
    only; Redis keeps these as expiring counters)."""

    name = models.CharField(max_length=200, unique=True, help_text="'<address>:<epoch minute>'")
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.count}"


class UpstreamErrorLog(models.Model):
    """Recent upstream errors per credential, for operators; pruned to the newest few."""

    credential = models.ForeignKey(
        "accounts.Credential", on_delete=models.CASCADE, related_name="error_log"
    )
    at = models.DateTimeField(db_index=True)
    model = models.CharField(max_length=200, blank=True)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=30)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.outcome} {self.status or ''}"


class StoredResponse(models.Model):
    """A Responses API answer kept for `previous_response_id` and `GET /v1/responses/{id}`
    (asked for with `store: true`), until `expires_at`."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stored_responses"
    )
    response_id = models.CharField(max_length=80)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    # The conversation so far: its input items, then this answer's output items.
    items = models.JSONField()
    # The Response object as the client received it.
    response = models.JSONField()

    class Meta:
        constraints = [
            # Per user: response ids derive from request ids, which clients may choose.
            models.UniqueConstraint(fields=["user", "response_id"], name="stored_response_unique")
        ]
        indexes = [models.Index(fields=["user", "-created_at"], name="stored_response_recent")]

    def __str__(self) -> str:
        return f"{self.response_id} of {self.user}"


# Letters, digits, '.', '_', '-' as in model names, and '*' for "any run of characters".
ALIAS_NAME_PATTERN = r"^[A-Za-z0-9._*\-]{1,128}$"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"


class ModelAlias(models.Model):
    """A client model name (or a `*` pattern) that is served by a Gemini model: for every
    user (no user) or for one user, whose own aliases win (rotator.aliases says the rule)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="model_aliases",
        help_text="Empty: a global alias, for every user.",
    )
    name = models.CharField(
        max_length=128,
        validators=[RegexValidator(ALIAS_NAME_PATTERN, "Letters, digits, '.', '_', '-' and '*'.")],
        help_text="The name clients send, e.g. claude-sonnet-4-5, or a pattern with '*' "
        "(claude-*-haiku-*).",
    )
    target = models.CharField(
        max_length=128,
        validators=[RegexValidator(MODEL_NAME_PATTERN, "A Gemini model id, without '*'.")],
        help_text="The Gemini model that serves it, e.g. gemini-2.5-pro.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user_id", "name"]
        verbose_name = "model alias"
        verbose_name_plural = "model aliases"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=models.Q(user__isnull=False),
                name="model_alias_unique_per_user",
                violation_error_message="This user already has an alias with this name.",
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(user__isnull=True),
                name="model_alias_unique_global",
                violation_error_message="A global alias with this name already exists.",
            ),
        ]

    def __str__(self) -> str:
        owner = self.user if self.user_id else "everyone"
        return f"{self.name} → {self.target} ({owner})"


class AliasState(models.Model):
    """One row: the version of the alias table, bumped on every change to any alias."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=1)


class QuotaReadingQuerySet(models.QuerySet["QuotaReading"]):
    def limit_remember(self, *, credential_id: int, model: str, limit: int, now: datetime) -> None:
        """Keeps the daily limit Google stated for (credential, model); the newest wins."""
        self.update_or_create(
            credential_id=credential_id,
            model=model,
            source=QuotaReading.Source.LIMIT_SEEN,
            defaults={"limit": limit, "fetched_at": now},
        )


class QuotaReading(models.Model):
    """What is left of one (credential, model) quota: Code Assist's own figures for an OAuth
    account (retrieveUserQuota), or for an API key only the daily limit Google stated in a
    429 (`limit`), from which /stat estimates what is left."""

    class Source(models.TextChoices):
        REPORTED = "reported", "Reported by Google"
        LIMIT_SEEN = "limit_seen", "Limit seen in a 429"

    credential = models.ForeignKey(
        "accounts.Credential", on_delete=models.CASCADE, related_name="quota_readings"
    )
    model = models.CharField(max_length=200)
    source = models.CharField(max_length=12, choices=Source.choices)
    # 0-1; Code Assist may send only this, or only the amount.
    remaining_fraction = models.FloatField(null=True, blank=True)
    remaining_amount = models.BigIntegerField(null=True, blank=True)
    limit = models.BigIntegerField(null=True, blank=True)
    token_type = models.CharField(max_length=40, blank=True)
    reset_at = models.DateTimeField(null=True, blank=True)
    fetched_at = models.DateTimeField()

    objects = QuotaReadingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["credential", "model", "source"], name="quota_reading_unique"
            )
        ]

    def __str__(self) -> str:
        left = "?" if self.remaining_fraction is None else f"{self.remaining_fraction:.0%}"
        return f"{self.credential} / {self.model}: {left} left"


class AlertDelivery(models.Model):
    """One alert sent (or being sent) to the operators' webhook, with its outcome."""

    class Event(models.TextChoices):
        CREDENTIAL_INVALID = "credential_invalid", "Credential invalid"
        CREDENTIAL_SUSPENDED = "credential_suspended", "Credential suspended by Google"
        POOL_EMPTY = "pool_empty", "No usable credential for a model"
        QUOTA_LOW = "quota_low", "Daily quota nearly used"

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Delivered"
        FAILED = "failed", "Failed"

    event = models.CharField(max_length=30, choices=Event.choices)
    # One alert per state change: the same key is never sent twice.
    dedupe_key = models.CharField(max_length=300, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE, related_name="alerts"
    )
    credential = models.ForeignKey(
        "accounts.Credential", null=True, blank=True, on_delete=models.SET_NULL
    )
    model = models.CharField(max_length=200, blank=True)
    # What was said, secrets masked (the JSON body before any Slack/Discord shaping).
    payload = models.JSONField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "alert deliveries"

    def __str__(self) -> str:
        return f"{self.get_event_display()} at {self.created_at:%Y-%m-%d %H:%M}: {self.outcome}"
