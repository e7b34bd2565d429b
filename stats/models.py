"""Usage counters per quota day, API key, credential and model."""

from django.conf import settings
from django.db import models


class UsageCounter(models.Model):
    """Counts for one (quota day, API key, credential, model, requested model).

    `bucket` is the natural key as one string so that one portable
    INSERT ... ON CONFLICT (bucket) adds to it atomically on PostgreSQL and SQLite alike;
    it keeps the credential id even after the credential is deleted, when the foreign key
    becomes NULL, so history never merges into another row.
    """

    # The counted columns, in display order: every reader and writer of counters uses this.
    COUNT_FIELDS = (
        "requests",
        "successes",
        "failures",
        "rate_limited",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    )

    bucket = models.CharField(max_length=300, unique=True)
    day = models.DateField(db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    api_key = models.ForeignKey("accounts.ApiKey", null=True, on_delete=models.SET_NULL)
    credential = models.ForeignKey("accounts.Credential", null=True, on_delete=models.SET_NULL)
    credential_label = models.CharField(max_length=250, blank=True)
    model = models.CharField(max_length=200, help_text="The Gemini model called.")
    requested_model = models.CharField(
        max_length=200,
        default="",
        help_text="The name the client asked for (an alias of `model`, or the same name).",
    )
    requests = models.BigIntegerField(default=0)
    successes = models.BigIntegerField(default=0)
    failures = models.BigIntegerField(default=0)
    rate_limited = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "model"]
        indexes = [models.Index(fields=["user", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.model} {self.credential_label}: {self.requests}"


class UsageBatchApplied(models.Model):
    """A batch of counts moved from Redis to the database, by its id: written in the same
    transaction as its counts, so a batch that two processes both try to apply (one died
    after its commit, before it could say so in Redis) is added once."""

    batch = models.CharField(max_length=64, unique=True)
    applied_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"usage batch {self.batch}"
