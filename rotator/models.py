"""Rotation state kept in the database: pool cursors, availability marks, error history.

With REDIS_URL set, the hot copies of cursors, marks and rate windows live in Redis
(rotator.state); these tables are then the durable record that admin and /stat read and
that Redis is rebuilt from after a restart.
"""

from django.conf import settings
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
