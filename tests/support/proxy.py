"""A tiny egress proxy for tests, on loopback only: HTTP forward, HTTP CONNECT and SOCKS5.

    with EgressProxy() as proxy:        # proxy.http_url, proxy.socks_url
        ...
        proxy.seen                      # ["POST http://127.0.0.1:.../v1beta/... <credential>"]

Every forwarded request is sent upstream with `Connection: close`, so each one is seen and
recorded, even when the client keeps its connection to the proxy alive.
"""

import asyncio
import contextlib
import struct
import threading
from types import TracebackType
from urllib.parse import urlsplit

_LOOPBACK = "127.0.0.1"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    await asyncio.gather(_pipe(client[0], upstream[1]), _pipe(upstream[0], client[1]))


class EgressProxy:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def http_url(self) -> str:
        return f"http://{_LOOPBACK}:{self.port}"

    @property
    def socks_url(self) -> str:
        return f"socks5://{_LOOPBACK}:{self.port}"

    def _record(self, line: str) -> None:
        with self._lock:
            self.seen.append(line)

    def start(self) -> "EgressProxy":
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, _LOOPBACK, 0), self._loop
        )
        self._server = started.result(timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> "EgressProxy":
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readexactly(1)
            if first == b"\x05":
                await self._socks(reader, writer)
            else:
                await self._http(first, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            writer.close()

    async def _socks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (methods,) = await reader.readexactly(1)
        await reader.readexactly(methods)
        writer.write(b"\x05\x00")  # no authentication
        _, command, _, address_type = await reader.readexactly(4)
        if address_type == 1:
            host = ".".join(str(b) for b in await reader.readexactly(4))
        elif address_type == 3:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        else:
            raise ValueError("IPv6 is not used in these tests")
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        if command != 1 or host not in (_LOOPBACK, "localhost"):
            writer.write(b"\x05\x02\x00\x01" + bytes(6))  # not allowed: loopback only
            writer.close()
            return
        upstream = await asyncio.open_connection(host, port)
        self._record(f"SOCKS {host}:{port}")
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await writer.drain()
        await _relay((reader, writer), upstream)

    async def _http(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = first + await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = await asyncio.open_connection(host, int(port))
            self._record(f"CONNECT {target}")
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _relay((reader, writer), upstream)
            return
        parts = urlsplit(target)
        if parts.hostname not in (_LOOPBACK, "localhost"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        credential = next(
            (
                line.split(":", 1)[1].strip()
                for line in header_lines
                if line.lower().startswith(("x-goog-api-key:", "authorization:"))
            ),
            "",
        )
        self._record(f"{method} {target} {credential}".rstrip())
        headers = [
            line
            for line in header_lines
            if line and not line.lower().startswith(("proxy-", "connection:", "keep-alive:"))
        ]
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        upstream = await asyncio.open_connection(parts.hostname, parts.port or 80)
        upstream[1].write(
            "\r\n".join(
                [f"{method} {path} {version}", *headers, "Connection: close", "", ""]
            ).encode("latin-1")
        )
        await upstream[1].drain()
        # The body follows the head on the client connection; the answer ends when upstream
        # closes (Connection: close), and then so does this client connection.
        client_to_upstream = asyncio.ensure_future(_pipe(reader, upstream[1]))
        await _pipe(upstream[0], writer)
        client_to_upstream.cancel()
