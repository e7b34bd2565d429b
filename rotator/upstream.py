"""The one upstream HTTP client: a shared httpx.AsyncClient per event loop, from one factory.

httpx stays the API; the transport is aiohttp's (httpx-aiohttp) because httpcore's pool
rescans every pooled connection on each request and slows down as concurrency grows, while
aiohttp's pool stays flat (measured: docs/performance.md, ../shared/docs/performance-notes.md).
"""

import asyncio

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


def upstream_client() -> httpx.AsyncClient:
    """The process's client for the running loop (one per loop: connections belong to it)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = HttpxAiohttpClient(
            timeout=httpx.Timeout(
                connect=settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS,
                read=settings.UPSTREAM_READ_TIMEOUT_SECONDS,
                write=settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS,
                pool=settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS,
            ),
            # Many long streams at once are the normal case: do not queue them behind a
            # small pool (aiohttp's own default is 100).
            limits=httpx.Limits(max_connections=settings.UPSTREAM_MAX_CONNECTIONS),
            follow_redirects=False,
            trust_env=False,
        )
        _clients[loop] = client
    return client


async def upstream_clients_close() -> None:
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()
