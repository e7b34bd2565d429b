"""How long daily usage counters are kept: USAGE_RETENTION_DAYS quota days, today included."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings

from common import clock
from stats.models import UsageBatchApplied, UsageCounter

# A batch id is kept only as long as a flusher could still find that batch in Redis.
_BATCH_IDS_KEPT = timedelta(days=2)


def usage_oldest_kept(*, now: datetime) -> date:
    """The oldest quota day whose counters are kept at `now`."""
    return clock.quota_day(now) - timedelta(days=settings.USAGE_RETENTION_DAYS - 1)


@dataclass(frozen=True, slots=True)
class Pruned:
    deleted: int
    oldest_kept: date

    @property
    def summary(self) -> str:
        return f"deleted {self.deleted} usage counter(s) before {self.oldest_kept.isoformat()}"


def usage_prune(*, now: datetime) -> Pruned:
    """Deletes the usage counters of quota days older than the retention allows. Returns how
    many rows went. Counters only ever grow on today's row, so this races with nothing."""
    oldest = usage_oldest_kept(now=now)
    deleted, _ = UsageCounter.objects.filter(day__lt=oldest).delete()
    UsageBatchApplied.objects.filter(applied_at__lt=now - _BATCH_IDS_KEPT).delete()
    return Pruned(deleted=deleted, oldest_kept=oldest)
