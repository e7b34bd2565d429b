"""Management API: availability marks and usage sums."""

from datetime import date, timedelta

import openai
import pytest
from rest_framework.test import APIClient

from common import clock
from rotator.models import Mark
from stats.models import UsageCounter
from stats.usage import usage_flush

MASTER = "master-key-for-tests-0123456789"


@pytest.fixture
def api(settings, db) -> APIClient:
    settings.MASTER_API_KEY = MASTER
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    return client


def _mark(credential, model: str, reason: str, *, minutes: int) -> Mark:
    return Mark.objects.create(
        credential=credential,
        model=model,
        reason=reason,
        until=clock.now() + timedelta(minutes=minutes),
        message="upstream said no",
    )


# ---------------------------------------------------------------------------------- marks


def test_marks_are_listed_per_credential_and_model_with_whether_in_force(api, alice, bob):
    quota = _mark(alice.credentials[0], "gemini-2.5-pro", "quota_exhausted", minutes=600)
    lapsed = _mark(alice.credentials[1], "gemini-2.5-flash", "rate_limited", minutes=-1)
    _mark(bob.credentials[0], "gemini-2.5-pro", "rate_limited", minutes=1)
    response = api.get("/api/marks/", {"user": alice.user.id, "ordering": "-until"})
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [row["id"] for row in rows] == [quota.id, lapsed.id]
    assert rows[0]["credential_label"] == alice.credentials[0].display_name
    assert (rows[0]["model"], rows[0]["reason"], rows[0]["active"]) == (
        "gemini-2.5-pro",
        "quota_exhausted",
        True,
    )
    assert rows[1]["active"] is False


def test_marks_are_filtered_by_model_reason_credential_and_being_in_force(api, alice):
    quota = _mark(alice.credentials[0], "gemini-2.5-pro", "quota_exhausted", minutes=600)
    lapsed = _mark(alice.credentials[1], "gemini-2.5-flash", "rate_limited", minutes=-1)

    def ids(**query: str) -> list[int]:
        return [row["id"] for row in api.get("/api/marks/", query).json()["results"]]

    assert ids(model="models/gemini-2.5-pro") == [quota.id]
    assert ids(reason="rate_limited") == [lapsed.id]
    assert ids(credential=str(alice.credentials[1].id)) == [lapsed.id]
    assert ids(active="true") == [quota.id]
    assert ids(active="false") == [lapsed.id]


def test_a_bad_mark_filter_is_a_400(api, db):
    response = api.get("/api/marks/", {"reason": "tired", "active": "sometimes"})
    assert response.status_code == 400
    assert set(response.json()) == {"reason", "active"}


def test_clearing_removes_every_mark_of_that_credential_only(api, alice):
    _mark(alice.credentials[0], "gemini-2.5-pro", "quota_exhausted", minutes=600)
    _mark(alice.credentials[0], "gemini-2.5-flash", "rate_limited", minutes=1)
    kept = _mark(alice.credentials[1], "gemini-2.5-pro", "rate_limited", minutes=1)
    response = api.post(f"/api/credentials/{alice.credentials[0].id}/clear-marks/")
    assert response.status_code == 200
    assert response.json() == {"cleared": 2}
    assert list(Mark.objects.values_list("id", flat=True)) == [kept.id]


def test_one_mark_is_shown_by_id(api, alice):
    mark = _mark(alice.credentials[0], "gemini-2.5-pro", "quota_exhausted", minutes=600)
    response = api.get(f"/api/marks/{mark.id}/")
    assert response.status_code == 200
    assert (response.json()["reason"], response.json()["active"]) == ("quota_exhausted", True)
    assert api.get("/api/marks/999999/").status_code == 404


def test_clearing_marks_puts_an_exhausted_pool_back_to_work(
    live, http, settings, alice, fake_gemini
):
    settings.MASTER_API_KEY = MASTER
    operator = {"Authorization": f"Bearer {MASTER}"}
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "quota_day")
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=alice.key, max_retries=0)
    chat = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hello"}]}
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**chat)
    marks = http.get("/api/marks/", params={"active": "true"}, headers=operator).json()
    assert {row["credential"] for row in marks["results"]} == {c.id for c in alice.credentials}
    assert {row["reason"] for row in marks["results"]} == {"quota_exhausted"}
    fake_gemini.reset()
    cleared = [
        http.post(f"/api/credentials/{c.id}/clear-marks/", headers=operator).json()["cleared"]
        for c in alice.credentials
    ]
    assert cleared == [1, 1, 1]
    assert client.chat.completions.create(**chat).choices[0].message.content


# ---------------------------------------------------------------------------------- usage


def _count(persona, credential_index: int, model: str, day: date, requests: int, **sums) -> None:
    credential = persona.credentials[credential_index]
    UsageCounter.objects.create(
        bucket=f"{day}|{persona.api_key.id}|{credential.id}|{model}",
        day=day,
        user=persona.user,
        api_key=persona.api_key,
        credential=credential,
        credential_label=credential.display_name,
        model=model,
        requests=requests,
        successes=sums.get("successes", requests),
        failures=sums.get("failures", 0),
        prompt_tokens=sums.get("prompt_tokens", 10 * requests),
        completion_tokens=sums.get("completion_tokens", 5 * requests),
        total_tokens=sums.get("total_tokens", 15 * requests),
    )


MONDAY, TUESDAY, WEDNESDAY = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)


@pytest.fixture
def traffic(alice, bob) -> None:
    _count(alice, 0, "gemini-2.5-flash", MONDAY, 4)
    _count(alice, 1, "gemini-2.5-flash", TUESDAY, 6, failures=1, successes=5)
    _count(alice, 1, "gemini-2.5-pro", WEDNESDAY, 2)
    _count(bob, 0, "gemini-2.5-flash", TUESDAY, 7)


def test_without_grouping_usage_is_one_row_of_totals(api, traffic):
    response = api.get("/api/usage/")
    assert response.status_code == 200
    (row,) = response.json()["results"]
    assert row["requests"] == 19
    assert row["failures"] == 1
    assert row["total_tokens"] == 15 * 19
    assert "model" not in row and "day" not in row


def test_usage_is_grouped_by_user_and_model(api, traffic, alice, bob):
    rows = api.get("/api/usage/", {"group_by": "user,model", "ordering": "-requests"}).json()
    summary = [(r["username"], r["model"], r["requests"]) for r in rows["results"]]
    assert summary == [
        ("alice", "gemini-2.5-flash", 10),
        ("bob", "gemini-2.5-flash", 7),
        ("alice", "gemini-2.5-pro", 2),
    ]
    assert "credential" not in rows["results"][0]


def test_usage_is_grouped_by_credential_with_its_masked_label(api, traffic, alice):
    rows = api.get("/api/usage/", {"group_by": "credential", "user": alice.user.id}).json()
    by_credential = {
        r["credential"]: (r["credential_label"], r["requests"]) for r in rows["results"]
    }
    assert by_credential == {
        alice.credentials[0].id: (alice.credentials[0].display_name, 4),
        alice.credentials[1].id: (alice.credentials[1].display_name, 8),
    }
    for secret in alice.upstream_keys:
        assert secret not in str(rows)


def test_usage_is_filtered_by_date_range_key_credential_and_model(api, traffic, alice):
    def total(**query: object) -> int:
        return api.get("/api/usage/", query).json()["results"][0]["requests"]

    assert total(since=TUESDAY.isoformat()) == 15
    assert total(since=TUESDAY.isoformat(), until=TUESDAY.isoformat()) == 13
    assert total(api_key=alice.api_key.id) == 12
    assert total(credential=alice.credentials[1].id) == 8
    assert total(model="gemini-2.5-pro") == 2
    assert total(since="2030-01-01") == 0


def test_usage_by_day_comes_newest_first_and_pages(api, traffic):
    first = api.get("/api/usage/", {"group_by": "day", "limit": 2}).json()
    assert first["count"] == 3
    assert [(r["day"], r["requests"]) for r in first["results"]] == [
        (WEDNESDAY.isoformat(), 2),
        (TUESDAY.isoformat(), 13),
    ]
    rest = api.get("/api/usage/", {"group_by": "day", "limit": 2, "offset": 2}).json()
    assert [r["day"] for r in rest["results"]] == [MONDAY.isoformat()]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"group_by": "weekday"}, "group_by"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-03-04", "until": "2026-03-01"}, "until"),
        ({"ordering": "model"}, "ordering"),
        ({"ordering": "-secret"}, "ordering"),
        ({"user": "-3"}, "user"),
    ],
)
def test_a_bad_usage_query_is_a_400_naming_the_field(api, traffic, query, field):
    response = api.get("/api/usage/", query)
    assert response.status_code == 400
    assert field in response.json()


def test_usage_of_real_requests_is_reported_per_key_and_model(live, http, settings, alice):
    settings.MASTER_API_KEY = MASTER
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=alice.key, max_retries=0)
    for _ in range(2):
        client.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "count me"}]
        )
    usage_flush()
    response = http.get(
        "/api/usage/",
        params={"group_by": "api_key,model", "since": clock.quota_day(clock.now()).isoformat()},
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    (row,) = response.json()["results"]
    assert (row["api_key"], row["api_key_prefix"], row["model"]) == (
        alice.api_key.id,
        alice.api_key.prefix,
        "gemini-2.5-flash",
    )
    assert (row["requests"], row["successes"]) == (2, 2)
    assert row["total_tokens"] > 0
    keys = http.get("/api/keys/", headers={"Authorization": f"Bearer {MASTER}"}).json()
    assert keys["results"][0]["last_used_at"] is not None
