"""Usage as CSV from /stat and the management API, and the retention of daily counters."""

import csv
import io
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from accounts.models import Credential
from common import clock
from stats.models import UsageCounter
from stats.tasks import usage_prune_task

MASTER = "master-key-for-tests-0123456789"
FLASH = "gemini-2.5-flash"
PRO = "gemini-2.5-pro"


def _count(persona, *, day, model, credential, requests, api_key=None):
    key = api_key or persona.api_key
    return UsageCounter(
        bucket=f"{day.isoformat()}|{key.id}|{credential.id if credential else 0}|{model}",
        day=day,
        user=persona.user,
        api_key=key,
        credential=credential,
        credential_label=credential.display_name if credential else "",
        model=model,
        requests=requests,
        successes=requests,
        total_tokens=requests * 10,
    )


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def traffic(alice, bob):
    today = clock.quota_day(clock.now())
    first, second, _ = alice.credentials
    UsageCounter.objects.bulk_create(
        [
            _count(alice, day=today, model=FLASH, credential=first, requests=5),
            _count(alice, day=today, model=PRO, credential=second, requests=2),
            _count(alice, day=today - timedelta(days=3), model=FLASH, credential=first, requests=7),
            _count(
                alice, day=today - timedelta(days=40), model=FLASH, credential=first, requests=9
            ),
            # Refused for lack of a credential.
            _count(alice, day=today, model=FLASH, credential=None, requests=1),
            _count(bob, day=today, model=FLASH, credential=bob.credentials[0], requests=4),
        ]
    )
    return today


def test_stat_exports_the_pools_usage_per_day_key_credential_and_model(client, alice, traffic):
    assert client.post("/stat/signin", {"key": alice.key}).status_code == 302
    since = (traffic - timedelta(days=3)).isoformat()
    response = client.get("/stat/usage.csv", {"since": since, "until": traffic.isoformat()})
    assert response.status_code == 200
    assert response["content-type"] == "text/csv; charset=utf-8"
    assert response["content-disposition"] == (
        f'attachment; filename="rotator-usage-{since}-{traffic.isoformat()}.csv"'
    )
    rows = _rows(response.content.decode())
    # Oldest day first, then by key and credential (refused requests, without one, last);
    # bob's traffic and the day 40 days back are not in it.
    assert [(r["day"], r["model"], r["requests"]) for r in rows] == [
        (since, FLASH, "7"),
        (traffic.isoformat(), FLASH, "5"),
        (traffic.isoformat(), PRO, "2"),
        (traffic.isoformat(), FLASH, "1"),
    ]
    first = alice.credentials[0]
    assert rows[0]["credential_id"] == str(first.id)
    assert rows[0]["credential"] == first.display_name
    assert rows[0]["api_key"] == f"{alice.api_key.name} {alice.api_key.prefix}"
    assert rows[3]["credential_id"] == "" and rows[3]["credential"] == ""
    text = response.content.decode()
    for secret in [*alice.upstream_keys, alice.key]:
        assert secret not in text


def test_stat_exports_the_last_30_days_without_a_range_and_refuses_a_bad_one(
    client, alice, traffic
):
    assert client.post("/stat/signin", {"key": alice.key}).status_code == 302
    days = {row["day"] for row in _rows(client.get("/stat/usage.csv").content.decode())}
    assert days == {traffic.isoformat(), (traffic - timedelta(days=3)).isoformat()}
    backwards = {"since": traffic.isoformat(), "until": (traffic - timedelta(days=1)).isoformat()}
    assert client.get("/stat/usage.csv", backwards).status_code == 400
    assert client.get("/stat/usage.csv", {"since": "yesterday"}).status_code == 400


def test_a_key_holder_cannot_export_another_pool_and_a_stranger_nothing(
    client, alice, bob, traffic
):
    assert client.get("/stat/usage.csv").status_code == 401
    assert client.post("/stat/signin", {"key": alice.key}).status_code == 302
    assert client.get("/stat/usage.csv", {"user": bob.user.id}).status_code == 403


def test_stat_offers_the_export_form(client, alice):
    assert client.post("/stat/signin", {"key": alice.key}).status_code == 302
    page = client.get("/stat").content.decode()
    assert 'action="/stat/usage.csv"' in page and "Counters are kept 90 days." in page


def test_the_api_exports_every_users_usage_or_one_users(settings, alice, bob, traffic):
    settings.MASTER_API_KEY = MASTER
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    response = api.get("/api/usage/export/", {"since": traffic.isoformat()})
    assert response.status_code == 200
    assert response["content-type"] == "text/csv; charset=utf-8"
    assert {row["user"] for row in _rows(response.content.decode())} == {"alice", "bob"}
    only_bob = _rows(api.get("/api/usage/export/", {"user": bob.user.id}).content.decode())
    assert [(r["user"], r["requests"], r["total_tokens"]) for r in only_bob] == [("bob", "4", "40")]
    backwards = {"since": traffic.isoformat(), "until": "2020-01-01"}
    assert api.get("/api/usage/export/", backwards).status_code == 400
    # An empty date is not a date (schemathesis found it answered 200 with every day).
    assert api.get("/api/usage/export/", {"since": ""}).status_code == 400


def test_a_label_that_looks_like_a_formula_is_exported_as_text(client, alice):
    credential = alice.credentials[0]
    Credential.objects.filter(id=credential.id).update(label='=HYPERLINK("http://x")')
    credential.refresh_from_db()
    today = clock.quota_day(clock.now())
    UsageCounter.objects.bulk_create(
        [_count(alice, day=today, model=FLASH, credential=credential, requests=1)]
    )
    assert client.post("/stat/signin", {"key": alice.key}).status_code == 302
    (row,) = _rows(client.get("/stat/usage.csv").content.decode())
    assert row["credential"].startswith("'=HYPERLINK")


def test_the_prune_task_keeps_the_retention_days_and_deletes_older_counters(
    settings, alice, traffic
):
    first = alice.credentials[0]
    UsageCounter.objects.bulk_create(
        [
            _count(
                alice, day=traffic - timedelta(days=89), model=PRO, credential=first, requests=1
            ),
            _count(
                alice, day=traffic - timedelta(days=90), model=PRO, credential=first, requests=1
            ),
        ]
    )
    oldest = (traffic - timedelta(days=89)).isoformat()
    assert usage_prune_task() == f"deleted 1 usage counter(s) before {oldest}"
    assert UsageCounter.objects.filter(day=traffic - timedelta(days=89)).exists()
    settings.USAGE_RETENTION_DAYS = 30
    usage_prune_task()
    assert not UsageCounter.objects.filter(day__lt=traffic - timedelta(days=29)).exists()
    assert UsageCounter.objects.filter(day=traffic - timedelta(days=3)).exists()
