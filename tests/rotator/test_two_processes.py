"""Two server processes behind one pool behave like one: exact counters, shared cooldowns."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
from django.conf import settings
from django.db import connection

from stats.models import UsageCounter
from tests.conftest import _free_port, persona_create

pytestmark = pytest.mark.django_db(transaction=True)


def _database_url() -> str:
    database = settings.DATABASES["default"]
    if connection.vendor == "postgresql":
        user = database["USER"] or "postgres"
        host = database["HOST"] or "127.0.0.1"
        return f"postgres://{user}@{host}:{database['PORT'] or 5432}/{database['NAME']}"
    return f"sqlite:///{database['NAME']}"


def _server_start(port: int, fake_gemini) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "STATE_KEY_PREFIX": settings.STATE_KEY_PREFIX,
        "GEMINI_UPSTREAM_URL": fake_gemini.gemini_url,
        "OPENAI_UPSTREAM_URL": fake_gemini.openai_url,
        "CODE_ASSIST_UPSTREAM_URL": fake_gemini.code_assist_url,
        "OAUTH_TOKEN_URL": fake_gemini.oauth_token_url,
        "USAGE_FLUSH_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    command = [
        sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
        "--port", str(port), "--lifespan", "on", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, cwd=settings.BASE_DIR)


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on {port} did not start")


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
    ports = [_free_port(), _free_port()]
    servers = [_server_start(port, fake_gemini) for port in ports]
    try:
        for port in ports:
            _wait_ready(port)
        statuses = asyncio.run(_drive(ports, hana.key, total=400, concurrency=32))
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)  # graceful: the lifespan shutdown flushes usage
        for server in servers:
            server.wait(timeout=30)
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
