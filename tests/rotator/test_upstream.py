"""rotator.upstream: the clients every upstream call goes through."""

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rotator.upstream import _proxied_client, upstream_client, upstream_client_sync


class _CookieSetter(BaseHTTPRequestHandler):
    """Answers every request with a Set-Cookie (as a load balancer in front of an upstream
    may) and remembers the Cookie header each request came with."""

    seen: list[str | None] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("cookie"))
        self.send_response(200)
        self.send_header("Set-Cookie", "affinity=user-a-session; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def cookie_setter() -> Iterator[str]:
    _CookieSetter.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CookieSetter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1beta/models"
    finally:
        server.shutdown()
        server.server_close()


def test_an_upstream_cookie_never_rides_along_with_the_next_request(cookie_setter):
    """One client serves every user's credentials: a cookie an answer sets for one request
    must not be sent with the next, another user's. (httpx copied the refusing jar the clients
    were given into one with the default policy, and sent it back.)"""

    async def twice_async() -> None:
        client = upstream_client()
        for _ in range(2):
            (await client.get(cookie_setter)).raise_for_status()
        await client.aclose()

    asyncio.run(twice_async())
    sync = upstream_client_sync()
    for _ in range(2):
        sync.get(cookie_setter).raise_for_status()
    assert _CookieSetter.seen == [None] * 4
    assert not sync.cookies


def test_a_proxied_credentials_client_keeps_no_cookie_either(cookie_setter):
    async def twice() -> None:
        # The cookie setter stands in as the HTTP proxy too: a plain-HTTP request through a
        # proxy is sent to it whole, and it answers as the upstream would.
        client = _proxied_client(cookie_setter.rsplit("/v1beta", 1)[0])
        for _ in range(2):
            (await client.get(cookie_setter)).raise_for_status()
        await client.aclose()

    asyncio.run(twice())
    assert _CookieSetter.seen == [None, None]
