"""Faults: what Rotator does when upstream, the client, Redis or the database misbehave.

Upstream and client faults go through the live server (in this process, so its settings can be
steered). Infrastructure faults need processes of their own: a Rotator subprocess on a private
redis-server that the test kills and restarts, and one whose database is out of reach at start.
"""

import json
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection

from accounts.models import ApiKey
from rotator.models import Mark, PoolState
from stats.models import UsageCounter
from stats.usage import usage_flush
from tests.conftest import persona_create
from tests.support.processes import RedisServer, Rotator, TcpGate, database_url

MODEL = "gemini-2.5-flash"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "tell me a story"}]}]}
GENERATE = f"/v1beta/models/{MODEL}:generateContent"
STREAM = f"/v1beta/models/{MODEL}:streamGenerateContent"


def _chat(http: httpx.Client, key: str, **body) -> httpx.Response:
    return http.post(
        "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json={**CHAT, **body}
    )


def _native(http: httpx.Client, key: str, path: str, **params) -> httpx.Response:
    return http.post(path, headers={"x-goog-api-key": key}, params=params, json=CONTENTS)


def _usage_counted(*, requests: int) -> UsageCounter:
    """The one usage row, once the server has counted `requests` (streams count as they end)."""
    deadline = time.monotonic() + 20  # a bound under load, not a wait
    while True:
        usage_flush()
        rows = list(UsageCounter.objects.all())
        if sum(r.requests for r in rows) >= requests or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [row] = rows
    return row


def _wait_for(predicate, *, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _state_unavailable(response: httpx.Response) -> None:
    """A storage outage answer: 503, JSON in the OpenAI dialect, a hint to retry."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "state_unavailable"
    assert int(response.headers["retry-after"]) > 0


# ------------------------------------------------------------------------- upstream faults


@pytest.mark.parametrize("status", [500, 503])
def test_an_upstream_server_error_is_retried_on_another_credential(
    http, alice, fake_gemini, status
):
    failing = alice.upstream_keys[:2]
    for secret in failing:
        fake_gemini.behave(secret, "server_error", status=status)
    # Two requests start on two different credentials, so at least one starts on a failing one.
    for _ in range(2):
        assert _chat(http, alice.key).status_code == 200
    statuses = [(r.secret in failing, r.status) for r in fake_gemini.requests]
    assert (True, status) in statuses
    assert {s for failed, s in statuses if not failed} == {200}


def test_when_every_credential_fails_the_client_gets_a_502_saying_so(http, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "server_error", status=503)
    response = _chat(http, alice.key)
    assert response.status_code == 502
    assert response.json()["error"]["message"].startswith("Upstream failed on 3 attempt(s)")
    native = _native(http, alice.key, GENERATE)
    assert native.status_code == 502
    assert native.json()["error"]["status"] == "UNAVAILABLE"
    assert {r.secret for r in fake_gemini.requests} == set(alice.upstream_keys)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_upstream_that_does_not_answer_in_time_is_abandoned_for_another_credential(
    http, alice, fake_gemini, settings, stream
):
    settings.UPSTREAM_READ_TIMEOUT_SECONDS = 0.5
    slow = alice.upstream_keys[:2]
    for secret in slow:
        fake_gemini.behave(secret, "timeout", seconds=60)
    started = time.monotonic()
    for _ in range(2):
        response = _native(http, alice.key, STREAM, alt="sse") if stream else _chat(http, alice.key)
        assert response.status_code == 200
    # Each abandoned attempt costs the read timeout, not the minute upstream would take (the
    # bound is loose so that a loaded machine cannot fail it; waiting would take 120 s).
    assert time.monotonic() - started < 30
    abandoned = [r for r in fake_gemini.requests if r.secret in slow]
    assert abandoned and all(r.cancelled for r in abandoned)


def test_a_connection_reset_is_retried_on_another_credential(http, alice, fake_gemini):
    broken = alice.upstream_keys[:2]
    for secret in broken:
        fake_gemini.behave(secret, "reset")
    for _ in range(2):
        assert _chat(http, alice.key).status_code == 200
        assert _native(http, alice.key, GENERATE).status_code == 200
    assert any(r.secret in broken for r in fake_gemini.requests)


def test_a_native_sse_stream_cut_upstream_ends_cleanly_with_an_error_event(
    live, alice, fake_gemini
):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "cut_stream", after=2)
    with httpx.Client(base_url=live, timeout=30) as client:
        response = _native(client, alice.key, STREAM, alt="sse")
    assert response.status_code == 200
    events = [
        json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")
    ]
    assert len(events) == 3
    assert all("candidates" in event for event in events[:2])
    assert events[-1]["error"]["status"] == "UNAVAILABLE"
    assert events[-1]["error"]["message"].startswith("The upstream stream was interrupted")
    counted = _usage_counted(requests=1)
    assert (counted.requests, counted.successes, counted.failures) == (1, 0, 1)


def test_a_json_array_stream_cut_upstream_is_still_a_whole_array_ending_in_an_error(
    live, alice, fake_gemini
):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "cut_stream", after=2)
    with httpx.Client(base_url=live, timeout=30) as client:
        response = _native(client, alice.key, STREAM)
    assert response.status_code == 200
    items = json.loads(response.text)  # parses: the array is closed
    assert len(items) == 3
    assert all("candidates" in item for item in items[:2])
    assert items[-1]["error"]["message"].startswith("The upstream stream was interrupted")
    counted = _usage_counted(requests=1)
    assert (counted.requests, counted.successes, counted.failures) == (1, 0, 1)


def test_a_slow_first_byte_is_waited_for_and_then_streamed(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "slow_first_byte", seconds=1)
    arrivals = []
    started = time.monotonic()
    with (
        httpx.Client(base_url=live, timeout=30) as client,
        client.stream(
            "POST",
            STREAM,
            params={"alt": "sse"},
            headers={"x-goog-api-key": alice.key},
            json=CONTENTS,
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic() - started)
    assert 0.9 < arrivals[0] < 3
    assert len(arrivals) == 3
    assert [r.secret for r in fake_gemini.requests] == [fake_gemini.requests[0].secret]


def test_a_client_leaving_a_native_stream_cancels_upstream_and_is_counted(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "ok", chunks=20, chunk_delay=0.3)
    with (
        httpx.Client(base_url=live, timeout=30) as client,
        client.stream(
            "POST",
            STREAM,
            params={"alt": "sse"},
            headers={"x-goog-api-key": alice.key},
            json=CONTENTS,
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:"):
                break
    assert _wait_for(lambda: fake_gemini.cancelled == 1)
    [upstream] = fake_gemini.requests
    assert upstream.cancelled
    counted = _usage_counted(requests=1)
    assert (counted.requests, counted.successes, counted.failures) == (1, 0, 1)
    assert counted.credential_id is not None


# ------------------------------------------------------------------- infrastructure faults


# Rotator subprocesses read the test database: its rows must be committed.
infrastructure = pytest.mark.django_db(transaction=True)


@infrastructure
def test_a_redis_restart_fails_requests_clearly_then_recovers_with_marks_intact(fake_gemini):
    rita = persona_create("rita", credentials=3)
    spent = rita.upstream_keys[0]
    fake_gemini.behave(spent, "quota_day")
    redis = RedisServer().start()
    rotator = Rotator(fake_gemini, env={"REDIS_URL": redis.url, "LOG_LEVEL": "ERROR"})
    try:
        rotator.wait_answering()
        with httpx.Client(base_url=rotator.url, timeout=10) as http:
            for _ in range(3):
                assert _chat(http, rita.key).status_code == 200
            mark = Mark.objects.get(credential_id=rita.credentials[0].pk)
            assert mark.reason == Mark.Reason.QUOTA_EXHAUSTED
            assert [r.status for r in fake_gemini.requests_for(spent)] == [429]

            redis.kill()
            started = time.monotonic()
            _state_unavailable(_chat(http, rita.key))
            native = _native(http, rita.key, GENERATE)
            assert native.status_code == 503
            assert native.json()["error"]["status"] == "UNAVAILABLE"
            health = http.get("/healthz")
            assert health.status_code == 503
            assert health.json()["state"].startswith("error")
            assert time.monotonic() - started < 5, "an outage must be answered, not waited on"

            redis.start()  # same port, empty: everything Redis held is gone
            seen = len(fake_gemini.requests)
            for _ in range(6):
                assert _chat(http, rita.key).status_code == 200
            assert http.get("/healthz").status_code == 200
    finally:
        rotator.stop()
        redis.kill()
    after = fake_gemini.requests[seen:]
    # The quota mark came back from the database: the spent credential is still skipped.
    assert len(after) == 6
    assert spent not in {r.secret for r in after}


class _DatabaseOutage:
    """A database out of reach until `restore()`: PostgreSQL behind a TcpGate that hangs up
    on every connection, or (SQLite, which has no server to be down) a database file in a
    directory that does not exist yet, as on a volume mounted after the server started."""

    def __init__(self, tmp_path: Path) -> None:
        if connection.vendor == "postgresql":
            port = int(django_settings.DATABASES["default"]["PORT"] or 5432)
            self._gate: TcpGate | None = TcpGate(target_port=port).start()
            self.url = database_url(host="127.0.0.1", port=self._gate.port)
        else:
            self._gate = None
            real = Path(django_settings.DATABASES["default"]["NAME"])
            self._mount = tmp_path / "volume"
            self._real_dir = real.parent
            self.url = f"sqlite:///{self._mount / real.name}"

    def restore(self) -> None:
        if self._gate is not None:
            self._gate.open()
        else:
            self._mount.symlink_to(self._real_dir, target_is_directory=True)

    def close(self) -> None:
        if self._gate is not None:
            self._gate.stop()


@infrastructure
def test_a_database_out_of_reach_at_start_is_reported_then_used_once_back(fake_gemini, tmp_path):
    dora = persona_create("dora", credentials=2)
    outage = _DatabaseOutage(tmp_path)
    rotator = Rotator(fake_gemini, env={"DATABASE_URL": outage.url, "LOG_LEVEL": "ERROR"})
    try:
        rotator.wait_answering(healthy=False)
        with httpx.Client(base_url=rotator.url, timeout=10) as http:
            health = http.get("/healthz")
            assert health.status_code == 503
            assert health.json()["database"].startswith("error")
            _state_unavailable(_chat(http, dora.key))
            assert fake_gemini.requests == []

            outage.restore()  # no restart of Rotator
            assert _chat(http, dora.key).status_code == 200
            assert http.get("/healthz").status_code == 200
            assert _native(http, dora.key, GENERATE).status_code == 200
    finally:
        rotator.stop()
        outage.close()
    assert len(fake_gemini.requests) == 2
    assert ApiKey.objects.get(pk=dora.api_key.pk).last_used_at is not None


def _usage_total() -> int:
    return sum(UsageCounter.objects.values_list("requests", flat=True))


@infrastructure
def test_a_killed_worker_loses_no_count_of_what_it_answered_on_redis(fake_gemini):
    """Counts go into Redis before an answer's last byte (chat, native, streamed); a worker
    SIGKILLed right after loses none of them, and the next process's flush stores them. Before,
    each worker buffered its counts in memory and a kill lost every one since its last flush."""
    kim = persona_create("kim", credentials=2)
    redis = RedisServer().start()
    # No buffer flush would come in time: only what reached Redis can survive the kill.
    worker = Rotator(fake_gemini, env={"REDIS_URL": redis.url, "USAGE_FLUSH_SECONDS": "3600"})
    survivor = None
    try:
        worker.wait_answering()
        with httpx.Client(base_url=worker.url, timeout=10) as http:
            for _ in range(4):
                assert _chat(http, kim.key).status_code == 200
                assert _chat(http, kim.key, stream=True).status_code == 200
                assert _native(http, kim.key, GENERATE).status_code == 200
                assert _native(http, kim.key, STREAM, alt="sse").status_code == 200
        worker.kill()
        assert _usage_total() == 0
        survivor = Rotator(fake_gemini, env={"REDIS_URL": redis.url})
        survivor.wait_answering()
        # A request makes the survivor's flusher run; it moves every worker's counts.
        with httpx.Client(base_url=survivor.url, timeout=10) as http:
            assert _chat(http, kim.key).status_code == 200
        assert _wait_for(lambda: _usage_total() == 17, seconds=20), _usage_total()
    finally:
        worker.kill()
        if survivor is not None:
            survivor.stop()
        redis.kill()
    assert len(fake_gemini.requests) == 17
    rows = UsageCounter.objects.all()
    assert sum(r.successes for r in rows) == 17
    assert sum(r.total_tokens for r in rows) > 0
    assert {r.credential_id for r in rows} == {c.pk for c in kim.credentials}


@infrastructure
def test_after_a_redis_restart_round_robin_goes_on_where_it_was(fake_gemini):
    """The cursor is kept in the database as counts are flushed; a Redis that lost it resumes
    there. Before, a restarted Redis sent the next request to the pool's first credential
    again, so every Redis restart loaded the first credentials of every pool."""
    rory = persona_create("rory", credentials=3)
    redis = RedisServer().start()
    rotator = Rotator(fake_gemini, env={"REDIS_URL": redis.url, "USAGE_FLUSH_SECONDS": "0.1"})
    try:
        rotator.wait_answering()
        with httpx.Client(base_url=rotator.url, timeout=10) as http:
            for _ in range(2):
                assert _chat(http, rory.key).status_code == 200
            served = [r.secret for r in fake_gemini.requests]
            assert served == rory.upstream_keys[:2]
            assert _wait_for(lambda: PoolState.objects.get(user=rory.user).cursor >= 2, seconds=20)
            redis.kill()
            redis.start()  # same port, empty
            assert _chat(http, rory.key).status_code == 200
    finally:
        rotator.stop()
        redis.kill()
    assert fake_gemini.requests[-1].secret == rory.upstream_keys[2]
