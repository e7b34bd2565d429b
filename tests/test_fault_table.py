"""The fault table (docs/reliability.md): two Rotator workers under load while one fault at a
time hits them, and what the clients and the counters saw.

For every fault: each request is answered, refused with a clear error in its dialect, or (only
where a worker dies under it) cut; none waits past the client's timeout; the usage counters
afterwards equal the generation requests that reached upstream, except the requests a killed
worker had in flight; and the credential whose daily quota is spent gets no request at all,
whatever restarts (its mark lives in the state backend and the database).

On the production profile (PostgreSQL + Redis) the workers share a private redis-server that
keeps an append-only file, as compose.yaml's does, and reach PostgreSQL through a TcpGate the
test can shut. On the embedded default they share the SQLite file and the database state; the
Redis and PostgreSQL faults do not exist there, and a killed worker also loses what it had
counted since its last flush (USAGE_FLUSH_SECONDS).
"""

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings

from rotator.models import Mark
from stats.models import UsageCounter
from tests.conftest import Persona, persona_create
from tests.rotator.test_oauth import oauth_persona
from tests.support.processes import RedisServer, Rotator, TcpGate, database_url
from tests.test_faults import _wait_for

MODEL = "gemini-2.5-flash"
CLIENTS = 6
LOAD_SECONDS = 7.0
FAULT_AT_SECONDS = 2.0
CLIENT_TIMEOUT_SECONDS = 20.0
FLUSH_SECONDS = 0.5
# Generation requests as the fake records them (model lists and Code Assist setup carry none).
GENERATION_DIALECTS = {"gemini", "openai", "code_assist"}

PRODUCTION = bool(django_settings.REDIS_URL)
FAULTS = (
    ["worker SIGKILLed and restarted", "Redis restarted", "PostgreSQL refuses connections 5 s"]
    if PRODUCTION
    else ["worker SIGKILLed and restarted"]
) + ["OAuth token endpoint hangs", "upstream answers 500s in bursts"]

# Rows of the table, printed once the module's faults have run (pytest -s shows them).
_TABLE: dict[str, "Row"] = {}


@dataclass
class Outcome:
    kind: str  # answered, refused, cut, hung
    started: float
    ended: float
    worker: int


@dataclass
class Row:
    fault: str
    outcomes: list[Outcome]
    reached: int
    counted: int
    killed_in_flight: int = 0

    def of(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    @property
    def lost(self) -> int:
        return self.reached - self.counted

    def markdown(self) -> str:
        cells = [
            self.fault, len(self.outcomes), self.of("answered"), self.of("refused"),
            self.of("cut"), self.reached, self.counted, self.lost,
        ]  # fmt: skip
        return "| " + " | ".join(str(c) for c in cells) + " |"


@pytest.fixture(scope="module", autouse=True)
def _table_printed() -> Iterator[None]:
    yield
    if _TABLE:
        profile = "PostgreSQL + Redis" if PRODUCTION else "embedded (SQLite)"
        print(f"\nfault table, {profile}, {CLIENTS} clients, {LOAD_SECONDS:.0f} s each:")
        print("| fault | sent | answered | refused | cut | reached upstream | counted | lost |")
        print("|---|---|---|---|---|---|---|---|")
        for fault in FAULTS:
            if fault in _TABLE:
                print(_TABLE[fault].markdown())


def _chat_body(stream: bool) -> dict:
    return {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


def _request_once(http: httpx.Client, url: str, key: str, stream: bool) -> str:
    """One chat request; returns answered, refused or cut. Raises httpx.ConnectError when the
    worker is not there (the load balancer's cue to try the other)."""
    headers = {"authorization": f"Bearer {key}"}
    try:
        with http.stream(
            "POST", f"{url}/v1/chat/completions", headers=headers, json=_chat_body(stream)
        ) as response:
            raw = response.read().decode()
    except httpx.ConnectError:
        raise
    except httpx.TimeoutException:
        return "hung"
    except httpx.TransportError:
        return "cut"
    if response.status_code != 200:
        error = json.loads(raw).get("error", {}) if raw.startswith("{") else {}
        return "refused" if error.get("message") else "cut"
    if not stream:
        return "answered" if json.loads(raw)["choices"][0]["message"]["content"] else "cut"
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    if events and events[-1] == "[DONE]":
        if any('"error"' in event for event in events[:-1]):
            return "refused"  # a stream that began, then said in-band why it stopped
        return "answered"
    return "cut"


class Load:
    """CLIENTS threads sending chat requests (streamed and not) over the workers in turn; a
    worker that refuses the connection is skipped for the other, as a load balancer does."""

    def __init__(self, urls: list[str], key: str) -> None:
        self.urls = urls
        self.key = key
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._until = 0.0
        self.fault_at = 0.0

    def run(self, seconds: float, fault: Callable[[], None]) -> None:
        self._until = time.monotonic() + seconds
        threads = [threading.Thread(target=self._client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(FAULT_AT_SECONDS)
            self.fault_at = time.monotonic()
            fault()
        finally:
            for thread in threads:
                thread.join(timeout=CLIENT_TIMEOUT_SECONDS * 3)

    def _client(self, number: int) -> None:
        timeout = httpx.Timeout(CLIENT_TIMEOUT_SECONDS, connect=2)
        with httpx.Client(timeout=timeout) as http:
            for sent in itertools.count():
                if time.monotonic() > self._until:
                    return
                started = time.monotonic()
                first = next(self._turn) % len(self.urls)
                kind, worker = "refused", first
                for worker in (first, 1 - first):
                    try:
                        kind = _request_once(http, self.urls[worker], self.key, sent % 2 == 1)
                        break
                    except httpx.ConnectError:
                        kind = "refused"  # neither worker took the connection
                with self._lock:
                    self.outcomes.append(Outcome(kind, started, time.monotonic(), worker))
                if kind != "answered":
                    time.sleep(0.05)  # as a client backs off; keeps the run's size bounded


@dataclass
class Fleet:
    """Two workers on the test database (through `gate` on PostgreSQL) and, on the production
    profile, a private Redis with an append-only file."""

    fake_gemini: object
    tmp_path: Path
    env: dict[str, str] = field(default_factory=dict)
    redis: RedisServer | None = None
    gate: TcpGate | None = None
    workers: list[Rotator] = field(default_factory=list)

    def start(self) -> "Fleet":
        self.env.update(
            USAGE_FLUSH_SECONDS=str(FLUSH_SECONDS),
            LOG_LEVEL="ERROR",
            UPSTREAM_CONNECT_TIMEOUT_SECONDS="2",
            UPSTREAM_READ_TIMEOUT_SECONDS="10",
        )
        if PRODUCTION:
            self.redis = RedisServer(data_dir=self.tmp_path).start()
            self.env["REDIS_URL"] = self.redis.url
            port = int(django_settings.DATABASES["default"]["PORT"] or 5432)
            self.gate = TcpGate(target_port=port).start()
            self.gate.open()
            self.env["DATABASE_URL"] = database_url(host="127.0.0.1", port=self.gate.port)
        try:
            self.workers = [Rotator(self.fake_gemini, env=self.env) for _ in range(2)]
            for worker in self.workers:
                worker.wait_answering()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def urls(self) -> list[str]:
        return [worker.url for worker in self.workers]

    def worker_restart(self, number: int) -> None:
        self.workers[number] = Rotator(
            self.fake_gemini, env=self.env, port=self.workers[number].port
        )
        self.workers[number].wait_answering()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.redis is not None:
            self.redis.kill()
        if self.gate is not None:
            self.gate.stop()


def _attempts_seen(fake_gemini) -> list:
    """The attempts as upstream saw them: every generation request, and every token refresh
    that gave no token (the attempt it served failed there, and is counted as a failure)."""
    return [
        r
        for r in fake_gemini.requests
        if (r.dialect in GENERATION_DIALECTS and r.model is not None)
        or (r.dialect == "oauth" and (r.cancelled or r.status != 200))
    ]


def _counted(persona: Persona) -> int:
    """The attempts counted against a credential: what reached upstream, as Rotator saw it
    (requests refused before any upstream call are counted too, without a credential)."""
    rows = UsageCounter.objects.filter(user=persona.user, credential__isnull=False)
    return sum(rows.values_list("requests", flat=True))


def _spend_one_credential(fleet: Fleet, persona: Persona) -> str:
    """Spends the first API key's daily quota and waits until the pool has marked it."""
    spent = persona.upstream_keys[0]
    fleet.fake_gemini.behave(spent, "quota_day")
    with httpx.Client(timeout=10) as http:
        while not fleet.fake_gemini.requests_for(spent):
            body = _chat_body(False)
            headers = {"authorization": f"Bearer {persona.key}"}
            assert http.post(f"{fleet.urls[0]}/v1/chat/completions", headers=headers, json=body)
    assert _wait_for(
        lambda: Mark.objects.filter(credential=persona.credentials[0]).exists(), seconds=10
    )
    return spent


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fault", FAULTS)
def test_under_load_every_request_is_answered_or_refused_and_counted(fault, fake_gemini, tmp_path):
    if fault == "OAuth token endpoint hangs":
        # Each access token is stale three seconds after it is minted, so refreshes keep coming
        # and some fall in the hang.
        persona = oauth_persona("fay", fake_gemini, api_keys=3, project_id="fay-project")
        env = {"OAUTH_REFRESH_MARGIN_SECONDS": "3597"}
    else:
        persona = persona_create("fay", credentials=3)
        env = {}
    fleet = Fleet(fake_gemini, tmp_path, env=env).start()
    killed_at: list[float] = []
    try:
        spent = _spend_one_credential(fleet, persona)
        seen = len(fake_gemini.requests)
        load = Load(fleet.urls, persona.key)
        load.run(LOAD_SECONDS, _fault_action(fault, fleet, persona, killed_at))
        if PRODUCTION:
            # Batches a flush could not finish (PostgreSQL away) are adopted ORPHAN_SECONDS on.
            _wait_for(lambda: _counted(persona) >= len(_attempts_seen(fake_gemini)), seconds=40)
    finally:
        fleet.stop()  # SIGTERM: each worker flushes what it still holds

    row = Row(
        fault=fault,
        outcomes=load.outcomes,
        reached=len(_attempts_seen(fake_gemini)),
        counted=_counted(persona),
    )
    _TABLE[fault] = row
    assert row.of("hung") == 0, row.markdown()
    # Before the fault every request is answered; how many are during and after it depends
    # on how fast a loaded machine answers versus refuses, so the table shows it (a share
    # asserted here failed under CPU load: refusals are quicker than answers).
    before = [o for o in row.outcomes if o.ended < load.fault_at]
    assert before and all(o.kind == "answered" for o in before), row.markdown()
    assert [r for r in fake_gemini.requests[seen:] if r.secret == spent] == []
    if fault == "worker SIGKILLed and restarted":
        # Only what the killed worker was doing at the kill may be missing: its requests in
        # flight (their clients were cut) and, on the embedded default, the counts it had not
        # flushed yet.
        [kill] = killed_at
        # Generous: a loaded machine flushes late, and the bound is what matters.
        window = FLUSH_SECONDS * 6 if not PRODUCTION else 0.0
        at_risk = [
            o
            for o in row.outcomes
            if o.worker == 0 and o.started <= kill and o.ended >= kill - window
        ]
        assert row.of("cut") <= CLIENTS, row.markdown()
        assert 0 <= row.lost <= len(at_risk), row.markdown()
        if PRODUCTION:
            assert row.lost <= row.of("cut"), row.markdown()
    else:
        assert row.of("cut") == 0, row.markdown()
        assert row.lost == 0, row.markdown()


def _fault_action(
    fault: str, fleet: Fleet, persona: Persona, killed_at: list[float]
) -> Callable[[], None]:
    fake = fleet.fake_gemini

    def worker_killed() -> None:
        killed_at.append(time.monotonic())
        fleet.workers[0].kill()
        time.sleep(1)
        fleet.worker_restart(0)

    def redis_restarted() -> None:
        assert fleet.redis is not None
        fleet.redis.restart()

    def database_refusing() -> None:
        assert fleet.gate is not None
        fleet.gate.close()
        time.sleep(5)
        fleet.gate.open()

    def token_endpoint_hanging() -> None:
        fake.token_delay_seconds = 30  # type: ignore[attr-defined]
        time.sleep(4)
        fake.token_delay_seconds = 0  # type: ignore[attr-defined]

    def upstream_bursts() -> None:
        healthy = persona.upstream_keys[1:]
        for _ in range(4):
            for secret in healthy:
                fake.behave(secret, "server_error", status=500)  # type: ignore[attr-defined]
            time.sleep(0.5)
            for secret in healthy:
                fake.behave(secret, "ok")  # type: ignore[attr-defined]
            time.sleep(0.5)

    return {
        "worker SIGKILLed and restarted": worker_killed,
        "Redis restarted": redis_restarted,
        "PostgreSQL refuses connections 5 s": database_refusing,
        "OAuth token endpoint hangs": token_endpoint_hanging,
        "upstream answers 500s in bursts": upstream_bursts,
    }[fault]
