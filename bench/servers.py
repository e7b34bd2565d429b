"""The processes a benchmark run starts: the fake upstream, Rotator (two profiles), the
reference forwarder and, when installed, LiteLLM's proxy. Each is pinned to one core.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
UVICORN_FLAGS = [
    "--workers", "1", "--no-access-log", "--log-level", "warning",
    "--loop", "uvloop", "--http", "httptools",
]  # fmt: skip
# The core the servers under test run on; the load generator and the fake share the other.
SERVER_CORE = "1"
LOAD_CORE = "0"
DIRECT_KEY = "AIzaBenchDirect" + "x" * 24
REFERENCE_KEY = "AIzaBenchReference" + "x" * 21
LITELLM_KEYS = [f"AIzaBenchLiteLLM{i:04d}" + "x" * 19 for i in range(3)]
LITELLM_MASTER_KEY = "sk-bench-litellm-master-key-0123456789abcdef"
CHAT_PATH = "/v1/chat/completions"
ROTATOR_KEY = "rk-bench-" + "k" * 32
# A second user whose pool holds only OAuth accounts: its requests take the translated path
# (OpenAI or another dialect → Gemini → Code Assist).
ROTATOR_OAUTH_KEY = "rk-bench-oauth-" + "o" * 32
OAUTH_CREDENTIALS = 5


def upstream_secret(index: int) -> str:
    """The bench pool's Gemini API keys (the fake accepts any well-formed key)."""
    return f"AIzaBenchPool{index:04d}" + "x" * 22


def oauth_refresh_token(index: int) -> str:
    """The bench OAuth pool's refresh tokens (registered with the fake by `fake_oauth_add`)."""
    return f"1//0bench-oauth-{index:04d}-" + "r" * 30


def oauth_project(index: int) -> str:
    return f"bench-project-{index:04d}"


@dataclass
class Target:
    """One forwarder under test and how to reach it."""

    name: str
    label: str
    url: str  # full chat completions URL
    authorization: str
    # The Authorization value of the OAuth-only pool; "" for a target that has none.
    oauth_authorization: str = ""
    process: subprocess.Popen | None = None
    # Secrets this target sends upstream (to steer the fake's long streams for them).
    upstream_secrets: list[str] = field(default_factory=list)
    is_rotator: bool = False

    @property
    def origin(self) -> str:
        """Scheme, host and port: other routes are reached from here."""
        return self.url.removesuffix(CHAT_PATH)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


def port_free() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if shutil.which("taskset") else command


def process_start(
    *, command: list[str], env: dict[str, str], core: str, log: Path, cwd: Path = ROOT
) -> subprocess.Popen:
    """Starts a process pinned to `core`, output to `log`, in its own process group."""
    handle = log.open("wb")
    return subprocess.Popen(
        _pinned(core, command),
        env=env,
        cwd=cwd,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def process_stop(process: subprocess.Popen | None) -> None:
    """SIGTERM (graceful: lifespan shutdown), then SIGKILL after 10 s; only our own child."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def port_wait(*, port: int, process: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early ({process.returncode}); see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {seconds:.0f} s; see {log}")


def chat_body(*, model: str = "gemini-2.5-flash", stream: bool = False) -> bytes:
    if stream:
        return (
            b'{"model":"' + model.encode() + b'","stream":true,'
            b'"messages":[{"role":"user","content":"Say hello"}]}'
        )
    return b'{"model":"' + model.encode() + b'","messages":[{"role":"user","content":"Say hello"}]}'


def target_check(target: Target) -> httpx.Response:
    """One request through the target; raises unless it answers 200."""
    response = httpx.post(
        target.url,
        content=chat_body(),
        headers={"authorization": target.authorization, "content-type": "application/json"},
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"{target.name} answered {response.status_code}: {response.text[:300]}")
    return response


# ------------------------------------------------------------------------------ the fake


def fake_start(*, workdir: Path) -> tuple[subprocess.Popen, str]:
    """The fake Gemini upstream in fast mode (no added latency, 20-chunk streams)."""
    port = port_free()
    log = workdir / "fake.log"
    command = [
        sys.executable, "-m", "tests.fake_gemini", "--host", "127.0.0.1", "--port", str(port),
        "--no-record", "--stream-chunks", "20", "--chunk-delay", "0",
    ]  # fmt: skip
    process = process_start(command=command, env=dict(os.environ), core=LOAD_CORE, log=log)
    port_wait(port=port, process=process, seconds=20, log=log)
    return process, f"http://127.0.0.1:{port}"


def fake_behave(fake_url: str, **payload: object) -> None:
    httpx.post(f"{fake_url}/_fake/behave", json=payload, timeout=10).raise_for_status()


def fake_oauth_add(fake_url: str, *, count: int = OAUTH_CREDENTIALS) -> None:
    """Registers the bench OAuth accounts (onboarded, with a project) with the fake."""
    for index in range(count):
        httpx.post(
            f"{fake_url}/_fake/oauth_account",
            json={
                "refresh_token": oauth_refresh_token(index),
                "email": f"bench{index}@example.com",
                "project_id": oauth_project(index),
            },
            timeout=10,
        ).raise_for_status()


def fake_reset(fake_url: str) -> None:
    httpx.post(f"{fake_url}/_fake/reset", timeout=10).raise_for_status()


def direct_target(*, fake_process: subprocess.Popen, fake_url: str) -> Target:
    return Target(
        name="direct",
        label="direct to the fake (the limit)",
        url=f"{fake_url}/v1beta/openai/chat/completions",
        authorization=f"Bearer {DIRECT_KEY}",
        process=fake_process,
        upstream_secrets=[DIRECT_KEY],
    )


# ------------------------------------------------------------------------------ Rotator


def _rotator_env(*, fake_url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "ROTATOR_VAR_DIR", "STATE_KEY_PREFIX")
    }
    env.update(
        {
            "SECRET_KEY": "bench-secret-key-not-for-production-0123456789",
            "LOG_LEVEL": "WARNING",
            # Loopback over plain HTTP: the production profile otherwise insists on both.
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "HTTPS": "false",
            "GEMINI_UPSTREAM_URL": f"{fake_url}/v1beta",
            "OPENAI_UPSTREAM_URL": f"{fake_url}/v1beta/openai",
            "CODE_ASSIST_UPSTREAM_URL": f"{fake_url}/v1internal",
            "OAUTH_TOKEN_URL": f"{fake_url}/token",
            **extra,
        }
    )
    return env


def postgres_database_recreate(*, url: str) -> None:
    """Drops and creates the database named in `url` (a fresh pool and counters per run)."""
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def redis_keys_drop(*, url: str, prefix: str) -> int:
    """Deletes every key of a run (its prefix, and the compare and selection prefixes built
    on it). A run leaves an hour of usage-write markers behind otherwise, 100,000 and more,
    and every SCAN on that Redis (the test suite's among them) walks them all."""
    import redis

    client = redis.Redis.from_url(url)
    dropped = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            dropped += client.delete(*batch)
            batch.clear()
    if batch:
        dropped += client.delete(*batch)
    return dropped


def rotator_prepare(*, env: dict[str, str], workdir: Path, name: str, credentials: int) -> None:
    """Migrates the target's database and creates the bench user, key and pool."""
    log = workdir / f"{name}-setup.log"
    pool_setup = [
        sys.executable, "-m", "bench.pool_setup", "--credentials", str(credentials),
        "--oauth-credentials", str(OAUTH_CREDENTIALS),
    ]  # fmt: skip
    with log.open("wb") as handle:
        for command in ([sys.executable, "manage.py", "migrate", "--verbosity", "0"], pool_setup):
            done = subprocess.run(command, env=env, cwd=ROOT, stdout=handle, stderr=handle)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed; see {log}")


def rotator_start(
    *,
    name: str,
    label: str,
    env: dict[str, str],
    workdir: Path,
    credentials: int,
    source: Path = ROOT,
) -> Target:
    port = port_free()
    log = workdir / f"{name}.log"
    command = [
        sys.executable, "-m", "uvicorn", "config.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS,
    ]  # fmt: skip
    process = process_start(command=command, env=env, core=SERVER_CORE, log=log, cwd=source)
    port_wait(port=port, process=process, seconds=30, log=log)
    return Target(
        name=name,
        label=label,
        url=f"http://127.0.0.1:{port}{CHAT_PATH}",
        authorization=f"Bearer {ROTATOR_KEY}",
        oauth_authorization=f"Bearer {ROTATOR_OAUTH_KEY}",
        process=process,
        upstream_secrets=[upstream_secret(i) for i in range(credentials)],
        is_rotator=True,
    )


def rotator_production(
    *, fake_url: str, workdir: Path, database_url: str, redis_url: str, prefix: str
) -> Target:
    """Rotator on PostgreSQL + Redis, 5 API-key credentials, one uvicorn worker."""
    env = _rotator_env(
        fake_url=fake_url,
        extra={"DATABASE_URL": database_url, "REDIS_URL": redis_url, "STATE_KEY_PREFIX": prefix},
    )
    postgres_database_recreate(url=database_url)
    rotator_prepare(env=env, workdir=workdir, name="production", credentials=5)
    return rotator_start(
        name="production",
        label="Rotator, production (PostgreSQL + Redis)",
        env=env,
        workdir=workdir,
        credentials=5,
    )


def rotator_compare(
    *, source: Path, fake_url: str, workdir: Path, database_url: str, redis_url: str, prefix: str
) -> Target:
    """Rotator's production profile running another checkout (`--compare`), on the same
    database (already prepared) and its own Redis namespace: before/after in one run."""
    env = _rotator_env(
        fake_url=fake_url,
        extra={"DATABASE_URL": database_url, "REDIS_URL": redis_url, "STATE_KEY_PREFIX": prefix},
    )
    return rotator_start(
        name="compare",
        label=f"Rotator, production, code from {source}",
        env=env,
        workdir=workdir,
        credentials=5,
        source=source,
    )


def rotator_embedded(*, fake_url: str, workdir: Path) -> Target:
    """Rotator on its embedded default: SQLite in a temporary var dir, no Redis."""
    var_dir = workdir / "embedded-var"
    var_dir.mkdir()
    env = _rotator_env(fake_url=fake_url, extra={"ROTATOR_VAR_DIR": str(var_dir)})
    rotator_prepare(env=env, workdir=workdir, name="embedded", credentials=5)
    return rotator_start(
        name="embedded",
        label="Rotator, embedded (SQLite, no Redis)",
        env=env,
        workdir=workdir,
        credentials=5,
    )


# ---------------------------------------------------------------------------- reference


def reference_start(*, fake_url: str, workdir: Path) -> Target:
    """The thinnest Django async forwarder (bench/reference), same uvicorn command."""
    port = port_free()
    log = workdir / "reference.log"
    env = {
        **os.environ,
        "OPENAI_UPSTREAM_URL": f"{fake_url}/v1beta/openai",
        "REFERENCE_UPSTREAM_KEY": REFERENCE_KEY,
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [
        sys.executable, "-m", "uvicorn", "bench.reference.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS,
    ]  # fmt: skip
    process = process_start(command=command, env=env, core=SERVER_CORE, log=log)
    port_wait(port=port, process=process, seconds=30, log=log)
    return Target(
        name="reference",
        label="reference: bare Django async view + httpx-aiohttp",
        url=f"http://127.0.0.1:{port}{CHAT_PATH}",
        authorization="Bearer unused",
        process=process,
        upstream_secrets=[REFERENCE_KEY],
    )


# ------------------------------------------------------------------------------ LiteLLM


def litellm_start(*, venv: Path, fake_url: str, workdir: Path) -> Target:
    """LiteLLM's proxy from its own virtualenv: 3 deployments per model, no database."""
    executable = venv / "bin" / "litellm"
    if not executable.exists():
        raise FileNotFoundError(f"{executable} is missing")
    deployments = "\n".join(
        f"  - model_name: {model}\n"
        f"    litellm_params:\n"
        f"      model: openai/{model}\n"
        f'      api_base: "{fake_url}/v1beta/openai"\n'
        f'      api_key: "{key}"'
        for model in ("gemini-2.5-flash", "gemini-2.5-flash-lite")
        for key in LITELLM_KEYS
    )
    config = workdir / "litellm.yaml"
    config.write_text(
        f"model_list:\n{deployments}\n"
        "litellm_settings:\n  telemetry: false\n"
        f"general_settings:\n  master_key: {LITELLM_MASTER_KEY}\n"
    )
    port = port_free()
    log = workdir / "litellm.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO")}
    env.update({"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "PYTHONUNBUFFERED": "1"})
    command = [
        str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
        "--num_workers", "1",
    ]  # fmt: skip
    process = process_start(command=command, env=env, core=SERVER_CORE, log=log)
    port_wait(port=port, process=process, seconds=120, log=log)
    return Target(
        name="litellm",
        label="LiteLLM proxy (3 deployments, no DB)",
        url=f"http://127.0.0.1:{port}{CHAT_PATH}",
        authorization=f"Bearer {LITELLM_MASTER_KEY}",
        process=process,
        upstream_secrets=list(LITELLM_KEYS),
    )


# ------------------------------------------------------------------------- measurements


def _group_pids(pid: int) -> list[int]:
    """The process and everything it started (each target runs in its own session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pid:  # process group id
            pids.append(int(entry.name))
    return pids or [pid]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a target's processes (all threads), in seconds."""
    total = 0
    for member in _group_pids(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def process_rss_bytes(pid: int) -> int:
    """Resident memory of a target's processes, summed."""
    total = 0
    for member in _group_pids(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total
