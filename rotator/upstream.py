"""The one upstream HTTP client: a shared httpx.AsyncClient per event loop, from one factory.

httpx stays the API; the transport is aiohttp's (httpx-aiohttp) because httpcore's pool
rescans every pooled connection on each request and slows down as concurrency grows, while
aiohttp's pool stays flat (measured: docs/performance.md, and the team's performance notes
kept outside this repository).
"""

import asyncio
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import HttpxAiohttpClient

from accounts.models import Credential
from accounts.secrets import decrypt
from rotator.models import PoolState

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

# What a failure to reach upstream looks like through either transport.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TransportError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
)


class _CookiesRefused(httpx.Cookies):
    """The jar of every upstream client: always empty. One client serves every user's
    credentials, so a cookie set by an answer for one must never ride along with another's
    request. Set-Cookie is not even read (httpx would build urllib's request and response
    objects for it on every answer), so nothing ever enters the jar and no policy is needed."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


_COOKIES_REFUSED = _CookiesRefused()


class _Cookieless:
    """Mixed into httpx's clients: their jar is _COOKIES_REFUSED whatever they are given.
    (httpx copies a `cookies=` jar's cookies into a jar of its own, with the default policy:
    passing a refusing jar at construction kept every cookie.)"""

    @property
    def cookies(self) -> httpx.Cookies:
        return _COOKIES_REFUSED

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise AttributeError("Upstream clients keep no cookies.")


class _UpstreamClient(_Cookieless, HttpxAiohttpClient):
    """The shared client: aiohttp's transport behind httpx's API, no cookies."""


class _ProxiedClient(_Cookieless, httpx.AsyncClient):
    """A proxied credential's client: httpx's own transport (SOCKS5 too), no cookies."""


class _SyncClient(_Cookieless, httpx.Client):
    """The synchronous client of checks and token refreshes, no cookies."""


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
        client = _UpstreamClient(
            timeout=upstream_timeout(),
            # Many long streams at once are the normal case: do not queue them behind a
            # small pool (aiohttp's own default is 100).
            limits=httpx.Limits(max_connections=settings.UPSTREAM_MAX_CONNECTIONS),
            follow_redirects=False,
            trust_env=False,
        )
        _clients[loop] = client
    return client


_sync_client: list[httpx.Client] = []

# Clients for credentials with their own egress proxy, one per distinct proxy URL (per loop
# for the async ones), least recently used first; UPSTREAM_PROXY_CLIENTS_MAX bounds each.
_proxied: "OrderedDict[tuple[asyncio.AbstractEventLoop, str], httpx.AsyncClient]" = OrderedDict()
_proxied_sync: "OrderedDict[str, httpx.Client]" = OrderedDict()
_proxied_lock = threading.Lock()


class HasProxy(Protocol):
    @property
    def proxy_url_encrypted(self) -> str: ...


def proxy_effective(*, own: str, pool: str) -> str:
    """The one rule for which proxy a credential's calls take (both encrypted): its own, else
    its pool's, else none ("")."""
    return own or pool


def _proxy_url(credential: HasProxy) -> str:
    encrypted = credential.proxy_url_encrypted
    if not encrypted and isinstance(credential, Credential):
        # A row read for a check or a token refresh; pool snapshots (CredentialView) carry the
        # effective proxy already, so the request path never queries here.
        pool = PoolState.objects.filter(user_id=credential.user_id).values_list(
            "proxy_url_encrypted", flat=True
        )
        encrypted = proxy_effective(own=encrypted, pool=pool.first() or "")
    return decrypt(encrypted) if encrypted else ""


def upstream_proxy_secrets(credential: HasProxy) -> tuple[str, ...]:
    """What of a credential's proxy must be redacted from errors and logs: the URL and its
    password (a transport error may name either); () without a proxy."""
    proxy_url = _proxy_url(credential)
    if not proxy_url:
        return ()
    password = urlsplit(proxy_url).password
    return (proxy_url, password) if password else (proxy_url,)


def _proxied_client(proxy_url: str) -> httpx.AsyncClient:
    """httpx's own transport, not aiohttp's: it speaks SOCKS5 (socksio) as well as HTTP
    proxies, and the few proxied credentials never need the big shared pool's speed."""
    return _ProxiedClient(
        proxy=proxy_url,
        timeout=upstream_timeout(),
        limits=httpx.Limits(max_connections=settings.UPSTREAM_PROXY_MAX_CONNECTIONS),
        follow_redirects=False,
        trust_env=False,
    )


def upstream_client_for(credential: HasProxy) -> httpx.AsyncClient:
    """The client for one credential's upstream calls: the shared one, or for a credential
    with an egress proxy the pooled client of that proxy (made on first use, reused by every
    credential naming the same URL; beyond UPSTREAM_PROXY_CLIENTS_MAX the least recently
    used is closed)."""
    proxy_url = _proxy_url(credential)
    if not proxy_url:
        return upstream_client()
    loop = asyncio.get_running_loop()
    key = (loop, proxy_url)
    client = _proxied.get(key)
    if client is None or client.is_closed:
        client = _proxied[key] = _proxied_client(proxy_url)
    _proxied.move_to_end(key)
    while len(_proxied) > settings.UPSTREAM_PROXY_CLIENTS_MAX:
        _, evicted = _proxied.popitem(last=False)
        # Closed later, not now: a request or stream may still be using it. Between bytes no
        # upstream answer waits longer than the read timeout.
        loop.call_later(
            settings.UPSTREAM_READ_TIMEOUT_SECONDS,
            lambda closing=evicted: loop.create_task(closing.aclose()),  # type: ignore[misc]
        )
    return client


def upstream_client_sync_for(credential: HasProxy) -> httpx.Client:
    """upstream_client_sync for one credential: through its egress proxy when it names one
    (a pooled client per distinct proxy URL, bounded like upstream_client_for)."""
    proxy_url = _proxy_url(credential)
    if not proxy_url:
        return upstream_client_sync()
    with _proxied_lock:
        client = _proxied_sync.get(proxy_url)
        if client is None:
            client = _proxied_sync[proxy_url] = _SyncClient(
                proxy=proxy_url,
                timeout=upstream_timeout(),
                limits=httpx.Limits(max_connections=settings.UPSTREAM_PROXY_MAX_CONNECTIONS),
                follow_redirects=False,
                trust_env=False,
            )
        _proxied_sync.move_to_end(proxy_url)
        while len(_proxied_sync) > settings.UPSTREAM_PROXY_CLIENTS_MAX:
            _, evicted = _proxied_sync.popitem(last=False)
            evicted.close()
    return client


def upstream_client_sync() -> httpx.Client:
    """The process's blocking client, for calls made from synchronous code (token refreshes
    on the ORM threads, credential checks from commands and the admin): same timeouts, no
    cookies, no redirects, no proxy from the environment. httpx.Client is thread-safe."""
    if not _sync_client:
        _sync_client.append(
            _SyncClient(
                timeout=upstream_timeout(),
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
    for key in [key for key in _proxied if key[0] is loop]:
        await _proxied.pop(key).aclose()


def upstream_proxied_clients() -> list[str]:
    """The proxy URLs that have a pooled client in this process (tests, diagnostics)."""
    return sorted({url for _, url in _proxied} | set(_proxied_sync))


def upstream_proxied_forget() -> None:
    """Drops this process's proxied clients (tests; the blocking ones are closed, the async
    ones belong to their loops and close with them)."""
    with _proxied_lock:
        for client in _proxied_sync.values():
            client.close()
        _proxied_sync.clear()
    _proxied.clear()
