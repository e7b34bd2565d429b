"""The one clock: every time decision in Rotator reads `now()` from here.

Tests move it with `clock_travel` instead of sleeping; production never calls that.
"""

from datetime import UTC, date, datetime, time, timedelta
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


# The quota day of the last call, with the span it covers and the settings it was computed
# under: every request asks (its counts and its pick), and nearly all fall in the same day.
_quota_span: tuple[str, time, datetime, datetime, date] | None = None


def quota_day(at: datetime) -> date:
    """The quota day `at` belongs to: named by the local date on which that day began."""
    global _quota_span
    zone_name, reset_time = settings.DAILY_RESET_TZ, settings.DAILY_RESET_TIME
    span = _quota_span
    if (
        span is not None
        and span[2] <= at < span[3]
        and span[0] == zone_name
        and span[1] == reset_time
    ):
        return span[4]
    began = daily_reset_previous(at)
    day = began.astimezone(_reset_zone(zone_name)).date()
    _quota_span = (zone_name, reset_time, began, daily_reset_next(at), day)
    return day
