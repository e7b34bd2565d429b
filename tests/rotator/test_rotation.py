"""The rotation engine through the real HTTP path: choose, classify, retry, cool down, reset."""

from collections import Counter
from datetime import UTC, timedelta

import httpx
import pytest
import redis

from accounts.models import Credential
from common import clock
from rotator import pool
from rotator.models import Mark, PoolState
from rotator.selection import Strategy
from stats.models import UsageCounter
from stats.usage import usage_flush

CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hello"}]}


def chat(http: httpx.Client, key: str, body: dict | None = None) -> httpx.Response:
    return http.post(
        "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json=body or CHAT
    )


def secrets_hit(fake_gemini) -> Counter:
    return Counter(r.secret for r in fake_gemini.requests)


def test_round_robin_spreads_90_requests_30_30_30(http, alice, fake_gemini):
    for _ in range(90):
        assert chat(http, alice.key).status_code == 200
    assert sorted(secrets_hit(fake_gemini).values()) == [30, 30, 30]


def test_a_per_minute_429_moves_traffic_away_and_back_after_the_retry_delay(
    http, alice, fake_gemini
):
    limited = alice.upstream_keys[0]
    fake_gemini.behave(limited, "rate_limit_minute", retry_delay="20s")
    for _ in range(9):
        assert chat(http, alice.key).status_code == 200
    assert secrets_hit(fake_gemini)[limited] == 1, "only the request that found out"
    mark = Mark.objects.get(credential__user=alice.user)
    assert mark.reason == Mark.Reason.RATE_LIMITED
    assert "exceeded your current quota" in mark.message
    fake_gemini.behave(limited, "ok")
    clock.clock_travel(seconds=19)
    for _ in range(6):
        chat(http, alice.key)
    assert secrets_hit(fake_gemini)[limited] == 1, "still cooling down at 19 s"
    clock.clock_travel(seconds=2)
    for _ in range(6):
        chat(http, alice.key)
    assert secrets_hit(fake_gemini)[limited] >= 2, "back in rotation after 20 s"


def test_a_per_day_429_keeps_the_credential_out_until_the_daily_reset(http, alice, fake_gemini):
    spent = alice.upstream_keys[1]
    fake_gemini.behave(spent, "quota_day", retry_delay="30s")
    for _ in range(6):
        assert chat(http, alice.key).status_code == 200
    mark = Mark.objects.get()
    assert mark.reason == Mark.Reason.QUOTA_EXHAUSTED
    reset = clock.daily_reset_next(clock.now())
    assert mark.until == reset, "our clock's reset, not Google's retryDelay"
    fake_gemini.behave(spent, "ok")
    clock.clock_travel(seconds=(reset - clock.now()).total_seconds() - 60)
    for _ in range(6):
        chat(http, alice.key)
    assert secrets_hit(fake_gemini)[spent] == 1
    clock.clock_travel(seconds=120)
    for _ in range(6):
        chat(http, alice.key)
    assert secrets_hit(fake_gemini)[spent] >= 2


def test_the_daily_reset_is_midnight_pacific_and_follows_daylight_saving():
    from datetime import datetime

    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    winter = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert clock.daily_reset_next(summer) == datetime(2026, 7, 2, 7, 0, tzinfo=UTC)
    assert clock.daily_reset_next(winter) == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_a_fixed_utc_reset_can_be_pinned(settings):
    from datetime import datetime, time

    settings.DAILY_RESET_TZ = "UTC"
    settings.DAILY_RESET_TIME = time(7, 0)
    winter = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert clock.daily_reset_next(winter) == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


def test_an_invalid_key_is_marked_and_skipped(http, alice, fake_gemini):
    broken = alice.credentials[0]
    fake_gemini.behave(broken.secret(), "invalid_key")
    for _ in range(6):
        assert chat(http, alice.key).status_code == 200
    broken.refresh_from_db()
    assert broken.status == Credential.Status.INVALID
    assert "API key not valid" in broken.last_error
    assert secrets_hit(fake_gemini)[broken.secret()] == 1


def test_a_429_never_marks_a_credential_invalid(http, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "rate_limit_bare")
    assert chat(http, alice.key).status_code == 429
    assert set(Credential.objects.values_list("status", flat=True)) == {"active"}


def test_retries_never_exceed_max_attempts(http, settings, db, fake_gemini):
    from tests.conftest import persona_create

    settings.MAX_ATTEMPTS = 2
    erin = persona_create("erin", credentials=5)
    for secret in erin.upstream_keys:
        fake_gemini.behave(secret, "server_error", status=503)
    response = chat(http, erin.key)
    assert response.status_code == 502
    assert len(fake_gemini.requests) == 2
    assert len(set(r.secret for r in fake_gemini.requests)) == 2, "distinct credentials"


def test_when_everything_is_cooling_down_the_client_gets_429_with_the_soonest_retry_after(
    http, alice, fake_gemini
):
    for secret, delay in zip(alice.upstream_keys, ("40s", "20s", "30s"), strict=True):
        fake_gemini.behave(secret, "rate_limit_minute", retry_delay=delay)
    first = chat(http, alice.key)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "20"
    assert len(fake_gemini.requests) == 3
    second = chat(http, alice.key)
    assert second.status_code == 429
    assert len(fake_gemini.requests) == 3, "nothing more is sent upstream"
    assert 19 <= int(second.headers["retry-after"]) <= 20
    message = second.json()["error"]["message"]
    assert "All 3 credentials for gemini-2.5-flash" in message
    clock.clock_travel(seconds=21)
    fake_gemini.reset()
    assert chat(http, alice.key).status_code == 200


def test_a_pool_with_no_credentials_is_a_503_telling_the_operator_what_to_add(http, charlie):
    response = chat(http, charlie.key)
    assert response.status_code == 503
    assert "add a Gemini API key or OAuth account" in response.json()["error"]["message"]


def test_a_quota_mark_applies_to_every_credential_of_the_same_project(http, alice, fake_gemini):
    first, second, _third = alice.credentials
    Credential.objects.filter(id__in=[first.id, second.id]).update(project_label="project-a")
    pool.pool_invalidate(user_id=alice.user.id)
    fake_gemini.behave(first.secret(), "quota_day")
    fake_gemini.behave(second.secret(), "quota_day")
    for _ in range(6):
        assert chat(http, alice.key).status_code == 200
    hits = secrets_hit(fake_gemini)
    assert hits[first.secret()] + hits[second.secret()] == 1, "the shared quota is spent once"
    assert set(Mark.objects.values_list("credential_id", flat=True)) == {first.id, second.id}


def test_a_missing_model_is_marked_for_that_model_only(http, alice, fake_gemini):
    lacking = alice.upstream_keys[0]
    fake_gemini.behave(lacking, "not_found", model="gemini-2.5-pro")
    pro = {**CHAT, "model": "gemini-2.5-pro"}
    for _ in range(3):
        assert chat(http, alice.key, pro).status_code == 200
    for _ in range(3):
        assert chat(http, alice.key).status_code == 200
    # Calls only (POST): the 404 is checked against the credential's model list with a GET.
    calls = [r for r in fake_gemini.requests_for(lacking) if r.method == "POST"]
    pro_hits = [r for r in calls if r.model == "gemini-2.5-pro"]
    flash_hits = [r for r in calls if r.model == "gemini-2.5-flash"]
    assert len(pro_hits) == 1 and len(flash_hits) == 1
    assert Mark.objects.get().reason == Mark.Reason.MODEL_NOT_FOUND


def test_an_empty_answer_is_retried_elsewhere_and_counted_as_a_failure(http, alice, fake_gemini):
    empty = alice.upstream_keys[0]
    fake_gemini.behave(empty, "empty", times=1)
    response = chat(http, alice.key)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]
    usage_flush()
    assert sum(UsageCounter.objects.values_list("failures", flat=True)) == 1
    assert sum(UsageCounter.objects.values_list("successes", flat=True)) == 1


def test_repeated_server_errors_trip_a_short_circuit_breaker(http, alice, fake_gemini, settings):
    settings.CIRCUIT_BREAKER_FAILURES = 2
    failing = alice.upstream_keys[0]
    fake_gemini.behave(failing, "server_error", status=500)
    for _ in range(9):
        assert chat(http, alice.key).status_code == 200
    assert len(fake_gemini.requests_for(failing)) == 2
    mark = Mark.objects.get()
    assert mark.reason == Mark.Reason.UNSTABLE
    assert mark.until - clock.now() <= timedelta(seconds=settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS)


def test_a_keys_per_minute_limit_answers_429_with_retry_after(http, db, fake_gemini):
    from tests.conftest import persona_create

    frank = persona_create("frank", credentials=1, requests_per_minute=2)
    assert chat(http, frank.key).status_code == 200
    assert chat(http, frank.key).status_code == 200
    third = chat(http, frank.key)
    assert third.status_code == 429
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert third.json()["error"]["code"] == "key_rate_limited"
    assert len(fake_gemini.requests) == 2


def test_a_keys_per_day_limit_holds_until_the_reset(http, db, fake_gemini):
    from tests.conftest import persona_create

    gina = persona_create("gina", credentials=1, requests_per_day=1)
    assert chat(http, gina.key).status_code == 200
    clock.clock_travel(seconds=120)
    refused = chat(http, gina.key)
    assert refused.status_code == 429 and "per day" in refused.json()["error"]["message"]
    clock.clock_travel(
        seconds=(clock.daily_reset_next(clock.now()) - clock.now()).total_seconds() + 1
    )
    assert chat(http, gina.key).status_code == 200


def test_fill_first_stays_on_one_credential_until_it_fails(http, alice, fake_gemini):
    PoolState.objects.filter(user=alice.user).update(strategy=Strategy.FILL_FIRST)
    pool.pool_invalidate(user_id=alice.user.id)
    for _ in range(5):
        chat(http, alice.key)
    [(first, count)] = secrets_hit(fake_gemini).items()
    assert count == 5
    fake_gemini.behave(first, "rate_limit_minute")
    for _ in range(5):
        chat(http, alice.key)
    hits = secrets_hit(fake_gemini)
    assert hits[first] == 6
    assert sorted(v for s, v in hits.items() if s != first) == [5]


def test_manual_rotation_advances_the_pool(http, alice, fake_gemini):
    PoolState.objects.filter(user=alice.user).update(strategy=Strategy.FILL_FIRST)
    pool.pool_invalidate(user_id=alice.user.id)
    chat(http, alice.key)
    before = fake_gemini.requests[-1].secret
    usage_flush()  # the request before the rotation is counted before it
    result = pool.pool_rotate(user_id=alice.user.id, now=clock.now())
    assert set(Credential.objects.values_list("requests_since_rotation", flat=True)) == {0}
    chat(http, alice.key)
    after = fake_gemini.requests[-1].secret
    assert after != before
    assert result.first_credential is not None and result.first_credential.secret() == after
    usage_flush()
    since = dict(Credential.objects.values_list("id", "requests_since_rotation"))
    assert since[result.first_credential.id] == 1
    assert sum(since.values()) == 1


def test_a_forced_quota_reset_brings_exhausted_credentials_back(http, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "quota_day", times=1)
    assert chat(http, alice.key).status_code == 429
    summary = pool.quotas_reset(user_id=alice.user.id, now=clock.now(), force=True)
    assert summary.cleared == 3
    assert chat(http, alice.key).status_code == 200


def test_the_daily_task_clears_only_lapsed_quota_marks(alice):
    now = clock.now()
    first, second, third = alice.credentials
    Mark.objects.create(
        credential=first, model="m", reason=Mark.Reason.QUOTA_EXHAUSTED, until=now - timedelta(1)
    )
    Mark.objects.create(
        credential=second, model="m", reason=Mark.Reason.QUOTA_EXHAUSTED, until=now + timedelta(1)
    )
    Mark.objects.create(
        credential=third, model="m", reason=Mark.Reason.RATE_LIMITED, until=now - timedelta(1)
    )
    assert pool.quotas_reset(user_id=None, now=now, force=False).cleared == 1
    assert set(Mark.objects.values_list("credential_id", flat=True)) == {second.id, third.id}


def test_a_revoked_key_is_refused_on_the_next_request(http, alice):
    from accounts.services import api_key_revoke

    assert chat(http, alice.key).status_code == 200
    api_key_revoke(api_key=alice.api_key, now=clock.now())
    refused = chat(http, alice.key)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
def test_the_hot_path_makes_no_query_on_a_warm_cache_with_redis(
    alice, django_assert_max_num_queries, settings
):
    """Measured in-process (the live server's thread would hide its queries). On the Redis
    profile a warm request makes none; the database profile keeps its state in the database
    (one locked pick, plus its rate window and mark reads) and is allowed those."""
    import asyncio

    from rotator import aliases, pipeline
    from rotator.codecs import openai_chat
    from rotator.context import RequestContext
    from rotator.upstream import upstream_clients_close

    async def one() -> int:
        key = await pool.api_key_authenticate(presented=alice.key, now=clock.now())
        # As the views do: the alias table's version is confirmed on every request (the
        # aliases never changed here, so its durable version is still 0).
        assert await aliases.model_resolve(
            user_id=key.user_id, requested=CHAT["model"], confirm=False
        )
        ctx = RequestContext(request_id="q", dialect=openai_chat.NAME, key=key)
        response = await pipeline.generate(
            ctx,
            codec=openai_chat,
            body=dict(CHAT),
            model=CHAT["model"],
            stream=False,
            openai_path="chat/completions",
            openai_document=dict(CHAT),
        )
        await upstream_clients_close()
        return response.status_code

    from rotator.orm import queries_made

    def redis_reads() -> int:
        if not settings.REDIS_URL:
            return 0
        stats = redis.Redis.from_url(settings.REDIS_URL).info("commandstats")
        return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("get", "mget"))

    asyncio.run(one())  # warm: snapshot, key cache, script
    before = queries_made()
    reads_before = redis_reads()
    with django_assert_max_num_queries(0):  # nothing on the calling thread either
        assert asyncio.run(one()) == 200
    made = queries_made() - before
    # The alias table's version is confirmed by the pick itself, not by a read of its own.
    assert redis_reads() == reads_before
    if settings.REDIS_URL:
        assert made == 0
    else:
        assert 1 <= made <= 3, "the database backend picks (and reads versions) in the database"


def test_a_key_revoked_after_use_cannot_list_models_either(http, alice):
    from accounts.services import api_key_revoke

    headers = {"authorization": f"Bearer {alice.key}"}
    assert http.get("/v1/models", headers=headers).status_code == 200
    api_key_revoke(api_key=alice.api_key, now=clock.now())
    assert http.get("/v1/models", headers=headers).status_code == 401
