"""Two server processes behind one pool behave like one: exact counters, shared cooldowns."""

import asyncio
from collections import Counter

import httpx
import pytest

from stats.models import UsageCounter
from tests.conftest import persona_create
from tests.support.processes import Rotator

pytestmark = pytest.mark.django_db(transaction=True)


async def _drive(ports: list[int], key: str, total: int, concurrency: int) -> Counter:
    statuses: Counter = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(total):
        queue.put_nowait(number)
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "count me"}]}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            number = queue.get_nowait()
            port = ports[number % len(ports)]
            response = await client.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {key}"},
            )
            statuses[response.status_code] += 1

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return statuses


def test_two_processes_count_exactly_and_respect_each_others_cooldowns(fake_gemini):
    hana = persona_create("hana", credentials=4)
    limited = hana.upstream_keys[0]
    fake_gemini.behave(limited, "rate_limit_minute", retry_delay="60s")
    servers = [Rotator(fake_gemini), Rotator(fake_gemini)]
    try:
        for server in servers:
            server.wait_answering()
        ports = [server.port for server in servers]
        statuses = asyncio.run(_drive(ports, hana.key, total=400, concurrency=32))
    finally:
        for server in servers:
            server.stop()  # graceful: the lifespan shutdown flushes usage
    assert statuses == Counter({200: 400})
    upstream = [r for r in fake_gemini.requests if r.dialect == "openai"]
    limited_requests = [r for r in upstream if r.secret == limited]
    first_refusal_seen = min(r.finished_at for r in limited_requests)
    # Requests already in flight when the first 429 came back may still land on it; none may
    # start after Rotator had time to record the mark (100 ms of slack for that write).
    late = [r for r in limited_requests if r.started_at > first_refusal_seen + 0.1]
    assert late == [], f"{len(late)} requests reached a credential inside its cooldown"
    counters = UsageCounter.objects.filter(user=hana.user)
    assert sum(c.successes for c in counters) == 400
    assert sum(c.requests for c in counters) == len(upstream)
    assert sum(c.rate_limited for c in counters) == len(limited_requests)
    assert sum(c.failures for c in counters) == len(limited_requests)


MASTER = "master-key-for-two-process-tests-0123"
CHAT = {"messages": [{"role": "user", "content": "hello"}]}


def _chat(server: Rotator, key: str, model: str = "gemini-2.5-flash") -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json={**CHAT, "model": model},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def _operator(server: Rotator, method: str, path: str, body: dict | None = None):
    response = httpx.request(
        method,
        f"{server.url}{path}",
        json=body,
        headers={"authorization": f"Bearer {MASTER}"},
        timeout=30,
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _two_servers(fake_gemini) -> list[Rotator]:
    servers = [Rotator(fake_gemini, env={"MASTER_API_KEY": MASTER}) for _ in range(2)]
    for server in servers:
        server.wait_answering()
    return servers


def test_a_key_created_through_one_process_is_served_at_once_by_the_other(fake_gemini):
    iris = persona_create("iris", credentials=2)
    one, other = _two_servers(fake_gemini)
    try:
        assert _chat(other, iris.key).status_code == 200  # the other caches iris's pool
        created = _operator(one, "POST", "/api/keys/", {"user": iris.user.id})
        response = _chat(other, created["secret"])
    finally:
        one.stop()
        other.stop()
    assert response.status_code == 200, response.text


def test_a_credential_enabled_through_one_process_serves_at_once_through_the_other(
    fake_gemini,
):
    jun = persona_create("jun", credentials=1)
    credential = jun.credentials[0]
    credential.enabled = False
    credential.save(update_fields=["enabled"])
    one, other = _two_servers(fake_gemini)
    try:
        refused = _chat(other, jun.key)  # the other caches jun's pool as empty
        _operator(one, "POST", f"/api/credentials/{credential.id}/enable/")
        response = _chat(other, jun.key)
    finally:
        one.stop()
        other.stop()
    assert refused.status_code == 503
    assert response.status_code == 200, response.text


def test_a_key_widened_or_narrowed_in_one_process_is_checked_as_changed_in_the_other(
    fake_gemini,
):
    kai = persona_create("kai", credentials=2, allowed_models=["gemini-2.5-flash"])
    one, other = _two_servers(fake_gemini)
    try:
        assert _chat(other, kai.key).status_code == 200  # the other caches the narrow key
        assert _chat(other, kai.key, model="gemini-2.5-pro").status_code == 403
        _operator(one, "PATCH", f"/api/keys/{kai.api_key.id}/", {"allowed_models": []})
        widened = _chat(other, kai.key, model="gemini-2.5-pro")
        _operator(
            one, "PATCH", f"/api/keys/{kai.api_key.id}/", {"allowed_models": ["gemini-2.5-pro"]}
        )
        narrowed = _chat(other, kai.key)
    finally:
        one.stop()
        other.stop()
    assert widened.status_code == 200, widened.text
    assert narrowed.status_code == 403, narrowed.text
    assert narrowed.json()["error"]["code"] == "model_not_allowed"


def test_the_circuit_breaker_opens_after_failures_spread_over_two_processes(fake_gemini):
    lena = persona_create("lena", credentials=2)
    failing = lena.upstream_keys[0]
    fake_gemini.behave(failing, "server_error", status=500)
    env = {"CIRCUIT_BREAKER_FAILURES": "4", "CIRCUIT_BREAKER_COOLDOWN_SECONDS": "600"}
    servers = [Rotator(fake_gemini, env=env) for _ in range(2)]
    try:
        for server in servers:
            server.wait_answering()
        # One at a time, alternating: each worker sees every other failure.
        statuses = [_chat(servers[number % 2], lena.key).status_code for number in range(12)]
    finally:
        for server in servers:
            server.stop()
    assert statuses == [200] * 12
    calls = [r for r in fake_gemini.requests_for(failing) if r.method == "POST"]
    assert len(calls) == 4, "the breaker did not open after 4 failures over both workers"


def test_two_processes_refreshing_one_oauth_token_call_the_token_endpoint_once(fake_gemini):
    from tests.rotator.test_oauth import oauth_persona, refresh_tokens

    mina = oauth_persona("mina", fake_gemini, project_id="mina-project")
    servers = [Rotator(fake_gemini) for _ in range(2)]
    fake_gemini.token_delay_seconds = 0.5  # both processes ask while the first refresh runs
    try:
        for server in servers:
            server.wait_answering()
        ports = [server.port for server in servers]
        statuses = asyncio.run(_drive(ports, mina.key, total=8, concurrency=8))
    finally:
        fake_gemini.token_delay_seconds = 0.0
        for server in servers:
            server.stop()
    assert statuses == Counter({200: 8})
    assert fake_gemini.oauth_refresh_count(refresh_tokens(mina)[0]) == 1


def test_a_hanging_token_endpoint_never_holds_up_a_write_in_another_process(fake_gemini):
    import concurrent.futures
    import time

    from tests.rotator.test_oauth import oauth_persona

    nora = oauth_persona("nora", fake_gemini, project_id="nora-project")
    one, other = _two_servers(fake_gemini)
    fake_gemini.token_delay_seconds = 5.0  # far longer than an API write takes under load
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            chat = pool.submit(_chat, one, nora.key)
            deadline = time.monotonic() + 10
            while not [r for r in fake_gemini.requests if r.dialect == "oauth"]:
                assert time.monotonic() < deadline, "the token endpoint was never called"
                time.sleep(0.02)
            _operator(other, "POST", "/api/keys/", {"user": nora.user.id})
            token_calls = [r for r in fake_gemini.requests if r.dialect == "oauth"]
            still_refreshing = token_calls[0].finished_at is None
            answered = chat.result(timeout=30)
    finally:
        fake_gemini.token_delay_seconds = 0.0
        one.stop()
        other.stop()
    assert still_refreshing, "the write waited for the token endpoint"
    assert answered.status_code == 200, answered.text
