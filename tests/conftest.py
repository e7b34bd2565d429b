"""Shared fixtures: personas, the fake Gemini upstream, and Rotator served over real HTTP.

alice owns a pool of three Gemini API keys, bob another of two, charlie has a key and no pool.
Every test gets its own Redis key prefix, a fresh fake upstream and a restored clock.
"""

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from django.contrib.auth.models import User

from accounts.models import ApiKey, Credential
from accounts.services import api_key_create, credential_add
from tests.fake_gemini import FakeGemini


@pytest.fixture(scope="session")
def fake_gemini() -> Iterator[FakeGemini]:
    fake = FakeGemini().start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _isolated(settings, fake_gemini: FakeGemini) -> Iterator[None]:
    """Per test: upstream points at the fake, its own Redis namespace, clean process state."""
    from common import clock
    from rotator import oauth, pool
    from stats import usage

    fake_gemini.reset()
    settings.GEMINI_UPSTREAM_URL = fake_gemini.gemini_url
    settings.OPENAI_UPSTREAM_URL = fake_gemini.openai_url
    settings.CODE_ASSIST_UPSTREAM_URL = fake_gemini.code_assist_url
    settings.OAUTH_TOKEN_URL = fake_gemini.oauth_token_url
    settings.STATE_KEY_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    settings.OAUTH_ONBOARD_POLL_SECONDS = 0.01
    settings.USAGE_FLUSH_SECONDS = 0.2
    # Personas get passwords; the real hasher would spend most of a test's time on them.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    pool.process_state_forget()
    oauth.process_tokens_forget()
    clock.clock_restore()
    usage._buffer.take()
    yield
    clock.clock_restore()
    pool.process_state_forget()
    oauth.process_tokens_forget()
    usage._buffer.take()


@dataclass
class Persona:
    user: User
    key: str
    api_key: ApiKey
    credentials: list[Credential]

    @property
    def upstream_keys(self) -> list[str]:
        return [c.secret() for c in self.credentials]


def persona_create(name: str, *, credentials: int, **key_options) -> Persona:
    user = User.objects.create_user(username=name, password=f"{name}-password-1")
    api_key, secret = api_key_create(user=user, name=f"{name}'s key", **key_options)
    added = [
        credential_add(
            user=user, api_key=f"AIzaFake{name.capitalize()}{index:02d}" + "x" * 27
        ).credential
        for index in range(1, credentials + 1)
    ]
    return Persona(user=user, key=secret, api_key=api_key, credentials=added)


@pytest.fixture
def alice(db) -> Persona:
    return persona_create("alice", credentials=3)


@pytest.fixture
def bob(db) -> Persona:
    return persona_create("bob", credentials=2)


@pytest.fixture
def charlie(db) -> Persona:
    return persona_create("charlie", credentials=0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def _database_sessions_ended(django_db_setup, django_db_blocker) -> Iterator[None]:
    yield
    with django_db_blocker.unblock():
        _database_sessions_end()


@pytest.fixture(scope="session")
def live_server_url(django_db_setup, django_db_blocker) -> Iterator[str]:
    """Rotator's ASGI app under uvicorn in a thread of this process (so tests can move its
    clock and steer its settings), on the test database."""
    from config.asgi import application

    port = _free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    with django_db_blocker.unblock():
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(timeout=10)
        _database_sessions_end()


def _database_sessions_end() -> None:
    """The server's worker threads keep database connections open; end them so that
    pytest-django can drop the test database."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture
def live(live_server_url: str, transactional_db) -> Iterator[str]:
    """The live server's URL, for a test whose data the server thread must see."""
    from rotator.stored_responses import stored_responses_pending_drop
    from stats import usage

    yield live_server_url
    # Before the tables are emptied: drop buffered counts and wait out a flush in progress,
    # which would otherwise race the truncation (a deadlock on PostgreSQL).
    # On Redis the counts wait in a hash under this test's prefix: drop it too.
    with usage._flush_lock:
        usage._buffer.take()
        _redis_usage_drop()
    stored_responses_pending_drop()


def _redis_usage_drop() -> None:
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    from rotator.state import state_backend, state_key

    client = state_backend().sync_client  # type: ignore[attr-defined]
    stale = list(client.scan_iter(match=state_key("usage", "*")))
    if stale:
        client.delete(*stale)


@pytest.fixture
def http(live: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live, timeout=30) as client:
        yield client
