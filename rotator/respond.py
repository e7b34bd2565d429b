"""Turning the loop's result into the client's HTTP response: a JSON body, or a stream relayed
event by event through the dialect's encoder, counted and logged when it ends."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

from common import clock
from common.errors import RotatorError, UpstreamError, UpstreamUnreachable
from common.events import usage_settled
from rotator import pool
from rotator.adapters.base import Answer, StreamEncoder, StreamStart
from rotator.adapters.http import STREAM_ERRORS, InBandError, transport_verdict
from rotator.context import RequestContext, request_log
from rotator.counting import attempt_count
from rotator.signatures import call_ids_assign, signatures_remember

logger = logging.getLogger("rotator.request")


def json_response(ctx: RequestContext, answer: Answer, body: bytes) -> HttpResponse:
    """A whole answer: counted as a success on the credential that served it, logged."""
    ctx.usage = answer.usage
    ctx.status = 200
    attempt_count(ctx, ctx.credential, success=True, usage=answer.usage)
    response = HttpResponse(body, content_type="application/json")
    request_log(ctx)
    return response


class _DocumentFeed:
    """Hands a codec's encoder the pivot document of each (payload, document) event."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.content_type = encoder.content_type

    def feed(self, event: tuple[bytes, Any]) -> bytes:
        data: bytes = self.encoder.feed(event[1])
        return data

    def finish(self) -> bytes:
        data: bytes = self.encoder.finish()
        return data

    def failure(self, error: Any) -> bytes:
        data: bytes = self.encoder.failure(error)
        return data

    def keepalive(self) -> bytes:
        data: bytes = self.encoder.keepalive()
        return data


def stream_response(
    ctx: RequestContext, start: StreamStart, *, relay: StreamEncoder, ids_prefix: str | None
) -> StreamingHttpResponse:
    """A held stream as the client's streaming response (see `stream_relay`)."""
    return _streaming(stream_relay(ctx, start, relay=relay, ids_prefix=ids_prefix), relay)


def stream_response_early(
    ctx: RequestContext,
    pending: "asyncio.Future[Answer | StreamStart]",
    *,
    encoder: Any,
    relay_for: Callable[[StreamStart], tuple[StreamEncoder, str | None]],
) -> StreamingHttpResponse:
    """The streaming response of a request whose loop is still waiting for content after
    STREAM_KEEPALIVE_SECONDS (a model thinking for minutes): keep-alives go out until it
    ends, then the stream, or its failure as the dialect's error event (the 200 is sent)."""

    async def body() -> AsyncIterator[bytes]:
        try:
            # The response writer sends the keep-alives meanwhile (config.asgi._IdlePacer).
            await asyncio.wait({pending})
            try:
                start = pending.result()
            except RotatorError as exc:
                ctx.status = exc.status
                request_log(ctx)
                await usage_settled()
                yield encoder.failure(exc)
                return
            except Exception:
                logger.exception("stream failed before its first byte (%s)", ctx.request_id)
                ctx.status = 500
                request_log(ctx)
                yield encoder.failure(RotatorError("Internal error.", code="internal"))
                return
            assert isinstance(start, StreamStart)
            relay, ids_prefix = relay_for(start)
            async for chunk in stream_relay(ctx, start, relay=relay, ids_prefix=ids_prefix):
                yield chunk
        finally:
            if not pending.done():
                pending.cancel()

    return _streaming(body(), encoder)


class KeptAliveStream(StreamingHttpResponse):
    """A streamed answer with its dialect's keep-alive (bytes the client's parser skips)."""

    keepalive: Callable[[], bytes]


def _streaming(body: AsyncIterator[bytes], relay: Any) -> StreamingHttpResponse:
    """The streaming response of `body`. It carries the dialect's keep-alive, which the
    response writer sends whenever STREAM_KEEPALIVE_SECONDS pass without a byte to the client
    (config.asgi._IdlePacer: a timer per stream, not a timeout per upstream read)."""
    response = KeptAliveStream(body, content_type=relay.content_type)
    response.keepalive = relay.keepalive
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def relay_of(encoder: Any, *, pivot: bool) -> StreamEncoder:
    """What the relay feeds: a codec's encoder takes pivot documents, the shortcut's events."""
    relay: StreamEncoder = _DocumentFeed(encoder) if pivot else encoder
    return relay


async def stream_relay(
    ctx: RequestContext, start: StreamStart, *, relay: StreamEncoder, ids_prefix: str | None
) -> AsyncIterator[bytes]:
    """Relays a held stream: one client write per upstream read, a keep-alive while upstream
    is idle; an upstream failure after the first byte ends the stream with the dialect's error
    event and is reported to the pool; the attempt is counted (success, cut or cancelled by
    the client) and logged when it ends."""
    credential = ctx.credential
    assert credential is not None
    usage: list[tuple[int, int, int] | None] = [None]
    signed: list[tuple[str, str]] = []

    def relay_batch(batch: list[Any]) -> bytes:
        # Usage is a running total (Gemini repeats it in every chunk, OpenAI sends it once,
        # near the end): the last event of a batch that carries it says all, so it is read
        # from the end.
        for event in reversed(batch):
            found = start.usage_of(event)
            if found is not None:
                usage[0] = found
                break
        out = []
        for event in batch:
            if ids_prefix is not None:
                signed.extend(call_ids_assign(event[1], prefix=ids_prefix))
            out.append(relay.feed(event))
        return b"".join(out)

    async def signatures_kept() -> None:
        # Before the bytes that carry the calls leave: the client's next turn may come at once.
        if signed:
            await signatures_remember(signed, backend=start.backend)
            signed.clear()

    counted = False

    async def counted_now(outcome: str) -> None:
        # Before the stream's last bytes: what the client saw end is counted, even if this
        # process is killed right after (usage_settled).
        nonlocal counted
        counted = True
        ctx.usage = usage[0]
        # 499: the client closed the connection (nginx's convention).
        ctx.status = {"ok": 200, "cut": 502}.get(outcome, 499)
        attempt_count(ctx, credential, success=outcome == "ok", usage=ctx.usage)
        if outcome != "cancelled":
            await usage_settled()

    batches = start.batches
    try:
        head = relay_batch(start.head)
        await signatures_kept()
        if head:
            yield head
        while True:
            try:
                batch = await anext(batches)
            except StopAsyncIteration:
                break
            except InBandError as exc:
                await pool.credential_report(
                    credential=credential,
                    model=ctx.model,
                    verdict=exc.verdict,
                    status=exc.status,
                    now=clock.now(),
                )
                await counted_now("cut")
                yield relay.failure(
                    UpstreamError(
                        exc.verdict.message or "Upstream failed during the stream.",
                        status=exc.status,
                        google_status=exc.verdict.status or "UNAVAILABLE",
                    )
                )
                return
            chunk = relay_batch(batch)
            await signatures_kept()
            if chunk:
                yield chunk
        tail = relay.finish()
        await counted_now("ok")
        if tail:
            yield tail
    except STREAM_ERRORS as exc:
        await pool.credential_report(
            credential=credential,
            model=ctx.model,
            verdict=transport_verdict(exc, credential),
            status=None,
            now=clock.now(),
        )
        if not counted:
            await counted_now("cut")
        yield relay.failure(
            UpstreamUnreachable(
                "The upstream stream was interrupted before it finished.",
                code="upstream_interrupted",
            )
        )
    finally:
        await batches.aclose()
        await start.response.aclose()
        if not counted:
            await counted_now("cancelled")
        request_log(ctx)
