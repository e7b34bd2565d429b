"""The one clock: every time decision in Rotator reads `now()` from here.

Tests move it with `clock_travel` instead of sleeping; production never calls that.
"""

from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from django.conf import settings

_offset = timedelta(0)


def now() -> datetime:
    """Aware UTC now, plus any offset a test moved the clock by."""
    return datetime.now(UTC) + _offset


def clock_travel(*, seconds: float) -> None:
    """Moves this process's clock forward (or back) by `seconds`. Tests only."""
    global _offset
    _offset += timedelta(seconds=seconds)


def clock_restore() -> None:
    global _offset
    _offset = timedelta(0)


@cache
def _reset_zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def daily_reset_next(at: datetime) -> datetime:
    """The first daily quota reset strictly after `at`, as an aware UTC datetime.

    Built from the local wall-clock time in DAILY_RESET_TZ so it follows daylight saving:
    midnight Pacific is 07:00 UTC in summer and 08:00 UTC in winter.
    """
    zone = _reset_zone(settings.DAILY_RESET_TZ)
    reset_time = settings.DAILY_RESET_TIME
    local = at.astimezone(zone)
    candidate = datetime.combine(local.date(), reset_time, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), reset_time, tzinfo=zone)
    return candidate.astimezone(UTC)


def daily_reset_previous(at: datetime) -> datetime:
    """The latest daily reset at or before `at` (aware UTC): when the current quota day began."""
    zone = _reset_zone(settings.DAILY_RESET_TZ)
    local = at.astimezone(zone)
    candidate = datetime.combine(local.date(), settings.DAILY_RESET_TIME, tzinfo=zone)
    if candidate > local:
        candidate = datetime.combine(
            local.date() - timedelta(days=1), settings.DAILY_RESET_TIME, tzinfo=zone
        )
    return candidate.astimezone(UTC)


def quota_day(at: datetime) -> date:
    """The quota day `at` belongs to: named by the local date on which that day began."""
    return daily_reset_previous(at).astimezone(_reset_zone(settings.DAILY_RESET_TZ)).date()
