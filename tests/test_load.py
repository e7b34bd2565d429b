"""Load: two server processes, 2,000 requests at concurrency 64, one credential rate-limiting
and one refused as invalid. Every request is answered, every attempt is counted exactly, and no
request reaches a credential after the pool has learned it must not be used."""

import asyncio
import time
from collections import Counter

import httpx
import pytest

from accounts.models import Credential
from stats.models import UsageCounter
from tests.conftest import persona_create
from tests.support.processes import Rotator

pytestmark = pytest.mark.django_db(transaction=True)

TOTAL = 2000
CONCURRENCY = 64


async def _drive(urls: list[str], key: str) -> tuple[Counter, dict[str, float], dict[str, float]]:
    """Sends TOTAL chat completions, CONCURRENCY at a time, alternating between the servers.

    Returns how many got each status, and when each was sent and its answer received, by its
    text ("count me 17").
    """
    statuses: Counter = Counter()
    sent_at: dict[str, float] = {}
    received_at: dict[str, float] = {}
    numbers = iter(range(TOTAL))

    async def worker(client: httpx.AsyncClient) -> None:
        for number in numbers:
            text = f"count me {number}"
            body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": text}]}
            sent_at[text] = time.time()
            try:
                response = await client.post(
                    f"{urls[number % len(urls)]}/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {key}"},
                )
                statuses[response.status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            received_at[text] = time.time()

    # Idle connections are dropped before uvicorn's 5 s keep-alive ends them, so a request
    # never races the server closing the connection it was about to reuse.
    limits = httpx.Limits(
        max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY, keepalive_expiry=2
    )
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return statuses, sent_at, received_at


def test_two_workers_answer_2000_requests_with_one_credential_limited_and_one_invalid(
    fake_gemini,
):
    lena = persona_create("lena", credentials=5)
    limited, invalid = lena.upstream_keys[0], lena.upstream_keys[1]
    # Under five minutes, so Google's words mean a short-term limit, not an exhausted quota.
    fake_gemini.behave(limited, "rate_limit_minute", retry_delay="240s")
    fake_gemini.behave(invalid, "invalid_key")
    servers = [Rotator(fake_gemini, env={"LOG_LEVEL": "ERROR"}) for _ in range(2)]
    try:
        for server in servers:
            server.wait_answering()
        started = time.monotonic()
        statuses, sent_at, received_at = asyncio.run(_drive([s.url for s in servers], lena.key))
        elapsed = time.monotonic() - started
    finally:
        for server in servers:
            server.stop()  # SIGTERM: the lifespan shutdown flushes the usage counters
    assert statuses == Counter({200: TOTAL})
    assert elapsed < 60, f"{TOTAL} requests took {elapsed:.1f} s"

    upstream = fake_gemini.requests
    assert {r.path for r in upstream} == {"/v1beta/openai/chat/completions"}
    by_secret = Counter(r.secret for r in upstream)
    limited_requests = [r for r in upstream if r.secret == limited]
    invalid_requests = [r for r in upstream if r.secret == invalid]
    assert limited_requests and invalid_requests

    def text(record) -> str:
        return record.body["messages"][0]["content"]

    def learned_by(refused: list) -> float:
        """A moment by which Rotator had certainly recorded the refusal (a mark, an
        invalidation): the pool records a verdict before it retries, so a client holding the
        answer to a request that was refused there and retried elsewhere proves it. No fixed
        slack: on a busy machine recording can take longer than any guess."""
        return min(received_at[text(r)] for r in refused)

    # Requests in flight when the first 429 came back may still land on the limited
    # credential, however late they reach the fake; a request the client sent once Rotator had
    # recorded the mark must not.
    marked = learned_by(limited_requests)
    late = [r for r in limited_requests if sent_at[text(r)] > marked]
    assert late == [], f"{len(late)} requests reached a credential inside its cooldown"
    # The same for the invalid one; what was in flight is at most one request per connection.
    invalidated = learned_by(invalid_requests)
    late = [r for r in invalid_requests if sent_at[text(r)] > invalidated]
    assert late == [], f"{len(late)} requests reached a credential after it was marked invalid"
    assert len(invalid_requests) <= CONCURRENCY
    assert Credential.objects.get(pk=lena.credentials[1].pk).status == Credential.Status.INVALID

    # Every attempt counted once, on the credential that made it.
    counters = UsageCounter.objects.filter(user=lena.user)
    assert sum(c.successes for c in counters) == TOTAL
    assert sum(c.requests for c in counters) == len(upstream)
    assert sum(c.rate_limited for c in counters) == len(limited_requests)
    assert sum(c.failures for c in counters) == len(limited_requests) + len(invalid_requests)
    per_credential: Counter = Counter()
    for counter in counters:
        per_credential[counter.credential_id] += counter.requests
    expected = {c.pk: by_secret[c.secret()] for c in lena.credentials}
    assert dict(per_credential) == {pk: n for pk, n in expected.items() if n}
    totals = dict(Credential.objects.filter(user=lena.user).values_list("pk", "requests_total"))
    assert totals == expected
