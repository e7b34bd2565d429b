"""The one upstream HTTP client: a shared httpx.AsyncClient per event loop, from one factory.

httpx stays the API; the transport is aiohttp's (httpx-aiohttp) because httpcore's pool
rescans every pooled connection on each request and slows down as concurrency grows, while
aiohttp's pool stays flat (measured: docs/performance.md, and the team's performance notes
kept outside this repository).
"""

import asyncio
from functools import lru_cache
from http.cookiejar import CookieJar, CookiePolicy

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import HttpxAiohttpClient

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

# What a failure to reach upstream looks like through either transport.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TransportError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
)


class _NoCookies(CookiePolicy):
    """Accepts no cookie and sends none."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: object, request: object) -> bool:
        return False

    def return_ok(self, cookie: object, request: object) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: object) -> bool:
        return False

    def path_return_ok(self, path: str, request: object) -> bool:
        return False


def upstream_timeout() -> httpx.Timeout:
    """The upstream timeouts, read from settings on every call: requests pass them explicitly,
    so a changed setting applies to the next request and not only to clients made after it."""
    return _timeout(
        settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS, settings.UPSTREAM_READ_TIMEOUT_SECONDS
    )


@lru_cache(maxsize=8)
def _timeout(connect_seconds: float, read_seconds: float) -> httpx.Timeout:
    return httpx.Timeout(
        connect=connect_seconds, read=read_seconds, write=connect_seconds, pool=connect_seconds
    )


def upstream_client() -> httpx.AsyncClient:
    """The process's client for the running loop (one per loop: connections belong to it)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = HttpxAiohttpClient(
            timeout=upstream_timeout(),
            # One client serves every user's credentials: a cookie set for one must never ride
            # along with another's request.
            cookies=httpx.Cookies(CookieJar(policy=_NoCookies())),
            # Many long streams at once are the normal case: do not queue them behind a
            # small pool (aiohttp's own default is 100).
            limits=httpx.Limits(max_connections=settings.UPSTREAM_MAX_CONNECTIONS),
            follow_redirects=False,
            trust_env=False,
        )
        _clients[loop] = client
    return client


_sync_client: list[httpx.Client] = []


def upstream_client_sync() -> httpx.Client:
    """The process's blocking client, for calls made from synchronous code (token refreshes
    on the ORM threads, credential checks from commands and the admin): same timeouts, no
    cookies, no redirects, no proxy from the environment. httpx.Client is thread-safe."""
    if not _sync_client:
        _sync_client.append(
            httpx.Client(
                timeout=upstream_timeout(),
                cookies=httpx.Cookies(CookieJar(policy=_NoCookies())),
                limits=httpx.Limits(max_connections=settings.UPSTREAM_MAX_CONNECTIONS),
                follow_redirects=False,
                trust_env=False,
            )
        )
    return _sync_client[0]


async def upstream_clients_close() -> None:
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()
