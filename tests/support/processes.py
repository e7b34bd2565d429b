"""Rotator, Redis and a TCP gate as real processes and sockets, for tests that need more than
the in-process live server: several workers, a Redis to kill, a database to cut off."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.db import connection

from tests.conftest import _free_port

__all__ = ["RedisServer", "Rotator", "TcpGate", "database_url", "free_port"]

free_port = _free_port


def database_url(*, host: str | None = None, port: int | None = None) -> str:
    """The URL of the test database, as a server process takes it in DATABASE_URL; `host` and
    `port` reroute a PostgreSQL connection (through a TcpGate)."""
    database = settings.DATABASES["default"]
    if connection.vendor == "postgresql":
        user = database["USER"] or "postgres"
        host = host or database["HOST"] or "127.0.0.1"
        port = port or int(database["PORT"] or 5432)
        return f"postgres://{user}@{host}:{port}/{database['NAME']}"
    return f"sqlite:///{database['NAME']}"


class Rotator:
    """One `uvicorn config.asgi:application` process on the test database and the fake.

    `env` overrides the environment; a value of None removes the variable (REDIS_URL=None runs
    on the database state backend).
    """

    def __init__(
        self,
        fake_gemini,
        *,
        env: Mapping[str, str | None] = (),
        stderr: Any = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "SECRET_KEY": settings.SECRET_KEY,
            "STATE_KEY_PREFIX": settings.STATE_KEY_PREFIX,
            "GEMINI_UPSTREAM_URL": fake_gemini.gemini_url,
            "OPENAI_UPSTREAM_URL": fake_gemini.openai_url,
            "CODE_ASSIST_UPSTREAM_URL": fake_gemini.code_assist_url,
            "OAUTH_TOKEN_URL": fake_gemini.oauth_token_url,
            "USAGE_FLUSH_SECONDS": "0.5",
            "LOG_LEVEL": "WARNING",
            # A deployment names its hosts and sits behind HTTPS; these talk plain HTTP on
            # loopback (tests/config/test_deploy.py runs one the way a deployment does).
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "HTTPS": "false",
        }
        if settings.REDIS_URL:
            environment["REDIS_URL"] = settings.REDIS_URL
        else:
            environment.pop("REDIS_URL", None)
        for name, value in dict(env).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        command = [
            sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
            "--port", str(self.port), "--lifespan", "on", "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, env=environment, cwd=settings.BASE_DIR, stderr=stderr
        )

    def wait_answering(self, *, healthy: bool = True, timeout_seconds: float = 30) -> None:
        """Waits until /healthz answers (200 when `healthy`, any status otherwise)."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rotator on {self.port} exited with {self.process.returncode}")
            try:
                status = httpx.get(f"{self.url}/healthz", timeout=2).status_code
            except httpx.HTTPError:
                status = None
            if status is not None and (status == 200 or not healthy):
                return
            time.sleep(0.1)
        raise RuntimeError(f"rotator on {self.port} did not answer /healthz")

    def kill(self) -> None:
        """Kills outright (SIGKILL): no shutdown, no flush, as the OOM killer does."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> int:
        """Stops gracefully (SIGTERM: the lifespan shutdown flushes usage); returns the exit
        code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


class RedisServer:
    """A private redis-server on a port of its own. Without `data_dir` it keeps nothing:
    killing it loses everything, as a restart of a cache-only Redis does. With one it keeps an
    append-only file there, as compose.yaml's Redis does, and `restart()` finds it again."""

    def __init__(self, *, data_dir: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = data_dir
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--daemonize", "no",
        ]  # fmt: skip
        if self.data_dir is None:
            command += ["--appendonly", "no"]
        else:
            command += ["--appendonly", "yes", "--dir", str(self.data_dir)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_accepts(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        """Stops as an operator's restart does (SIGTERM: Redis writes what it keeps), then
        starts again on the same port."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None
        self.start()


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class TcpGate:
    """A TCP forwarder to `target_port` on a port of its own. Closed, it hangs up on every
    connection at once (a database that is not up yet, or gone: `close()` also cuts the
    connections it relays); open, it relays bytes both ways."""

    def __init__(self, *, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.is_open = False
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-gate", daemon=True)
        self._relayed: set[asyncio.StreamWriter] = set()

    def start(self) -> "TcpGate":
        self._thread.start()
        self._ready.wait(10)
        return self

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        """Refuses new connections and cuts every relayed one, as a database that went down."""
        self.is_open = False

        def cut() -> None:
            for writer in list(self._relayed):
                writer.transport.abort()
            self._relayed.clear()

        self._loop.call_soon_threadsafe(cut)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            # Relays still running end with the loop, their sockets closed.
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_open:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return

        self._relayed.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()
                self._relayed.discard(sink)

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
