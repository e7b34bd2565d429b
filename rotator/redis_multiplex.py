"""One Redis connection per event loop for the request path's own commands (the pick and the
usage write), shared by every request in flight: a command is written the moment it is asked
and its reply is matched in order, since Redis answers a connection's commands in the order
it read them.

Why not redis-py's asyncio client here: per command it takes a pooled connection (a condition
and a timeout scope), runs its retry wrapper and packs and parses in Python, about 6% of a
warm request's CPU for each of the two commands a request sends (docs/performance.md). Here a
command is packed by hiredis, the commands asked in one loop iteration leave in one write,
and replies are parsed by hiredis in the connection's reader task. redis-py's client still
serves everything else (installs, marks, versions, the breaker).

Behaviour kept from that client: the same exception classes (redis-py's ConnectionError,
TimeoutError, ResponseError, NoScriptError); a command whose connection broke is sent once
more on a new connection, so a command whose reply was lost may run twice (the callers allow
for it: a pick advances the cursor once more, a usage write carries a marker); no timeout on
a reply.
"""

import asyncio
import ssl
from collections import deque
from typing import Any

import hiredis
from redis.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# A connection is given this long to open, unless the URL's socket_connect_timeout says.
CONNECT_TIMEOUT_SECONDS = 5.0
# Past this many bytes waiting in the socket's buffer, a caller waits for them to drain.
_WRITE_BUFFER_HIGH = 1 << 20


def _pack(command: tuple[str | bytes | int | float, ...]) -> bytes:
    # hiredis's stub types the command as a tuple of one element.
    packed: bytes = hiredis.pack_command(command)  # type: ignore[arg-type]
    return packed


def _reply_error(error: hiredis.ReplyError) -> ResponseError:
    message = str(error)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class _Connection:
    """One open connection: callers' futures in the order their commands were written."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._outgoing: list[bytes] = []
        self.broken = False
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._read_replies())

    def send(self, packed: bytes) -> "asyncio.Future[Any]":
        """Queues one packed command for this loop iteration's write; the future gets its
        reply. Commands asked in the same iteration (requests whose answers arrived
        together) leave in one write: one system call instead of one each."""
        if self.broken:
            raise RedisConnectionError("Redis connection lost.")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiting.append(future)
        if not self._outgoing:
            self._loop.call_soon(self._write)
        self._outgoing.append(packed)
        return future

    def _write(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self.broken:
            return  # their futures have failed with the connection
        try:
            self._writer.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))
        except (OSError, RuntimeError):
            # The transport went (uvloop raises on a closed one): closing it ends the reader,
            # which fails every waiting future with a ConnectionError.
            self._writer.close()

    async def drained(self) -> None:
        transport = self._writer.transport
        if transport.get_write_buffer_size() > _WRITE_BUFFER_HIGH:
            try:
                await self._writer.drain()
            except OSError as exc:  # the connection went while the buffer drained
                raise RedisConnectionError(f"Redis connection lost: {type(exc).__name__}") from exc

    async def _read_replies(self) -> None:
        failure: BaseException = RedisConnectionError("Redis closed the connection.")
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                self._parser.feed(data)
                while (reply := self._parser.gets()) is not False:
                    future = self._waiting.popleft()
                    if future.done():  # its caller was cancelled: the reply is nobody's
                        continue
                    if isinstance(reply, hiredis.ReplyError):
                        future.set_exception(_reply_error(reply))
                    else:
                        future.set_result(reply)
        except (OSError, hiredis.ProtocolError) as exc:
            failure = RedisConnectionError(f"Redis connection lost: {type(exc).__name__}")
        except asyncio.CancelledError:
            failure = RedisConnectionError("Redis connection closed.")
            raise
        finally:
            self.broken = True
            while self._waiting:
                future = self._waiting.popleft()
                if not future.done():
                    future.set_exception(failure)
            self._writer.close()

    def close(self) -> None:
        self._task.cancel()


class MultiplexedRedis:
    """Commands over one shared connection per event loop (see the module's docstring)."""

    def __init__(self, url: str) -> None:
        params = parse_url(url)  # type: ignore[no-untyped-call]
        self._host = str(params.get("host") or "localhost")
        self._port = int(params.get("port") or 6379)
        self._path: str | None = params.get("path")
        self._db = int(params.get("db") or 0)
        self._username: str | None = params.get("username")
        self._password: str | None = params.get("password")
        self._connect_timeout = float(
            params.get("socket_connect_timeout") or CONNECT_TIMEOUT_SECONDS
        )
        self._ssl: ssl.SSLContext | None = None
        if params.get("connection_class") is SSLConnection:
            self._ssl = ssl.create_default_context()
            if params.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._connections: dict[asyncio.AbstractEventLoop, _Connection] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Task[_Connection]] = {}

    async def execute(self, *args: str | bytes | int | float) -> Any:
        """Sends one command and returns its reply (bytes, int, list or None)."""
        packed = _pack(args)
        for attempt in range(2):
            connection = await self._connection()
            try:
                future = connection.send(packed)
                await connection.drained()
                return await future
            except RedisConnectionError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is not None and not connection.broken:
            return connection
        opening = self._opening.get(loop)
        if opening is None:
            # Loops that ended (tests run one per asyncio.run) leave nothing behind.
            for ended in [other for other in self._connections if other.is_closed()]:
                del self._connections[ended]
            opening = self._opening[loop] = loop.create_task(self._open())
        try:
            # Shielded: a caller that is cancelled must not cancel the others' connection.
            connection = await asyncio.shield(opening)
        finally:
            if opening.done() and self._opening.get(loop) is opening:
                del self._opening[loop]
        self._connections[loop] = connection
        return connection

    async def _open(self) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path:
                    reader, writer = await asyncio.open_unix_connection(self._path)
                else:
                    reader, writer = await asyncio.open_connection(
                        self._host, self._port, ssl=self._ssl
                    )
        except TimeoutError as exc:
            raise RedisTimeoutError("Timed out connecting to Redis.") from exc
        except OSError as exc:
            raise RedisConnectionError(f"Cannot connect to Redis: {type(exc).__name__}") from exc
        connection = _Connection(reader, writer)
        greetings = []
        if self._password is not None:
            credentials = (self._username, self._password) if self._username else (self._password,)
            greetings.append(connection.send(_pack(("AUTH", *credentials))))
        if self._db:
            greetings.append(connection.send(_pack(("SELECT", self._db))))
        try:
            for greeting in greetings:
                await greeting
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        """Closes this process's connections (each loop's reader task ends with it)."""
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
