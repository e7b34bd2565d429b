"""common.clock: the quota day, which every request asks for, cached by the span it covers."""

from datetime import UTC, date, datetime, time, timedelta

from common.clock import quota_day


def test_the_quota_day_changes_at_midnight_pacific_summer_and_winter(settings):
    settings.DAILY_RESET_TZ = "America/Los_Angeles"
    settings.DAILY_RESET_TIME = time(0, 0)
    summer_reset = datetime(2026, 7, 1, 7, 0, tzinfo=UTC)  # PDT: UTC-7
    assert quota_day(summer_reset - timedelta(microseconds=1)) == date(2026, 6, 30)
    assert quota_day(summer_reset) == date(2026, 7, 1)
    assert quota_day(summer_reset + timedelta(hours=23, minutes=59)) == date(2026, 7, 1)
    assert quota_day(summer_reset + timedelta(hours=24)) == date(2026, 7, 2)
    winter_reset = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # PST: UTC-8
    assert quota_day(winter_reset - timedelta(seconds=1)) == date(2026, 12, 6)
    assert quota_day(winter_reset) == date(2026, 12, 7)
    # Back in a day asked before: the answer does not depend on what was asked last.
    assert quota_day(summer_reset) == date(2026, 7, 1)


def test_a_changed_reset_setting_applies_to_the_next_question(settings):
    at = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    settings.DAILY_RESET_TZ = "America/Los_Angeles"
    settings.DAILY_RESET_TIME = time(0, 0)
    assert quota_day(at) == date(2026, 12, 6)
    settings.DAILY_RESET_TZ = "UTC"
    assert quota_day(at) == date(2026, 12, 7)
    settings.DAILY_RESET_TIME = time(4, 0)
    assert quota_day(at) == date(2026, 12, 6)
