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
