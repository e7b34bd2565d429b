"""A malformed setting stops Rotator at start with one line naming the variable."""

import os
import subprocess
import sys

import pytest
from django.conf import settings


def _manage_check(**environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MAX_ATTEMPTS", "abc", "must be a whole number"),
        ("MAX_CREDENTIALS", "0", "must be at least 1"),
        ("DAILY_RESET_TIME", "25:00", "must be a time as HH:MM"),
        ("DAILY_RESET_UTC", "7am", "must be a time as HH:MM"),
        ("DAILY_RESET_TZ", "Mars/Base", "must be an IANA time zone"),
        ("DATABASE_URL", "mysql://x", "must be a URL starting with postgres://"),
        ("REDIS_URL", "http://cache:6379", "must be a URL starting with redis://"),
        ("GEMINI_UPSTREAM_URL", "generativelanguage.googleapis.com", "must be a URL"),
        ("DEBUG", "maybe", "must be true or false"),
    ],
)
def test_a_malformed_setting_fails_at_start_with_one_line(variable, value, says):
    result = _manage_check(**{variable: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert says in lines[0]
    assert "Traceback" not in result.stderr


def test_the_default_settings_pass_the_check():
    result = _manage_check()
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
