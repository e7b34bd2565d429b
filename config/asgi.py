"""ASGI entry point: `config.asgi:application`.

Two Django handlers behind one path router: the proxy routes run without middleware (every
Django middleware costs a thread hop per request under ASGI), everything else gets the full
browser chain. In front of both, a request body limit (size and time) applies to every route,
before Django reads a byte. The router also answers the ASGI lifespan, which Django does not,
to flush usage counters on a graceful stop.
"""

import asyncio
import contextlib
import contextvars
import gc
import io
import logging
import os
from collections.abc import Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.boot import encryption_key_problem, settings_load_or_exit

settings_load_or_exit(serving=True)

from asgiref.sync import ThreadSensitiveContext, sync_to_async  # noqa: E402
from django.core import signals  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.dispatch import Signal  # noqa: E402
from django.urls import set_script_prefix  # noqa: E402

from common.errors import PayloadTooLarge, RequestTimeout, RotatorError  # noqa: E402
from common.redact import SecretRedactFilter  # noqa: E402
from rotator.render import error_response  # noqa: E402

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

    @property
    def has_thread(self) -> bool:
        return self._pool is not None

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

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's `handle` for the proxy routes, without its per-request detours.

        What a user sees is Django's: the body is read whole before the view runs, the view
        runs in a task of its own beside a listener that cancels it when the client leaves,
        and request_started / request_finished fire around it. Three detours are gone, each
        measured on the warm path (docs/performance.md): the body goes to memory, not to a
        SpooledTemporaryFile (the body limit in front bounds it, and the view reads it whole
        anyway); and the two signals, and the response's close, run inline while the
        request has no thread, instead of through sync_to_async's machinery only to be run
        inline by _RequestThread all the same.
        """
        try:
            body = await _body_read(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await _signal_send(signals.request_started, sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, io.BytesIO(body))
        if request is None:
            await self.send_response(error_response, send)
            await _response_close(error_response)
            return

        async def process_request() -> Any:
            response = await self.run_get_response(request)
            # The client may leave while the answer is being sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        processing = asyncio.create_task(process_request())
        await asyncio.wait((listener, processing), return_when=asyncio.FIRST_COMPLETED)
        # The listener first: it cannot fail in a way that would keep the view running.
        for task in (listener, processing):
            if not task.done():
                task.cancel()  # the view sees the cancellation, as under Django's handler
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            elif not task.cancelled():
                with contextlib.suppress(RequestAborted):  # the client left
                    task.result()
        if processing.cancelled():
            await _signal_send(signals.request_finished, sender=self.__class__)
        else:
            await _response_close(processing.result())

    async def run_get_response(self, request: Any) -> Any:
        # From here until the response is sent (streams included), sync calls need a thread.
        _request_thread.get().in_view = True
        return await super().run_get_response(request)

    async def send_response(self, response: Any, send: Any) -> None:
        from django.conf import settings

        interval = float(settings.STREAM_KEEPALIVE_SECONDS)
        keepalive = getattr(response, "keepalive", None) if response.streaming else None
        pacer = None
        try:
            if keepalive is None or interval <= 0:
                await super().send_response(response, send)
                return
            pacer = _IdlePacer(send, keepalive=keepalive, interval=interval)
            await super().send_response(response, pacer.send)
        finally:
            if pacer is not None:
                pacer.stop()
            _request_thread.get().in_view = False


class _IdlePacer:
    """Sends a streamed answer's keep-alive whenever `interval` seconds pass without a byte
    to the client (proxies cut idle connections at 60-120 s), between the start of the
    answer and its last message.

    A timer per stream, not per read: it fires once an interval, finds the stream busy (a
    body message since) and sleeps on, or sends `keepalive()`'s bytes from a task of its
    own. Waiting on each upstream read with a timeout instead cost a task and an
    asyncio.wait per read, a few per cent of a streamed request (docs/performance.md).
    Keep-alives fall between whole messages (each ASGI send is written at once), and none
    follows the last one: `stop` comes first and cancels one not yet written.
    """

    def __init__(self, send: Any, *, keepalive: Any, interval: float) -> None:
        self._send = send
        self._keepalive = keepalive
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None

    async def send(self, message: Mapping[str, Any]) -> None:
        """The ASGI send of the answer: marks activity, starts and stops the timer."""
        if message["type"] == "http.response.body":
            if not message.get("more_body", False):
                self.stop()
            else:
                self._last = self._loop.time()
        await self._send(message)
        if message["type"] == "http.response.start":
            self._last = self._loop.time()
            self._timer = self._loop.call_at(self._last + self._interval, self._due)

    def _due(self) -> None:
        now = self._loop.time()
        quiet_until = self._last + self._interval
        if now < quiet_until:
            self._timer = self._loop.call_at(quiet_until, self._due)
            return
        if self._sending is None or self._sending.done():
            self._sending = self._loop.create_task(self._keepalive_send())
        self._last = now
        self._timer = self._loop.call_at(now + self._interval, self._due)

    async def _keepalive_send(self) -> None:
        data = self._keepalive()
        if data:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sending is not None and not self._sending.done():
            self._sending.cancel()


async def _body_read(receive: Any) -> bytes:
    """The request body, whole (Django's read_body, into memory): RequestAborted when the
    client leaves before it has sent it."""
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestAborted()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def _signal_send(signal: Signal, *, sender: type, **named: Any) -> None:
    """Sends a request signal. Sync receivers run inline while the request has no thread
    (exactly where _RequestThread would run them), in it once it has one; a signal with an
    async receiver goes through Django's own asend."""
    sync_receivers, async_receivers = signal._live_receivers(sender)
    if async_receivers or _request_thread.get().has_thread:
        await signal.asend(sender=sender, **named)
        return
    # What Signal.send does with sync receivers, without looking them up a second time.
    for receiver in sync_receivers:
        receiver(signal=signal, sender=sender, **named)


async def _response_close(response: Any) -> None:
    """Closes a sent response (which sends request_finished) where Django would: in the
    request's thread when it has one (its database connections live there), inline when it
    has none."""
    if _request_thread.get().has_thread:
        await sync_to_async(response.close)()
    else:
        response.close()


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
    from rotator.stored_responses import stored_responses_flush
    from rotator.upstream import upstream_clients_close
    from stats.usage import usage_flush_async

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # A server with the wrong key would answer 500 to every call and store new
            # secrets under it: it does not start (uvicorn logs the line and exits).
            problem = await asyncio.to_thread(encryption_key_problem)
            if problem is not None:
                await send({"type": "lifespan.startup.failed", "message": problem})
                return
            _collector_settle()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await usage_flush_async()
                await stored_responses_flush()
                await upstream_clients_close()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return


def request_body_limit_bytes(path: str) -> int:
    """The most bytes a request body to `path` may have: MAX_IMPORT_BYTES for the admin's
    bulk import (files of credentials), MAX_REQUEST_BYTES everywhere else."""
    from django.conf import settings

    if path == settings.IMPORT_PATH:
        return int(settings.MAX_IMPORT_BYTES)
    return int(settings.MAX_REQUEST_BYTES)


def _declared_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refusal_send(send: Any, *, path: str, exc: RotatorError) -> None:
    """Sends `exc` as a complete response in the route's dialect, closing the connection:
    the rest of the body is never read, so it cannot be reused."""
    response = error_response(
        exc, dialect="gemini_native" if path.startswith("/v1beta") else "openai_chat"
    )
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


async def _body_limited(app: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Runs `app` with the request body bounded in size and in time.

    Django's handler (and the proxy routes' own) reads the whole body before any view runs,
    so a view's own check comes too late: a declared Content-Length over the limit is refused
    with 413 before anything is read, a chunked body is cut off the moment it passes the
    limit, and a body that has not fully arrived REQUEST_BODY_TIMEOUT_SECONDS after the
    headers is refused with 408 (a client announcing 30 MB and sending nothing would hold the
    connection forever). Bounding the headers themselves is the reverse proxy's job: an ASGI
    application is only called once they are complete (docs/security.md).
    """
    from django.conf import settings

    path = scope["path"]
    limit = request_body_limit_bytes(path)

    def too_large() -> PayloadTooLarge:
        return PayloadTooLarge(f"Request body is larger than {limit} bytes.", code="too_large")

    declared = _declared_length(scope)
    if declared is not None and declared > limit:
        await _refusal_send(send, path=path, exc=too_large())
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + float(settings.REQUEST_BODY_TIMEOUT_SECONDS)
    received = 0
    body_complete = False
    refusal: RotatorError | None = None

    async def limited_receive() -> Any:
        nonlocal received, body_complete, refusal
        if body_complete:
            # After the body only http.disconnect comes, which Django awaits for as long as
            # a stream lasts: no deadline then.
            return await receive()
        try:
            # timeout_at, not wait_for: no task per message on the request path.
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            refusal = RequestTimeout(
                "The request body did not arrive in time.", code="request_timeout"
            )
            raise RequestAborted() from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                refusal = too_large()
                raise RequestAborted()
            body_complete = not message.get("more_body", False)
        return message

    await app(scope, limited_receive, send)
    # Django reads the whole body before it answers, and returns without answering when that
    # was aborted: nothing has been sent yet.
    if refusal is not None:
        await _refusal_send(send, path=path, exc=refusal)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    from django.conf import settings

    if scope["type"] != "http":
        await browser_application(scope, receive, send)
    elif scope["path"].startswith(settings.PROXY_PATH_PREFIXES):
        await _body_limited(proxy_application, scope, receive, send)
    else:
        await _body_limited(browser_application, scope, receive, send)
