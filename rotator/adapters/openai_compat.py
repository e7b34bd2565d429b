"""The one shortcut: OpenAI-dialect calls on a Gemini API key go to Google's own
OpenAI-compatible endpoint untranslated (measured as the fastest path, docs/performance.md).

Its answers are already in the client's dialect, so it brings its own stream encoder; the
loop, classification, marks and counting are the pipeline's, as for every other adapter.
"""

from collections.abc import Callable
from typing import Any

import orjson
from django.conf import settings

from rotator.adapters.base import Answer, Failure, StreamStart, UpstreamCall
from rotator.adapters.http import in_band_error_check, json_call, stream_open
from rotator.classify import Outcome, Verdict, success_body_classify
from rotator.context import RequestContext
from rotator.pool import CredentialView
from rotator.signatures import openai_signatures_fit
from rotator.usage_counts import openai_usage

BACKEND = "gemini_api"
SSE_DONE = b"[DONE]"


def _decoder(credential: CredentialView) -> Callable[[bytes], tuple[bytes, Any]]:
    """A decoder for the OpenAI endpoint's stream: (payload, its JSON); an error object in a
    200 stream is classified like an HTTP error (InBandError)."""

    def decode(payload: bytes) -> tuple[bytes, Any]:
        if payload == SSE_DONE:
            return payload, None
        document = orjson.loads(payload)
        in_band_error_check(document, payload, credential)
        return payload, document

    return decode


def _decoder_after_content(credential: CredentialView) -> Callable[[bytes], tuple[bytes, Any]]:
    """The decoder once the stream is the client's: its bytes are relayed as they came, so an
    event is parsed only when it may be Google's error object or carry the usage Rotator
    counts, or does not look like one JSON object (parsed then, to fail as a malformed event
    would). Inside JSON strings quotes are escaped: those two keys' byte strings cannot occur
    in the text of an answer, and a false match only costs the parse."""
    decode = _decoder(credential)

    def decode_after_content(payload: bytes) -> tuple[bytes, Any]:
        if (
            b'"error"' in payload
            or b'"usage"' in payload
            or payload[:1] != b"{"
            or payload[-1:] != b"}"
        ):
            return decode(payload)
        return payload, None

    return decode_after_content


def _event_usage(event: tuple[bytes, Any]) -> tuple[int, int, int] | None:
    return openai_usage(event[1])


class OpenAiPassthroughEncoder:
    """Re-frames Google's OpenAI SSE for the client. Rotator always asks upstream for the usage
    chunk (the counters need it); it is hidden from clients that did not ask for it."""

    content_type = "text/event-stream"

    def __init__(self, *, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self._done = False

    def feed(self, event: tuple[bytes, Any]) -> bytes:
        payload, document = event
        if payload == SSE_DONE:
            # Held for finish(): the relay counts the attempt before the stream's last bytes,
            # and a client that read [DONE] may ask for its usage (or the process be killed)
            # at once.
            self._done = True
            return b""
        if (
            not self.client_wants_usage
            and isinstance(document, dict)
            and document.get("usage")
            and not document.get("choices")
        ):
            return b""
        return b"data: " + payload + b"\n\n"

    def finish(self) -> bytes:
        return b"data: [DONE]\n\n" if self._done else b""

    def failure(self, error: Any) -> bytes:
        body = {
            "error": {
                "message": error.message,
                "type": error.openai_type,
                "param": None,
                "code": error.google_status,
            }
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def keepalive(self) -> bytes:
        return b": keep-alive\n\n"


class OpenAiCompatAdapter:
    backend = BACKEND

    async def send(
        self, ctx: RequestContext, credential: CredentialView, call: UpstreamCall
    ) -> Failure | Answer | StreamStart:
        assert call.openai_path is not None
        headers = {
            "authorization": f"Bearer {credential.secret()}",
            "content-type": "application/json",
        }
        url = f"{settings.OPENAI_UPSTREAM_URL}/{call.openai_path}"
        content = call.openai_body
        if call.openai_document is not None and b'"tool_calls"' in content:
            # Gemini 3 refuses a history whose calls lost their signatures (clients drop
            # extra_content and rewrite ids): put them back, or the skip value.
            fitted = await openai_signatures_fit(call.openai_document, model=call.model)
            if fitted is not call.openai_document:
                content = orjson.dumps(fitted)
        if call.stream:
            start = await stream_open(
                ctx,
                credential,
                url=url,
                headers=headers,
                content=content,
                decode=_decoder(credential),
                decode_after_content=_decoder_after_content(credential),
                usage_of=_event_usage,
                backend=BACKEND,
            )
            if isinstance(start, StreamStart):
                start.encoder = OpenAiPassthroughEncoder(client_wants_usage=call.client_wants_usage)
            return start
        result = await json_call(ctx, credential, url=url, headers=headers, content=content)
        if isinstance(result, Failure):
            return result
        try:
            document = orjson.loads(result)
        except orjson.JSONDecodeError:
            return Failure(Verdict(Outcome.TRANSIENT, message="upstream sent malformed JSON"), 200)
        if call.openai_path == "chat/completions":
            verdict = (
                success_body_classify(body=document)
                if isinstance(document, dict)
                else Verdict(Outcome.OK)
            )
            if verdict.outcome is not Outcome.OK:
                return Failure(verdict, 200)
        return Answer(
            document=None, usage=openai_usage(document), client_body=result, backend=BACKEND
        )


adapter = OpenAiCompatAdapter()
