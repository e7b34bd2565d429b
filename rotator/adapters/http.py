"""HTTP mechanics shared by the adapters: one JSON call, and a stream held until it has
produced content (so an empty or failed stream is retried elsewhere, unseen by the client)."""

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from functools import lru_cache
from typing import Any

import httpx
import orjson

from rotator.adapters.base import Failure, StreamStart
from rotator.classify import (
    Outcome,
    Verdict,
    stream_event_classify,
    transport_error_verdict,
    upstream_answer_classify,
)
from rotator.context import RequestContext
from rotator.pool import CredentialView
from rotator.upstream import (
    TRANSPORT_ERRORS,
    upstream_client_for,
    upstream_proxy_secrets,
    upstream_timeout,
)

# What can end an upstream stream early: the connection, or bytes that are not events.
STREAM_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, orjson.JSONDecodeError)


class InBandError(Exception):
    """An error object Google sent inside a 200 stream; carries the classifier's verdict."""

    def __init__(self, verdict: Verdict, status: int) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict
        self.status = status


# A decoder turns one SSE data payload into an event; raises InBandError for Google's
# in-band error object and orjson.JSONDecodeError for bytes that are not JSON.
Decoder = Callable[[bytes], Any]


@lru_cache(maxsize=1024)
def upstream_url(text: str) -> httpx.URL:
    """The parsed form of an upstream URL (a few per model and route): httpx parses a URL
    string on every request, which measured at 15-30 µs, as much as the rest of building it."""
    return httpx.URL(text)


def answer_classify(status: int, body: bytes, credential: CredentialView) -> Verdict:
    """The verdict for a non-2xx upstream answer, redacted with the credential's secret."""
    return upstream_answer_classify(
        status=status, body=body, secrets=(credential.secret(),), api_key=not credential.is_oauth
    )


def transport_verdict(exc: BaseException, credential: CredentialView) -> Verdict:
    description = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return transport_error_verdict(
        description=description,
        secrets=(credential.secret(), *upstream_proxy_secrets(credential)),
    )


def in_band_error_check(document: Any, payload: bytes, credential: CredentialView) -> None:
    """Raises InBandError when a stream event is Google's error object rather than an answer."""
    if isinstance(document, dict) and "error" in document and "candidates" not in document:
        error = document["error"]
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        raise InBandError(answer_classify(status, payload, credential), status)


async def json_call(
    ctx: RequestContext,
    credential: CredentialView,
    *,
    url: str,
    headers: dict[str, str],
    content: bytes | None,
    method: str = "POST",
) -> Failure | bytes:
    """Returns the body of a 200 answer, or the Failure of anything else."""
    started = time.perf_counter()
    try:
        response = await upstream_client_for(credential).request(
            method, upstream_url(url), headers=headers, content=content, timeout=upstream_timeout()
        )
        body = response.content
    except TRANSPORT_ERRORS as exc:
        return Failure(transport_verdict(exc, credential), None)
    finally:
        ctx.upstream_seconds += time.perf_counter() - started
    if response.status_code != 200:
        return Failure(
            answer_classify(response.status_code, body, credential), response.status_code, body
        )
    return body


async def stream_open(
    ctx: RequestContext,
    credential: CredentialView,
    *,
    url: str,
    headers: dict[str, str],
    content: bytes,
    decode: Decoder,
    usage_of: Callable[[Any], tuple[int, int, int] | None],
    backend: str,
    decode_after_content: Decoder | None = None,
) -> Failure | StreamStart:
    """Opens an SSE stream and reads it up to the first event with content (the classifier
    decides, as it does for whole answers). Returns the held stream, or the Failure of an
    error status, a transport error, an in-band error or a stream that ended with nothing.

    Events are decoded by `decode` until the first content, by `decode_after_content` (when
    given, else `decode`) after it: what a relay needs of an event once the stream is the
    client's may be less than what the classifier needs before."""
    started = time.perf_counter()
    client = upstream_client_for(credential)
    request = client.build_request(
        "POST", upstream_url(url), headers=headers, content=content, timeout=upstream_timeout()
    )
    response: httpx.Response | None = None
    try:
        response = await client.send(request, stream=True)
        if response.status_code != 200:
            body = await response.aread()
            await response.aclose()
            return Failure(
                answer_classify(response.status_code, body, credential), response.status_code, body
            )
        payloads = sse_payload_batches(response.aiter_bytes())
        head: list[Any] = []
        pending: list[Any] | None = None
        decode_rest = decode_after_content or decode
        async for raw in payloads:
            for index, payload in enumerate(raw):
                event = decode(payload)
                head.append(event)
                if stream_event_classify(event).outcome is Outcome.OK:
                    pending = [decode_rest(later) for later in raw[index + 1 :]]
                    break
            if pending is not None:
                break
        if pending is None:
            await response.aclose()
            return Failure(
                Verdict(Outcome.EMPTY, message="empty answer: the stream ended without content"),
                200,
            )
    except InBandError as exc:
        if response is not None:
            await response.aclose()
        return Failure(exc.verdict, exc.status)
    except TRANSPORT_ERRORS as exc:
        if response is not None:
            await response.aclose()
        return Failure(transport_verdict(exc, credential), None)
    except orjson.JSONDecodeError:
        if response is not None:
            await response.aclose()
        return Failure(Verdict(Outcome.TRANSIENT, message="upstream sent malformed events"), 200)
    finally:
        ctx.upstream_seconds += time.perf_counter() - started
    return StreamStart(
        response=response,
        batches=_decoded_after(pending, payloads, decode_rest),
        head=head,
        usage_of=usage_of,
        backend=backend,
    )


async def _decoded_after(
    first: list[Any], rest: AsyncIterator[list[bytes]], decode: Decoder
) -> AsyncGenerator[list[Any], None]:
    """`first` (decoded already), then each batch of `rest` decoded."""
    if first:
        yield first
    async for batch in rest:
        yield [decode(payload) for payload in batch]


async def sse_payload_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Yields, for each upstream read, the data payloads of the events it completed.

    Events that arrive together leave together: the relay writes them to the client in one
    piece instead of one write per event (a fast upstream sends a whole 20-event answer in
    one or two reads), and no event ever waits for a later one. A raw JSON tail after the last
    event (how Google sometimes appends an error) is yielded as a payload of its own.
    """
    pending = b""
    async for chunk in chunks:
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        pending += chunk
        end = pending.rfind(b"\n\n")
        if end < 0:
            continue
        region, pending = pending[:end], pending[end + 2 :]
        events = region.split(b"\n\n")
        if region.count(b"\n") == 2 * (len(events) - 1) and all(
            event.startswith(b"data:") for event in events
        ):
            # The common read: no newline but the blank lines that end events, and every
            # event a data line (twenty a stream): the payloads at once, no split per event.
            batch = [event[5:].lstrip(b" ") for event in events]
        else:
            batch = _sse_payloads_of(events)
        if batch:
            yield batch
    tail = pending.strip()
    if tail.startswith(b"data:"):
        yield [tail[5:].lstrip(b" ")]
    elif tail.startswith(b"{"):
        yield [tail]


def _sse_payloads_of(events: list[bytes]) -> list[bytes]:
    """The data payloads of SSE events in general: several data lines joined, comments,
    other fields and empty events skipped."""
    batch = []
    for event in events:
        data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if data:
            batch.append(b"\n".join(data))
    return batch
