"""Turning the loop's result into the client's HTTP response: a JSON body, or a stream relayed
event by event through the dialect's encoder, counted and logged when it ends."""

from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse

from common import clock
from common.errors import UpstreamError, UpstreamUnreachable
from rotator import pool
from rotator.adapters.base import Answer, StreamEncoder, StreamStart
from rotator.adapters.http import STREAM_ERRORS, InBandError, transport_verdict
from rotator.context import RequestContext, request_log
from rotator.counting import attempt_count


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
    ctx: RequestContext, start: StreamStart, *, encoder: Any, pivot: bool
) -> StreamingHttpResponse:
    """Relays a held stream: one client write per upstream read; an upstream failure after the
    first byte ends the stream with the dialect's error event and is reported to the pool; the
    attempt is counted (success, cut or cancelled by the client) and logged when it ends."""
    credential = ctx.credential
    assert credential is not None
    relay: StreamEncoder = _DocumentFeed(encoder) if pivot else encoder
    usage: list[tuple[int, int, int] | None] = [None]

    def relay_batch(batch: list[Any]) -> bytes:
        out = []
        for event in batch:
            found = start.usage_of(event)
            if found is not None:
                usage[0] = found
            out.append(relay.feed(event))
        return b"".join(out)

    async def body() -> AsyncIterator[bytes]:
        outcome = "cancelled"
        try:
            head = relay_batch(start.head)
            if head:
                yield head
            while True:
                try:
                    batch = await anext(start.batches)
                except StopAsyncIteration:
                    break
                except InBandError as exc:
                    outcome = "cut"
                    await pool.credential_report(
                        credential=credential,
                        model=ctx.model,
                        verdict=exc.verdict,
                        status=exc.status,
                        now=clock.now(),
                    )
                    yield relay.failure(
                        UpstreamError(
                            exc.verdict.message or "Upstream failed during the stream.",
                            status=exc.status,
                            google_status=exc.verdict.status or "UNAVAILABLE",
                        )
                    )
                    return
                chunk = relay_batch(batch)
                if chunk:
                    yield chunk
            tail = relay.finish()
            if tail:
                yield tail
            outcome = "ok"
        except STREAM_ERRORS as exc:
            outcome = "cut"
            await pool.credential_report(
                credential=credential,
                model=ctx.model,
                verdict=transport_verdict(exc, credential),
                status=None,
                now=clock.now(),
            )
            yield relay.failure(
                UpstreamUnreachable(
                    "The upstream stream was interrupted before it finished.",
                    code="upstream_interrupted",
                )
            )
        finally:
            await start.response.aclose()
            ctx.usage = usage[0]
            # 499: the client closed the connection (nginx's convention).
            ctx.status = {"ok": 200, "cut": 502}.get(outcome, 499)
            attempt_count(ctx, credential, success=outcome == "ok", usage=ctx.usage)
            request_log(ctx)

    response = StreamingHttpResponse(body(), content_type=relay.content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
