"""The request loop: pick a credential, call upstream, learn from the answer, retry elsewhere
while nothing has reached the client, and count every attempt.

Views parse and authenticate, then call one function here per operation.
"""

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import httpx
import orjson
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from rotator import clock, oauth, pool
from rotator.classify import (
    Outcome,
    Verdict,
    success_body_classify,
    transport_error_verdict,
    upstream_answer_classify,
)
from rotator.errors import (
    BadRequest,
    NoCredentialAvailable,
    PoolEmpty,
    RotatorError,
    UpstreamError,
    UpstreamUnreachable,
)
from rotator.pool import CredentialView, KeyView
from rotator.streams import (
    GeminiArrayRelay,
    GeminiSseRelay,
    OpenAiSseRelay,
    Relay,
    TranslatedChatRelay,
    gemini_usage,
    openai_usage,
    sse_payload_batches,
)
from rotator.translate import (
    ChatStreamTranslator,
    TranslationError,
    chat_request_to_gemini,
    gemini_response_to_chat,
)
from rotator.upstream import TRANSPORT_ERRORS, upstream_client, upstream_timeout
from stats.metrics import request_observe
from stats.usage import UsageEvent, usage_record

logger = logging.getLogger("rotator.request")

# What can end an upstream stream early: the connection, or bytes that are not events.
STREAM_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, orjson.JSONDecodeError)

OAUTH = "gemini_oauth"
API_KEY = "gemini_api_key"


@dataclass(slots=True)
class RequestContext:
    """One client request as it moves through the loop; ends as one log line."""

    request_id: str
    dialect: str  # "openai" or "gemini"
    key: KeyView
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float = 0.0
    attempts: int = 0
    model: str = ""
    credential: CredentialView | None = None
    status: int = 0
    usage: tuple[int, int, int] | None = None

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000)


@dataclass(slots=True)
class Failure:
    verdict: Verdict
    status: int | None
    body: bytes = b""


@dataclass(slots=True)
class Answer:
    """A complete upstream success, ready for the client."""

    body: bytes
    usage: tuple[int, int, int] | None
    content_type: str = "application/json"


@dataclass(slots=True)
class StreamStart:
    response: httpx.Response
    # Event payloads still to relay, grouped as upstream delivered them; `pending` are those
    # that arrived with the first content event, after it.
    batches: AsyncIterator[list[bytes]]
    pending: list[bytes]
    relay: Relay
    head: bytes


Attempt = Callable[[CredentialView], Awaitable[Failure | Answer | StreamStart]]


# ----------------------------------------------------------------------------- the loop


async def attempts_run(
    ctx: RequestContext, *, model: str, attempt: Attempt, kinds: frozenset[str] | None = None
) -> Answer | StreamStart:
    """Tries up to MAX_ATTEMPTS distinct credentials. Returns the first success; raises the
    final error (upstream's own for client errors; 429/502/503 when nothing is left)."""
    excluded: list[int] = []
    if kinds is not None:
        other, remaining = await pool.credentials_of_other_kinds(key=ctx.key, kinds=kinds)
        if other and not remaining:
            _count_refusal(ctx, rate_limited=False)
            raise PoolEmpty(
                "Embeddings need a Gemini API key credential: Code Assist (Gemini CLI OAuth "
                "accounts) does not serve them, and this pool has no API key.",
                code="no_api_key_credential",
            )
        excluded.extend(other)
    failures: list[Failure] = []
    for number in range(settings.MAX_ATTEMPTS):
        try:
            credential = await pool.credential_pick(
                key=ctx.key,
                model=model,
                excluded=tuple(excluded),
                first_attempt=number == 0,
                now=clock.now(),
            )
        except NoCredentialAvailable as exc:
            _count_refusal(ctx, rate_limited=True)
            if failures and failures[-1].verdict.outcome in (
                Outcome.TRANSIENT,
                Outcome.EMPTY,
                Outcome.MODEL_NOT_FOUND,
            ):
                raise await _final_error(ctx, model=model, failures=failures) from exc
            raise
        except PoolEmpty:
            _count_refusal(ctx, rate_limited=False)
            raise
        excluded.append(credential.id)
        ctx.attempts += 1
        ctx.credential = credential
        result = await attempt(credential)
        if (
            credential.is_oauth
            and isinstance(result, Failure)
            and result.verdict.outcome is Outcome.UNAUTHENTICATED
            # An access token Google no longer accepts: refresh once, same credential.
            and await oauth.access_token_refresh_forced(credential=credential)
        ):
            result = await attempt(credential)
        if not isinstance(result, Failure):
            return result
        await pool.credential_report(
            credential=credential,
            model=model,
            verdict=result.verdict,
            status=result.status,
            now=clock.now(),
        )
        _count_attempt(ctx, credential, success=False, verdict=result.verdict)
        if not result.verdict.retry_elsewhere:
            raise _passthrough(result)
        failures.append(result)
        logger.debug(
            "attempt %d on %s failed: %s", number + 1, credential.display_name, result.verdict
        )
    raise await _final_error(ctx, model=model, failures=failures)


async def _final_error(ctx: RequestContext, *, model: str, failures: list[Failure]) -> RotatorError:
    """The one error a client sees after MAX_ATTEMPTS failed attempts: the truth about why."""
    last = failures[-1]
    if any(f.verdict.outcome in (Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED) for f in failures):
        return NoCredentialAvailable(
            f"{ctx.attempts} credentials were tried for {model} and were rate-limited or "
            f"exhausted: {last.verdict.message}",
            code="credentials_exhausted",
            retry_after_seconds=await pool.retry_after_for(
                key=ctx.key, model=model, now=clock.now()
            ),
        )
    if last.verdict.outcome is Outcome.MODEL_NOT_FOUND:
        return _passthrough(last)
    if last.verdict.outcome is Outcome.INVALID:
        return PoolEmpty(
            f"Upstream refused {ctx.attempts} credential(s) as invalid (now marked so): "
            f"{last.verdict.message}",
            code="credentials_invalid",
        )
    return _unreachable(last, ctx.attempts)


def _unreachable(failure: Failure, attempts: int) -> UpstreamUnreachable:
    detail = failure.verdict.message or "no answer"
    return UpstreamUnreachable(
        f"Upstream failed on {attempts} attempt(s); last: {detail}", code="upstream_unreachable"
    )


def _passthrough(failure: Failure) -> UpstreamError:
    message = failure.verdict.message or f"Upstream answered {failure.status}."
    return UpstreamError(
        message,
        status=failure.status or 502,
        google_status=failure.verdict.status,
        body=failure.body,
    )


def _count_attempt(
    ctx: RequestContext,
    credential: CredentialView,
    *,
    success: bool,
    verdict: Verdict | None = None,
    usage: tuple[int, int, int] | None = None,
) -> None:
    now = clock.now()
    prompt, completion, total = usage or (0, 0, 0)
    usage_record(
        UsageEvent(
            day=clock.quota_day(now),
            user_id=ctx.key.user_id,
            api_key_id=ctx.key.id,
            credential_id=credential.id,
            credential_label=credential.display_name,
            model=ctx.model,
            success=success,
            rate_limited=verdict is not None
            and verdict.outcome in (Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED),
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
        ),
        at=now,
    )


def _count_refusal(ctx: RequestContext, *, rate_limited: bool) -> None:
    now = clock.now()
    usage_record(
        UsageEvent(
            day=clock.quota_day(now),
            user_id=ctx.key.user_id,
            api_key_id=ctx.key.id,
            credential_id=None,
            credential_label="",
            model=ctx.model,
            success=False,
            rate_limited=rate_limited,
        ),
        at=now,
    )


# ----------------------------------------------------------------------- upstream calls


def _api_key_headers(credential: CredentialView, *, dialect: str) -> dict[str, str]:
    if dialect == "openai":
        return {
            "authorization": f"Bearer {credential.secret()}",
            "content-type": "application/json",
        }
    return {"x-goog-api-key": credential.secret(), "content-type": "application/json"}


async def _oauth_headers(credential: CredentialView) -> dict[str, str] | Failure:
    token = await oauth.access_token(credential=credential)
    if isinstance(token, Verdict):
        return Failure(token, None)
    return {"authorization": f"Bearer {token}", "content-type": "application/json"}


async def _json_call(
    ctx: RequestContext,
    credential: CredentialView,
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    content: bytes | None,
) -> Failure | tuple[int, bytes]:
    started = time.perf_counter()
    try:
        response = await upstream_client().request(
            method,
            _upstream_url(url),
            headers=headers,
            content=content,
            timeout=upstream_timeout(),
        )
        body = response.content
    except TRANSPORT_ERRORS as exc:
        return Failure(_transport_verdict(exc, credential), None)
    finally:
        ctx.upstream_seconds += time.perf_counter() - started
    if response.status_code != 200:
        return Failure(
            _classify(response.status_code, body, credential), response.status_code, body
        )
    return response.status_code, body


async def _stream_call(
    ctx: RequestContext,
    credential: CredentialView,
    *,
    url: str,
    headers: dict[str, str],
    content: bytes,
    relay: Relay,
) -> Failure | StreamStart:
    started = time.perf_counter()
    request = upstream_client().build_request(
        "POST", _upstream_url(url), headers=headers, content=content, timeout=upstream_timeout()
    )
    response: httpx.Response | None = None
    try:
        response = await upstream_client().send(request, stream=True)
        if response.status_code != 200:
            body = await response.aread()
            await response.aclose()
            return Failure(
                _classify(response.status_code, body, credential), response.status_code, body
            )
        batches = sse_payload_batches(response.aiter_bytes())
        head = [relay.start()]
        pending: list[bytes] | None = None
        # Hold the response until the first event with content: an empty stream is retried
        # on another credential, and nothing has been sent yet.
        async for batch in batches:
            for index, payload in enumerate(batch):
                out, has_content = relay.feed(payload)
                head.append(out)
                if has_content:
                    pending = batch[index + 1 :]
                    break
            if pending is not None:
                break
        if pending is None:
            await response.aclose()
            return Failure(
                Verdict(Outcome.EMPTY, message="upstream stream ended without content"), 200
            )
    except TRANSPORT_ERRORS as exc:
        if response is not None:
            await response.aclose()
        return Failure(_transport_verdict(exc, credential), None)
    except orjson.JSONDecodeError:
        if response is not None:
            await response.aclose()
        return Failure(Verdict(Outcome.TRANSIENT, message="upstream sent malformed events"), 200)
    finally:
        ctx.upstream_seconds += time.perf_counter() - started
    return StreamStart(
        response=response, batches=batches, pending=pending, relay=relay, head=b"".join(head)
    )


@lru_cache(maxsize=1024)
def _upstream_url(text: str) -> httpx.URL:
    """The parsed form of an upstream URL (a few per model and route): httpx parses a URL
    string on every request, which measured at 15-30 µs, as much as the rest of building it."""
    return httpx.URL(text)


def _classify(status: int, body: bytes, credential: CredentialView) -> Verdict:
    verdict = upstream_answer_classify(status=status, body=body, secrets=(credential.secret(),))
    if status == 401 and not credential.is_oauth:
        # For an API key a 401 means the key itself is refused.
        return Verdict(Outcome.INVALID, message=verdict.message, status=verdict.status)
    return verdict


def _transport_verdict(exc: BaseException, credential: CredentialView) -> Verdict:
    description = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return transport_error_verdict(description=description, secrets=(credential.secret(),))


def _success_json(body: bytes) -> tuple[Any, Verdict]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, Verdict(Outcome.TRANSIENT, message="upstream sent malformed JSON")
    if not isinstance(document, dict):
        return document, Verdict(Outcome.OK)
    return document, success_body_classify(body=document)


def _gemini_url(model: str, method: str, *, sse: bool = False) -> str:
    suffix = "?alt=sse" if sse else ""
    return f"{settings.GEMINI_UPSTREAM_URL}/models/{model}:{method}{suffix}"


def _code_assist_url(method: str, *, sse: bool = False) -> str:
    suffix = "?alt=sse" if sse else ""
    return f"{settings.CODE_ASSIST_UPSTREAM_URL}:{method}{suffix}"


# ------------------------------------------------------------------------- responses


def json_response(ctx: RequestContext, answer: Answer) -> HttpResponse:
    ctx.usage = answer.usage
    ctx.status = 200
    response = HttpResponse(answer.body, content_type=answer.content_type)
    request_log(ctx)
    return response


def stream_response(
    ctx: RequestContext, start: StreamStart, *, content_type: str
) -> StreamingHttpResponse:
    credential = ctx.credential
    assert credential is not None

    async def body() -> AsyncIterator[bytes]:
        outcome = "cancelled"
        try:
            carry = [start.head]
            batch = start.pending
            while True:
                # One write per upstream read; what preceded a bad event still goes out.
                out, error = _relay_batch(start.relay, batch)
                chunk = b"".join(carry + out)
                carry = []
                if chunk:
                    yield chunk
                if error is not None:
                    raise error
                try:
                    batch = await anext(start.batches)
                except StopAsyncIteration:
                    break
            tail = start.relay.finish()
            if tail:
                yield tail
            outcome = "ok"
        except STREAM_ERRORS as exc:
            outcome = "cut"
            verdict = _transport_verdict(exc, credential)
            await pool.credential_report(
                credential=credential,
                model=ctx.model,
                verdict=verdict,
                status=None,
                now=clock.now(),
            )
            yield start.relay.error(
                message="The upstream stream was interrupted before it finished.",
                status="UNAVAILABLE",
                code=502,
            )
        finally:
            await start.response.aclose()
            ctx.usage = start.relay.usage
            # 499: the client closed the connection (nginx's convention).
            ctx.status = {"ok": 200, "cut": 502}.get(outcome, 499)
            _count_attempt(ctx, credential, success=outcome == "ok", usage=ctx.usage)
            request_log(ctx)

    response = StreamingHttpResponse(body(), content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _relay_batch(
    relay: Relay, batch: list[bytes]
) -> tuple[list[bytes], orjson.JSONDecodeError | None]:
    """The client bytes for a batch of payloads, and the parse error that cut it short."""
    out: list[bytes] = []
    for payload in batch:
        try:
            data, _ = relay.feed(payload)
        except orjson.JSONDecodeError as exc:
            return out, exc
        if data:
            out.append(data)
    return out, None


def request_log(ctx: RequestContext) -> None:
    """One structured line per request (never a secret: masks and prefixes only), and the
    same facts for /metrics."""
    prompt, completion, total = ctx.usage or (0, 0, 0)
    credential_label = ctx.credential.display_name if ctx.credential else "-"
    request_observe(
        model=ctx.model,
        dialect=ctx.dialect,
        status=ctx.status,
        credential_label=credential_label,
        upstream_seconds=ctx.upstream_seconds,
    )
    logger.info(
        "request_id=%s key=%s credential=%s model=%s dialect=%s attempts=%d status=%d "
        "latency_ms=%.1f overhead_ms=%.2f tokens=%d/%d/%d",
        ctx.request_id,
        ctx.key.prefix,
        credential_label,
        ctx.model or "-",
        ctx.dialect,
        ctx.attempts,
        ctx.status,
        (time.perf_counter() - ctx.started) * 1000,
        ctx.overhead_ms(),
        prompt,
        completion,
        total,
    )


# --------------------------------------------------------------------- OpenAI dialect


async def chat_completions(
    ctx: RequestContext, body: dict[str, Any]
) -> HttpResponse | StreamingHttpResponse:
    """POST /v1/chat/completions for any mix of credentials."""
    model = str(body["model"]).removeprefix("models/")
    ctx.model = model
    stream = bool(body.get("stream", False))
    options = body.get("stream_options")
    client_wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    upstream_body = body
    if stream and not client_wants_usage:
        # Always ask for usage so the counters are right; the relay hides it from the client.
        upstream_body = {**body, "stream_options": {**(options or {}), "include_usage": True}}
    api_key_content = orjson.dumps(upstream_body)

    async def attempt(credential: CredentialView) -> Failure | Answer | StreamStart:
        if credential.is_oauth:
            # Translated only when an OAuth account serves it: API keys go to Google's own
            # OpenAI-compatible endpoint untouched.
            try:
                translated = chat_request_to_gemini(body)
            except TranslationError as exc:
                raise BadRequest(str(exc), param=exc.param, code="invalid_request") from None
            headers = await _oauth_headers(credential)
            if isinstance(headers, Failure):
                return headers
            project = await oauth.project_id(credential=credential)
            if isinstance(project, Verdict):
                return Failure(project, None)
            content = orjson.dumps(
                {"model": model, "project": project, "request": translated.request}
            )
            if stream:
                relay = TranslatedChatRelay(
                    translator=ChatStreamTranslator(
                        model=model,
                        completion_id=f"chatcmpl-{ctx.request_id}",
                        created=int(time.time()),
                        include_usage=client_wants_usage,
                    )
                )
                return await _stream_call(
                    ctx,
                    credential,
                    url=_code_assist_url("streamGenerateContent", sse=True),
                    headers=headers,
                    content=content,
                    relay=relay,
                )
            result = await _json_call(
                ctx,
                credential,
                method="POST",
                url=_code_assist_url("generateContent"),
                headers=headers,
                content=content,
            )
            if isinstance(result, Failure):
                return result
            document, verdict = _success_json(result[1])
            if isinstance(document, dict) and "response" in document:
                document = document["response"]
                verdict = success_body_classify(body=document)
            if verdict.outcome is not Outcome.OK:
                return Failure(verdict, 200)
            chat = gemini_response_to_chat(
                document,
                model=model,
                completion_id=f"chatcmpl-{ctx.request_id}",
                created=int(time.time()),
            )
            return Answer(body=orjson.dumps(chat), usage=gemini_usage(document))
        headers = _api_key_headers(credential, dialect="openai")
        url = f"{settings.OPENAI_UPSTREAM_URL}/chat/completions"
        if stream:
            return await _stream_call(
                ctx,
                credential,
                url=url,
                headers=headers,
                content=api_key_content,
                relay=OpenAiSseRelay(client_wants_usage=client_wants_usage),
            )
        result = await _json_call(
            ctx, credential, method="POST", url=url, headers=headers, content=api_key_content
        )
        if isinstance(result, Failure):
            return result
        document, verdict = _success_json(result[1])
        if verdict.outcome is not Outcome.OK:
            return Failure(verdict, 200)
        return Answer(body=result[1], usage=openai_usage(document))

    return await _finish(ctx, await attempts_run(ctx, model=model, attempt=attempt))


async def _finish(
    ctx: RequestContext, result: Answer | StreamStart, *, sse: bool = True
) -> HttpResponse | StreamingHttpResponse:
    credential = ctx.credential
    assert credential is not None
    if isinstance(result, StreamStart):
        content_type = "text/event-stream" if sse else "application/json"
        return stream_response(ctx, result, content_type=content_type)
    _count_attempt(ctx, credential, success=True, usage=result.usage)
    return json_response(ctx, result)


async def embeddings(
    ctx: RequestContext, body: dict[str, Any]
) -> HttpResponse | StreamingHttpResponse:
    """POST /v1/embeddings: API-key credentials only (Code Assist has no embeddings)."""
    model = str(body["model"]).removeprefix("models/")
    ctx.model = model
    content = orjson.dumps(body)

    async def attempt(credential: CredentialView) -> Failure | Answer | StreamStart:
        result = await _json_call(
            ctx,
            credential,
            method="POST",
            url=f"{settings.OPENAI_UPSTREAM_URL}/embeddings",
            headers=_api_key_headers(credential, dialect="openai"),
            content=content,
        )
        if isinstance(result, Failure):
            return result
        document, _ = _success_json(result[1])
        return Answer(body=result[1], usage=openai_usage(document))

    result = await attempts_run(ctx, model=model, attempt=attempt, kinds=frozenset({API_KEY}))
    return await _finish(ctx, result)


# --------------------------------------------------------------------- Gemini dialect

GENERATE_METHODS = frozenset({"generateContent", "streamGenerateContent"})
API_KEY_ONLY_METHODS = frozenset({"embedContent", "batchEmbedContents"})
SUPPORTED_METHODS = GENERATE_METHODS | API_KEY_ONLY_METHODS | {"countTokens"}


async def gemini_call(
    ctx: RequestContext, *, model: str, method: str, body: dict[str, Any], sse: bool
) -> HttpResponse | StreamingHttpResponse:
    """POST /v1beta/models/{model}:{method} for any mix of credentials."""
    ctx.model = model
    stream = method == "streamGenerateContent"
    content = orjson.dumps(body)

    async def attempt(credential: CredentialView) -> Failure | Answer | StreamStart:
        if credential.is_oauth:
            headers = await _oauth_headers(credential)
            if isinstance(headers, Failure):
                return headers
            project = await oauth.project_id(credential=credential)
            if isinstance(project, Verdict):
                return Failure(project, None)
            if method == "countTokens":
                request = {"model": f"models/{model}", **_count_tokens_request(body)}
                envelope: dict[str, Any] = {"request": request}
            else:
                envelope = {"model": model, "project": project, "request": body}
            upstream_content = orjson.dumps(envelope)
            if stream:
                relay: Relay = GeminiSseRelay(unwrap=True) if sse else GeminiArrayRelay(unwrap=True)
                return await _stream_call(
                    ctx,
                    credential,
                    url=_code_assist_url(method, sse=True),
                    headers=headers,
                    content=upstream_content,
                    relay=relay,
                )
            result = await _json_call(
                ctx,
                credential,
                method="POST",
                url=_code_assist_url(method),
                headers=headers,
                content=upstream_content,
            )
            if isinstance(result, Failure):
                return result
            document, _ = _success_json(result[1])
            if isinstance(document, dict) and "response" in document:
                document = document["response"]
            return _gemini_answer(method, document)
        headers = _api_key_headers(credential, dialect="gemini")
        if stream:
            relay = GeminiSseRelay(unwrap=False) if sse else GeminiArrayRelay(unwrap=False)
            return await _stream_call(
                ctx,
                credential,
                url=_gemini_url(model, method, sse=True),
                headers=headers,
                content=content,
                relay=relay,
            )
        result = await _json_call(
            ctx,
            credential,
            method="POST",
            url=_gemini_url(model, method),
            headers=headers,
            content=content,
        )
        if isinstance(result, Failure):
            return result
        document, _ = _success_json(result[1])
        answer = _gemini_answer(method, document)
        if isinstance(answer, Answer):
            answer.body = result[1]
        return answer

    kinds = frozenset({API_KEY}) if method in API_KEY_ONLY_METHODS else None
    result = await attempts_run(ctx, model=model, attempt=attempt, kinds=kinds)
    return await _finish(ctx, result, sse=sse)


def _count_tokens_request(body: dict[str, Any]) -> dict[str, Any]:
    if "generateContentRequest" in body and isinstance(body["generateContentRequest"], dict):
        return {"contents": body["generateContentRequest"].get("contents", [])}
    return {"contents": body.get("contents", [])}


def _gemini_answer(method: str, document: Any) -> Failure | Answer:
    if document is None:
        return Failure(Verdict(Outcome.TRANSIENT, message="upstream sent malformed JSON"), 200)
    if method == "generateContent" and isinstance(document, dict):
        verdict = success_body_classify(body=document)
        if verdict.outcome is not Outcome.OK:
            return Failure(verdict, 200)
    return Answer(body=orjson.dumps(document), usage=gemini_usage(document))


# ------------------------------------------------------------------------- model lists


async def models_list(ctx: RequestContext) -> list[dict[str, Any]]:
    """The native model descriptions the caller's pool can serve, filtered by the key."""
    models = await pool.models_for_pool(key=ctx.key, fetch=_models_fetch)
    allowed = ctx.key.allowed_models
    if allowed:
        models = [m for m in models if str(m.get("name", "")).removeprefix("models/") in allowed]
    return models


async def _models_fetch(credential: CredentialView) -> list[dict[str, Any]] | None:
    if credential.is_oauth:
        return oauth.code_assist_models()
    try:
        response = await upstream_client().get(
            f"{settings.GEMINI_UPSTREAM_URL}/models",
            headers={"x-goog-api-key": credential.secret()},
            params={"pageSize": 1000},
        )
    except TRANSPORT_ERRORS:
        return None
    if response.status_code != 200:
        return None
    document = orjson.loads(response.content)
    models = document.get("models") if isinstance(document, dict) else None
    return models if isinstance(models, list) else None
