"""Gemini API keys (AI Studio) on Google's native API: the pivot goes as it is."""

from typing import Any

import orjson
from django.conf import settings

from rotator.adapters.base import Answer, Failure, StreamStart, UpstreamCall
from rotator.adapters.http import in_band_error_check, json_call, stream_open
from rotator.classify import Outcome, Verdict, success_body_classify
from rotator.context import RequestContext
from rotator.pool import CredentialView
from rotator.signatures import signatures_fit
from rotator.usage_counts import gemini_usage

BACKEND = "gemini_api"
GENERATE_METHODS = frozenset({"generateContent", "streamGenerateContent"})


def _url(model: str, method: str, *, sse: bool = False) -> str:
    suffix = "?alt=sse" if sse else ""
    return f"{settings.GEMINI_UPSTREAM_URL}/models/{model}:{method}{suffix}"


def pivot_answer(method: str, body: bytes) -> Failure | Answer:
    """The Answer for a native 200 body (unwrapped), or the Failure of one that has no content
    or is not JSON; only generate methods can be empty."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Failure(Verdict(Outcome.TRANSIENT, message="upstream sent malformed JSON"), 200)
    if isinstance(document, dict) and "response" in document and "candidates" not in document:
        document = document["response"]  # Code Assist's envelope
    if not isinstance(document, dict):
        return Failure(Verdict(Outcome.TRANSIENT, message="upstream sent malformed JSON"), 200)
    if method in GENERATE_METHODS:
        verdict = success_body_classify(body=document)
        if verdict.outcome is not Outcome.OK:
            return Failure(verdict, 200)
    return Answer(document=document, usage=gemini_usage(document))


def pivot_event(credential: CredentialView) -> Any:
    """A decoder for native stream payloads: (payload, the unwrapped response)."""

    def decode(payload: bytes) -> tuple[bytes, Any]:
        document = orjson.loads(payload)
        if isinstance(document, dict) and "response" in document:
            document = document["response"]
        in_band_error_check(document, payload, credential)
        return payload, document

    return decode


def pivot_event_usage(event: tuple[bytes, Any]) -> tuple[int, int, int] | None:
    return gemini_usage(event[1])


class GeminiApiKeyAdapter:
    backend = BACKEND

    async def send(
        self, ctx: RequestContext, credential: CredentialView, call: UpstreamCall
    ) -> Failure | Answer | StreamStart:
        headers = {"x-goog-api-key": credential.secret(), "content-type": "application/json"}
        body = call.pivot_body()
        if call.method in GENERATE_METHODS:
            body = signatures_fit(body, backend=BACKEND, model=call.model)
        content = orjson.dumps(body)
        if call.stream:
            return await stream_open(
                ctx,
                credential,
                url=_url(call.model, call.method, sse=True),
                headers=headers,
                content=content,
                decode=pivot_event(credential),
                usage_of=pivot_event_usage,
                backend=BACKEND,
            )
        result = await json_call(
            ctx, credential, url=_url(call.model, call.method), headers=headers, content=content
        )
        if isinstance(result, Failure):
            return result
        return pivot_answer(call.method, result)


adapter = GeminiApiKeyAdapter()
