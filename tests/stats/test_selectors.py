"""The /stat reads: 30-day series, header totals, marks, and a big pool in a few queries."""

from datetime import timedelta

from accounts.models import Credential
from accounts.secrets import digest, encrypt, mask
from common import clock
from rotator.models import Mark
from stats.models import UsageCounter
from stats.selectors import SERIES_DAYS, credential_states, stat_dashboard


def _count(persona, *, day, model, credential=None, requests=0, failures=0, tokens=0):
    credential_id = credential.id if credential else None
    return UsageCounter(
        bucket=f"{day.isoformat()}|{persona.api_key.id}|{credential_id or 0}|{model}",
        day=day,
        user=persona.user,
        api_key=persona.api_key,
        credential=credential,
        model=model,
        requests=requests,
        successes=requests - failures,
        failures=failures,
        total_tokens=tokens,
    )


def test_the_series_has_one_point_per_quota_day_for_thirty_days(alice):
    now = clock.now()
    today = clock.quota_day(now)
    UsageCounter.objects.bulk_create(
        [
            _count(alice, day=today, model="gemini-2.5-flash", requests=10, failures=1, tokens=900),
            _count(alice, day=today, model="gemini-2.5-pro", requests=4, failures=4, tokens=0),
            _count(alice, day=today - timedelta(days=3), model="gemini-2.5-flash", requests=2),
            _count(alice, day=today - timedelta(days=29), model="gemini-2.5-pro", requests=7),
            # One day too old for the chart.
            _count(alice, day=today - timedelta(days=30), model="gemini-2.5-pro", requests=99),
        ]
    )
    series = stat_dashboard(user_id=alice.user.id, now=now)["series"]

    assert len(series["days"]) == SERIES_DAYS
    assert series["days"][-1] == today.isoformat()
    assert series["days"][0] == (today - timedelta(days=29)).isoformat()
    flash, pro = series["models"]["gemini-2.5-flash"], series["models"]["gemini-2.5-pro"]
    assert list(series["models"]) == ["gemini-2.5-flash", "gemini-2.5-pro"]  # busiest first
    assert flash["requests"][-1] == 10 and flash["requests"][-4] == 2
    assert flash["tokens"][-1] == 900
    assert flash["error_rate"][-1] == 0.1
    assert flash["error_rate"][-2] is None  # no traffic that day: no rate, not zero
    assert pro["requests"][0] == 7 and sum(pro["requests"]) == 11
    assert pro["error_rate"][-1] == 1.0
    assert series["total"]["requests"][-1] == 14
    assert series["total"]["error_rate"][-1] == round(5 / 14, 4)


def test_header_totals_and_per_key_usage_count_today_only(alice):
    now = clock.now()
    today = clock.quota_day(now)
    UsageCounter.objects.bulk_create(
        [
            _count(alice, day=today, model="m1", credential=alice.credentials[0], requests=3),
            _count(alice, day=today, model="m1", requests=2, failures=2),  # refused
            _count(alice, day=today - timedelta(days=1), model="m1", requests=50),
        ]
    )
    data = stat_dashboard(user_id=alice.user.id, now=now)
    assert data["totals"]["requests"] == 5
    assert data["totals"]["failures"] == 2
    assert [(k["prefix"], k["requests"]) for k in data["keys"]] == [(alice.api_key.prefix, 5)]
    assert data["refused"] == {"m1": 2}
    assert 0 < data["reset"]["seconds"] <= 25 * 3600
    assert data["reset"]["at"] == clock.daily_reset_next(now).isoformat()


def test_marks_show_until_when_and_lapse_on_their_own(alice):
    now = clock.now()
    credential = alice.credentials[1]
    Mark.objects.create(
        credential=credential,
        model="gemini-2.5-pro",
        reason=Mark.Reason.QUOTA_EXHAUSTED,
        until=clock.daily_reset_next(now),
        message="You exceeded your current quota.",
    )
    data = stat_dashboard(user_id=alice.user.id, now=now)
    row = next(c for c in data["credentials"] if c["id"] == credential.id)
    assert row["state"] == "exhausted"
    assert row["cells"]["gemini-2.5-pro"]["mark"]["until"] == (
        clock.daily_reset_next(now).isoformat()
    )
    assert "gemini-2.5-pro" in data["models"]

    clock.clock_travel(seconds=(clock.daily_reset_next(now) - now).total_seconds() + 1)
    later = stat_dashboard(user_id=alice.user.id, now=clock.now())
    row = next(c for c in later["credentials"] if c["id"] == credential.id)
    assert row["state"] == "ok"
    assert row["cells"] == {}


def test_invalid_and_suspended_credentials_are_blocked_with_googles_words(alice):
    invalid, suspended, healthy = alice.credentials
    Credential.objects.filter(id=invalid.id).update(
        status=Credential.Status.INVALID, last_error="API key not valid."
    )
    Credential.objects.filter(id=suspended.id).update(
        status=Credential.Status.SUSPENDED, last_error="This account has been suspended."
    )
    Mark.objects.create(
        credential=healthy,
        model="gemini-2.5-pro",
        reason=Mark.Reason.MODEL_NOT_FOUND,
        until=clock.now() + timedelta(hours=1),
        message="models/gemini-2.5-pro is not found for API version v1beta",
    )
    data = stat_dashboard(user_id=alice.user.id, now=clock.now())
    rows = {row["id"]: row for row in data["credentials"]}
    assert (rows[invalid.id]["state"], rows[invalid.id]["error"]) == (
        "invalid",
        "API key not valid.",
    )
    assert rows[suspended.id]["state"] == "suspended"
    assert rows[suspended.id]["status_label"] == "Suspended by Google"
    assert rows[suspended.id]["error"] == "This account has been suspended."
    assert rows[healthy.id]["state"] == "unavailable"
    assert rows[healthy.id]["error"] == ""
    states = {(s.state, s.count) for s in credential_states(now=clock.now()) if s.count}
    assert states == {("invalid", 1), ("suspended", 1), ("unavailable", 1)}


def test_a_pool_of_200_credentials_and_20_models_is_read_in_a_few_queries(
    alice, admin_client, django_assert_max_num_queries
):
    now = clock.now()
    today = clock.quota_day(now)
    secrets = [f"AIzaBigPool{n:04d}" + "y" * 24 for n in range(200)]
    credentials = Credential.objects.bulk_create(
        [
            Credential(
                user=alice.user,
                kind=Credential.Kind.GEMINI_API_KEY,
                label=f"big {n}",
                secret_encrypted=encrypt(secret),
                secret_digest=digest(secret),
                secret_mask=mask(secret),
                position=10 + n,
            )
            for n, secret in enumerate(secrets)
        ]
    )
    models = [f"gemini-model-{m:02d}" for m in range(20)]
    UsageCounter.objects.bulk_create(
        [
            _count(alice, day=today - timedelta(days=c.id % 30), model=m, credential=c, requests=3)
            for c in credentials
            for m in models
        ]
    )
    Mark.objects.bulk_create(
        [
            Mark(
                credential=c,
                model=models[0],
                reason=Mark.Reason.RATE_LIMITED,
                until=now + timedelta(seconds=60),
                message="Resource has been exhausted (e.g. check quota).",
            )
            for c in credentials[:50]
        ]
    )
    # A fixed number whatever the pool's size (no query per credential or model): the grid,
    # series and totals, plus one each for the quota readings, the alerts and the aliases seen.
    with django_assert_max_num_queries(13):
        data = stat_dashboard(user_id=alice.user.id, now=now)
    assert len(data["credentials"]) == 203
    assert len(data["models"]) == 20
    assert sum(1 for c in data["credentials"] if c["state"] == "rate_limited") == 50
    with django_assert_max_num_queries(8):
        states = credential_states(now=now)
    limited = [s for s in states if s.model == models[0] and s.state == "rate_limited"]
    assert [s.count for s in limited] == [50]
    page = admin_client.get(f"/stat?user={alice.user.id}")
    assert page.status_code == 200
    assert len(page.content) < 1_500_000
