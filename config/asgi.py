"""ASGI entry point: `config.asgi:application`.

Two Django handlers behind one path router: the proxy routes run without middleware (every
Django middleware costs a thread hop per request under ASGI), everything else gets the full
browser chain. The router also answers the ASGI lifespan, which Django does not, to flush
usage counters on a graceful stop.
"""

import contextvars
import gc
import logging
import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.boot import settings_load_or_exit

settings_load_or_exit()

from asgiref.sync import ThreadSensitiveContext  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

from common.redact import SecretRedactFilter  # noqa: E402

browser_application = get_asgi_application()

# uvicorn's access log (on unless --no-access-log) prints every request line with its query
# string, where Google's clients put `?key=`: mask credentials there as everywhere else.
logging.getLogger("uvicorn.access").addFilter(SecretRedactFilter())


class _RequestThread(Executor):
    """One request's thread for its synchronous calls (the ORM), started on first use.

    Django gives every request a thread of its own for sync calls (asgiref's per-request
    ThreadSensitiveContext): a thread started, and another started to join it, per request,
    just to send the request_started and request_finished signals when the warm proxy path
    makes no other sync call (cached key, Redis state, buffered counters). That was a third
    of a request's CPU (docs/performance.md). Outside the view those signals run inline
    while the request has no thread: their receivers only close the calling thread's
    database connections, and a thread that did no ORM work has none, nor has the loop's.
    Inside the view, and for everything once a request has its thread, calls go to that
    thread exactly as under Django's handler.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self.in_view = False

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._pool is None:
            if not self.in_view:
                future: Future[Any] = Future()
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # delivered to the awaiting caller
                    future.set_exception(exc)
                return future
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


_request_thread: contextvars.ContextVar[_RequestThread] = contextvars.ContextVar("request_thread")


class ProxyASGIHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain and a thread only when needed."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # _get_response_async is BaseHandler's own (absent from the type stubs).
        get_response = self._get_response_async  # type: ignore[attr-defined]
        self._middleware_chain = convert_exception_to_response(get_response)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        executor = _RequestThread()
        token = _request_thread.set(executor)
        try:
            # Tasks created inside (the usage flusher) inherit this context; they must not
            # make thread-sensitive calls after it ends, and do not (they use their own pool).
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            _request_thread.reset(token)
            # Never join on the event loop: the idle worker, if any, ends on its own.
            executor.shutdown(wait=False)

    async def run_get_response(self, request: Any) -> Any:
        # From here until the response is sent (streams included), sync calls need a thread.
        _request_thread.get().in_view = True
        return await super().run_get_response(request)

    async def send_response(self, response: Any, send: Any) -> None:
        try:
            await super().send_response(response, send)
        finally:
            _request_thread.get().in_view = False


proxy_application = ProxyASGIHandler()


def _collector_settle() -> None:
    """Moves what lives as long as the process (Django, the apps, the URLconf and the views
    it imports) out of the cyclic garbage collector's reach.

    Holding a thousand streams, a full collection walked every object in the process and
    paused the event loop for 100-180 ms (docs/performance.md): the slowest first chunks
    were waiting for it. Frozen objects are never collected, and these never would be.
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018  (imports the views now, not on a first request)
    gc.collect()
    gc.freeze()


async def _lifespan(receive: Any, send: Any) -> None:
    from rotator.upstream import upstream_clients_close
    from stats.usage import usage_flush_async

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _collector_settle()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await usage_flush_async()
                await upstream_clients_close()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    from django.conf import settings

    if scope["type"] == "http" and scope["path"].startswith(settings.PROXY_PATH_PREFIXES):
        await proxy_application(scope, receive, send)
    else:
        await browser_application(scope, receive, send)
