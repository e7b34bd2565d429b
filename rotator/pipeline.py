"""The one request loop: pick a credential, send the call through the adapter of its kind,
report what came back, retry elsewhere while nothing has reached the client, count.

The loop knows no dialect and no credential kind: codecs (rotator/codecs) turn the client's
request into an UpstreamCall and the answer back; adapters (rotator/adapters) reach Google.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from common import clock
from common.errors import (
    BadRequest,
    NoCredentialAvailable,
    NotFound,
    PoolEmpty,
    RotatorError,
    UpstreamError,
    UpstreamUnreachable,
)
from rotator import catalog, pool
from rotator.adapters import code_assist, gemini_api_key, openai_compat
from rotator.adapters.base import (
    Adapter,
    Answer,
    Failure,
    StreamEncoder,
    StreamStart,
    UpstreamCall,
)
from rotator.classify import Outcome
from rotator.codecs.base import CodecError, PivotRequest, ReplyMeta
from rotator.context import RequestContext
from rotator.counting import attempt_count
from rotator.pool import CredentialView
from rotator.respond import json_response, relay_of, stream_response, stream_response_early
from rotator.signatures import (
    call_ids_assign,
    call_ids_prefix,
    signatures_remember,
    signatures_restore,
)

logger = logging.getLogger("rotator.request")

API_KEY = "gemini_api_key"
API_KEY_ONLY_METHODS = frozenset({"embedContent", "batchEmbedContents"})


def adapter_for(credential: CredentialView, call: UpstreamCall) -> Adapter:
    """The adapter that sends `call` on `credential`. The OpenAI-compatible shortcut is taken
    here and only here: an OpenAI-dialect call on an API key goes untranslated."""
    if credential.is_oauth:
        return code_assist.adapter
    if call.openai_path is not None:
        return openai_compat.adapter
    return gemini_api_key.adapter


async def forward(
    ctx: RequestContext, *, call: UpstreamCall, api_key_only: bool = False
) -> Answer | StreamStart:
    """Tries up to MAX_ATTEMPTS distinct credentials. Returns the first success; raises the
    final error (upstream's own for client errors; 429/502/503 when nothing is left). Every
    failed attempt is reported to the pool (which alone marks) and counted."""
    excluded: list[int] = []
    if api_key_only:
        other, remaining = await pool.credentials_of_other_kinds(
            key=ctx.key, kinds=frozenset({API_KEY})
        )
        if other and not remaining:
            attempt_count(ctx, None, success=False)
            raise BadRequest(
                "This operation needs a Gemini API key credential: Code Assist (Gemini CLI "
                "OAuth accounts) does not serve it, and this pool has no API key.",
                code="no_api_key_credential",
            )
        excluded.extend(other)
    failures: list[Failure] = []
    for number in range(settings.MAX_ATTEMPTS):
        try:
            credential = await pool.credential_pick(
                key=ctx.key,
                model=call.model,
                excluded=tuple(excluded),
                first_attempt=number == 0,
                now=clock.now(),
                method=call.method,
                requested=ctx.requested_model or None,
                aliases_version=ctx.aliases_version_unconfirmed,
            )
        except NoCredentialAvailable as exc:
            attempt_count(ctx, None, success=False, rate_limited=True)
            if failures and failures[-1].verdict.outcome in (
                Outcome.TRANSIENT,
                Outcome.EMPTY,
                Outcome.MODEL_NOT_FOUND,
            ):
                raise await _final_error(
                    ctx, model=call.model, failures=failures, method=call.method
                ) from exc
            raise
        except (PoolEmpty, NotFound) as exc:
            attempt_count(ctx, None, success=False)
            if isinstance(exc, NotFound) and failures:
                # Upstream's own 404 for this request says it best.
                raise await _final_error(
                    ctx, model=call.model, failures=failures, method=call.method
                ) from exc
            raise
        ctx.aliases_version_unconfirmed = None  # the pick confirmed it
        excluded.append(credential.id)
        ctx.attempts += 1
        ctx.credential = credential
        result = await adapter_for(credential, call).send(ctx, credential, call)
        if not isinstance(result, Failure):
            return result
        listed = None
        if result.verdict.outcome is Outcome.MODEL_NOT_FOUND:
            # A 404 marks for long only when the credential's own model list agrees.
            listed = await catalog.model_serves(
                credential=credential, model=call.model, method=call.method
            )
        await pool.credential_report(
            credential=credential,
            model=call.model,
            verdict=result.verdict,
            status=result.status,
            now=clock.now(),
            method=call.method,
            model_listed=listed,
        )
        attempt_count(ctx, credential, success=False, verdict=result.verdict)
        if not result.verdict.retry_elsewhere:
            raise _passthrough(result)
        failures.append(result)
        logger.debug(
            "attempt %d on %s failed: %s", number + 1, credential.display_name, result.verdict
        )
    raise await _final_error(ctx, model=call.model, failures=failures, method=call.method)


async def _final_error(
    ctx: RequestContext, *, model: str, failures: list[Failure], method: str = "generateContent"
) -> RotatorError:
    """The one error a client sees after MAX_ATTEMPTS failed attempts: the truth about why."""
    last = failures[-1]
    if any(f.verdict.outcome in (Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED) for f in failures):
        return NoCredentialAvailable(
            f"{ctx.attempts} credentials were tried for {model} and were rate-limited or "
            f"exhausted: {last.verdict.message}",
            code="credentials_exhausted",
            retry_after_seconds=await pool.retry_after_for(
                key=ctx.key, model=model, now=clock.now(), method=method
            ),
        )
    if last.verdict.outcome is Outcome.MODEL_NOT_FOUND:
        return _passthrough(last)
    if last.verdict.outcome in (Outcome.INVALID, Outcome.SUSPENDED):
        return PoolEmpty(
            f"Upstream refused {ctx.attempts} credential(s) as invalid (now marked so): "
            f"{last.verdict.message}",
            code="credentials_invalid",
        )
    detail = last.verdict.message or "no answer"
    return UpstreamUnreachable(
        f"Upstream failed on {ctx.attempts} attempt(s); last: {detail}",
        code="upstream_unreachable",
    )


def _passthrough(failure: Failure) -> UpstreamError:
    message = failure.verdict.message or f"Upstream answered {failure.status}."
    return UpstreamError(
        message,
        status=failure.status or 502,
        google_status=failure.verdict.status,
        body=failure.body,
    )


# ------------------------------------------------------------------------------ operations


def _pivot_of(codec: ModuleType, body: Mapping[str, Any]) -> Callable[[], PivotRequest]:
    """The codec's pivot for `body`, translated once, on first use (the API-key shortcut may
    never need it). A body the codec refuses is the client's 400."""
    built: list[PivotRequest] = []

    def pivot() -> PivotRequest:
        if not built:
            try:
                built.append(codec.request_to_pivot(body))
            except CodecError as exc:
                raise BadRequest(exc.message, param=exc.param, code="invalid_request") from None
        return built[0]

    return pivot


async def generate(
    ctx: RequestContext,
    *,
    codec: ModuleType,
    body: Mapping[str, Any],
    model: str,
    stream: bool,
    state: Mapping[str, Any] | None = None,
    openai_path: str | None = None,
    openai_document: dict[str, Any] | None = None,
    client_wants_usage: bool = False,
    client_model: str | None = None,
) -> HttpResponse | StreamingHttpResponse:
    """Serves one generate request in any dialect: the codec's pivot through the loop, the
    answer back through the codec. `openai_path` and `openai_document` offer the
    OpenAI-compatible shortcut (the client's body, as the codec prepared it) to API-key
    credentials. Tool calls in the answer get short ids whose signatures are kept. `model` is
    the Gemini model called; `client_model` (default `model`) the name the answer shows."""
    ctx.model = model
    pivot = _pivot_of(codec, body)
    restored: list[dict[str, Any]] = []

    async def pivot_body() -> dict[str, Any]:
        if not restored:
            restored.append(await signatures_restore(pivot().body))
        return restored[0]

    call = UpstreamCall(
        method="streamGenerateContent" if stream else "generateContent",
        model=model,
        pivot_body=pivot_body,
        openai_path=openai_path,
        openai_body=orjson.dumps(openai_document) if openai_document is not None else b"",
        openai_document=openai_document,
        stream=stream,
        client_wants_usage=client_wants_usage,
    )
    ids_prefix = call_ids_prefix() if getattr(codec, "CALL_IDS", False) else None

    def meta(backend: str) -> ReplyMeta:
        # Only pivot answers are encoded, and their pivot has been built by then.
        return ReplyMeta(
            request_id=ctx.request_id,
            model=client_model or model,
            created=int(time.time()),
            backend=backend,
            state={**pivot().state, **(state or {})},
        )

    def relay_for(start: StreamStart) -> tuple[StreamEncoder, str | None]:
        if start.encoder is not None:  # the shortcut's events are the client's already
            return relay_of(start.encoder, pivot=False), None
        encoder = codec.StreamEncoder(meta=meta(start.backend))
        return relay_of(encoder, pivot=True), ids_prefix

    interval = settings.STREAM_KEEPALIVE_SECONDS
    if not (stream and interval > 0):
        result = await forward(ctx, call=call)
    else:
        pending = asyncio.ensure_future(forward(ctx, call=call))
        # A model may think for minutes before its first content, and proxies in front cut
        # idle connections: past the interval the 200 goes out with keep-alives, and what the
        # loop ends with (content or an error) follows as the dialect's events.
        try:
            done, _ = await asyncio.wait({pending}, timeout=interval)
        except asyncio.CancelledError:
            pending.cancel()  # the client left: asyncio.wait does not cancel what it waits on
            raise
        if not done:
            placeholder = ReplyMeta(
                request_id=ctx.request_id, model=model, created=int(time.time()), backend=""
            )
            encoder = codec.StreamEncoder(meta=replace(placeholder, state=dict(state or {})))
            return stream_response_early(ctx, pending, encoder=encoder, relay_for=relay_for)
        result = await pending
    if isinstance(result, StreamStart):
        relay, prefix = relay_for(result)
        return stream_response(ctx, result, relay=relay, ids_prefix=prefix)
    if result.client_body is not None:
        return json_response(ctx, result, result.client_body)
    assert result.document is not None
    if ids_prefix is not None:
        found = call_ids_assign(result.document, prefix=ids_prefix)
        await signatures_remember(found, backend=result.backend)
    body_out = codec.response_from_pivot(result.document, meta=meta(result.backend))
    return json_response(ctx, result, orjson.dumps(body_out))


def _ready(body: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def pivot_body() -> dict[str, Any]:
        return body

    return pivot_body


async def native_call(
    ctx: RequestContext,
    *,
    model: str,
    method: str,
    body: dict[str, Any],
    reshape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> HttpResponse:
    """countTokens, embedContent and batchEmbedContents in Google's own shape, or in the one
    `reshape` gives the answer (a dialect's count_tokens)."""
    ctx.model = model
    call = UpstreamCall(method=method, model=model, pivot_body=_ready(body))
    result = await forward(ctx, call=call, api_key_only=method in API_KEY_ONLY_METHODS)
    assert isinstance(result, Answer)
    document = result.document if result.document is not None else {}
    if reshape is not None:
        document = reshape(document)
    return json_response(ctx, result, orjson.dumps(document))


async def openai_embeddings(
    ctx: RequestContext, *, model: str, body: dict[str, Any]
) -> HttpResponse:
    """POST /v1/embeddings: API-key credentials only (Code Assist has no embeddings)."""
    ctx.model = model
    call = UpstreamCall(
        method="embedContent",
        model=model,
        pivot_body=_ready(body),
        openai_path="embeddings",
        openai_body=orjson.dumps(body),
    )
    result = await forward(ctx, call=call, api_key_only=True)
    assert isinstance(result, Answer) and result.client_body is not None
    return json_response(ctx, result, result.client_body)
