"""Proxy endpoints: thin async views. Parse, authenticate, call rotator.pipeline, render.

Plain `async def` views rather than DRF/adrf: they keep DRF's conventions (one authentication
function, per-key throttling in the state backend, one exception renderer per dialect)
without its per-request wrapping, which measured as a large share of the forwarding budget
(docs/performance.md).
"""

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from redis.exceptions import RedisError

from accounts.encryption import encryption_health
from common import clock
from common.errors import (
    AliasesChanged,
    BadRequest,
    MethodNotAllowed,
    ModelNotAllowed,
    NotFound,
    PayloadTooLarge,
    RotatorError,
    StateUnavailable,
)
from common.events import usage_settled
from common.naming import bearer_token, model_bare
from rotator import aliases, catalog, pipeline, pool, stored_responses, throttle
from rotator.codecs import anthropic_messages, gemini_native, openai_chat, openai_responses
from rotator.codecs.base import CodecError
from rotator.context import RequestContext, request_log
from rotator.methods import head_strip, method_check, read_only
from rotator.orm import orm_call
from rotator.render import error_response
from rotator.state import state_backend
from rotator.validate import chat_request_check

logger = logging.getLogger("rotator.request")

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")
REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")


def request_id_new() -> str:
    """A new request id: 32 random hex digits (the length of a uuid4's hex, as before, at a
    quarter of its cost: uuid4 builds and validates a UUID object only to print it)."""
    return os.urandom(16).hex()


View = Callable[..., Awaitable[HttpResponseBase]]

GENERATE_METHODS = frozenset({"generateContent", "streamGenerateContent"})
SUPPORTED_METHODS = GENERATE_METHODS | pipeline.API_KEY_ONLY_METHODS | {"countTokens"}


def _cors(response: HttpResponseBase, request: HttpRequest) -> None:
    origins = settings.CORS_ALLOWED_ORIGINS
    origin = request.headers.get("origin")
    if not origin:
        return
    if "*" in origins:
        response["Access-Control-Allow-Origin"] = "*"
    elif origin in origins:
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
    else:
        return
    response["Access-Control-Expose-Headers"] = "X-Request-ID, X-Rotator-Overhead-Ms, Retry-After"


def _preflight(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(status=204)
    _cors(response, request)
    if response.has_header("Access-Control-Allow-Origin"):
        response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = (
            request.headers.get("access-control-request-headers")
            or "authorization, content-type, x-goog-api-key"
        )
        response["Access-Control-Max-Age"] = "86400"
    return response


def proxy_endpoint(*, dialect: str, methods: tuple[str, ...]) -> Callable[[View], View]:
    """Wraps a proxy view: request id, CORS, method check, errors in the dialect, timing."""

    def decorate(view: View) -> View:
        @wraps(view)
        async def endpoint(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
            started = time.perf_counter()
            given_id = request.headers.get("x-request-id", "")
            request_id = given_id if REQUEST_ID.fullmatch(given_id) else request_id_new()
            if request.method == "OPTIONS":
                return _preflight(request)
            head = False
            try:
                head = method_check(request, methods=methods)
                response = await _view_on_current_aliases(
                    view, request, request_id=request_id, **kwargs
                )
            except (DatabaseError, RedisError) as exc:
                # Rotator's own storage is down: a clear, retryable answer, not a 500.
                logger.error("state unavailable in %s: %s", request.path, type(exc).__name__)
                response = error_response(
                    StateUnavailable(
                        "Rotator cannot reach its database or Redis right now; retry shortly.",
                        code="state_unavailable",
                        retry_after_seconds=5,
                    ),
                    dialect=dialect,
                )
            except RotatorError as exc:
                response = error_response(exc, dialect=dialect)
                ctx = getattr(request, "rotator_ctx", None)
                if ctx is not None:
                    ctx.status = exc.status
                    request_log(ctx)
            except Exception:
                logger.exception("unhandled error in %s (request_id=%s)", request.path, request_id)
                response = error_response(
                    RotatorError(f"Internal error; request id {request_id}.", code="internal"),
                    dialect=dialect,
                )
            if not response.streaming:
                # What the client is about to see answered is counted where a kill cannot
                # lose it (a stream does this before its last bytes).
                await usage_settled()
            ctx = getattr(request, "rotator_ctx", None)
            overhead = (
                ctx.overhead_ms() if ctx is not None else (time.perf_counter() - started) * 1000
            )
            response["X-Request-ID"] = request_id
            response["X-Rotator-Overhead-Ms"] = f"{overhead:.2f}"
            _cors(response, request)
            return head_strip(response) if head else response

        endpoint.csrf_exempt = True  # type: ignore[attr-defined]
        return endpoint

    return decorate


# How often a request is served again after its pick found the alias table stale: once is
# enough unless aliases keep changing, and then the client gets a retryable 503.
ALIAS_RERUNS = 2


async def _view_on_current_aliases(view: View, request: HttpRequest, **kwargs: Any) -> Any:
    """Runs `view`; when its pick refused a stale alias table (AliasesChanged: nothing was
    sent upstream or counted), reads the aliases afresh and runs it again."""
    for _ in range(ALIAS_RERUNS):
        try:
            return await view(request, **kwargs)
        except AliasesChanged:
            await aliases.alias_table_current()
    return await view(request, **kwargs)


def presented_key(request: HttpRequest) -> str | None:
    """The caller's key, as OpenAI clients send it, as Google clients do, or as Anthropic's do
    (x-api-key; Claude Code's ANTHROPIC_AUTH_TOKEN is a Bearer)."""
    authorization = request.headers.get("authorization")
    if authorization:
        return bearer_token(authorization)
    return (
        request.headers.get("x-goog-api-key")
        or request.headers.get("x-api-key")
        or request.GET.get("key")
        or None
    )


async def _context(request: HttpRequest, *, dialect: str, request_id: str) -> RequestContext:
    key = await throttle.api_key_authenticate_throttled(
        presented=presented_key(request), address=throttle.client_address(request), now=clock.now()
    )
    ctx = RequestContext(request_id=request_id, dialect=dialect, key=key)
    request.rotator_ctx = ctx  # type: ignore[attr-defined]
    return ctx


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    limit = settings.MAX_REQUEST_BYTES
    if declared > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.", code="too_large")
    try:
        raw = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge(
            f"Request body is larger than {limit} bytes.", code="too_large"
        ) from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.", code="too_large")
    if not raw.strip():
        raise BadRequest("Request body is empty; send a JSON object.", code="invalid_json")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("Request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object.", code="invalid_json")
    return data


def _model_name(value: Any, *, param: str | None) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{param or 'model'}' is required.", param=param, code="missing_model")
    name = model_bare(value)
    if not MODEL_NAME.fullmatch(name):
        raise BadRequest(
            "Model names contain only letters, digits, '.', '_' and '-'.",
            param=param,
            code="invalid_model",
        )
    return name


async def _model_route(ctx: RequestContext, *, requested: str) -> str:
    """Returns the Gemini model that serves `requested` for this key (its alias, or the name
    itself) and records both on `ctx`. Raises ModelNotAllowed when the key may not use it.

    The process's alias table is used unconfirmed (the pick confirms it); a refusal is
    confirmed first, so that no request is refused on an alias changed elsewhere."""
    user_id = ctx.key.user_id
    resolution = await aliases.model_resolve(user_id=user_id, requested=requested, confirm=False)
    try:
        await pool.model_check(key=ctx.key, model=resolution.model, requested=requested)
    except ModelNotAllowed:
        if resolution.confirmed:
            raise
        resolution = await aliases.model_resolve(user_id=user_id, requested=requested, confirm=True)
        await pool.model_check(key=ctx.key, model=resolution.model, requested=requested)
    # Recorded only once allowed: a refused name must not become a usage row or a label.
    ctx.model = resolution.model
    ctx.requested_model = requested
    ctx.aliases_version_unconfirmed = None if resolution.confirmed else resolution.version
    return resolution.model


# --------------------------------------------------------------------------- OpenAI dialect


@proxy_endpoint(dialect=openai_chat.NAME, methods=("POST",))
async def chat_completions(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect=openai_chat.NAME, request_id=request_id)
    body = _json_body(request)
    requested = _model_name(body.get("model"), param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required: a non-empty array.", param="messages")
    chat_request_check(body)
    model = await _model_route(ctx, requested=requested)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object.", param="stream_options")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean.", param="stream")
    client_wants_usage = bool(options and options.get("include_usage"))
    body = {**body, "model": model}
    # The deprecated `functions` form is translated on every credential, so that it is answered
    # in its own shape (`function_call`) whichever kind serves it.
    legacy_functions = body.get("functions") is not None and not body.get("tools")
    # An aliased request takes the translated path: Google's OpenAI endpoint would answer
    # with the Gemini model's name, and the client must see the name it sent.
    shortcut = model == requested and not legacy_functions
    return await pipeline.generate(
        ctx,
        codec=openai_chat,
        body=body,
        model=model,
        client_model=requested,
        stream=stream,
        openai_path="chat/completions" if shortcut else None,
        openai_document=openai_chat.passthrough_body(
            body, model=model, stream=stream, client_wants_usage=client_wants_usage
        )
        if shortcut
        else None,
        client_wants_usage=client_wants_usage,
    )


@proxy_endpoint(dialect=openai_responses.NAME, methods=("POST",))
async def responses_create(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect=openai_responses.NAME, request_id=request_id)
    body = _json_body(request)
    requested = _model_name(body.get("model"), param="model")
    model = await _model_route(ctx, requested=requested)
    items = await stored_responses.conversation_continue(body=body, user_id=ctx.key.user_id)
    response = await pipeline.generate(
        ctx,
        codec=openai_responses,
        body={**body, "model": model, "input": items},
        model=model,
        client_model=requested,
        stream=bool(body.get("stream", False)),
    )
    if body.get("store", True) is False:
        return response
    return await stored_responses.stored_response_keep(
        response, user_id=ctx.key.user_id, input_items=items
    )


@proxy_endpoint(dialect=openai_responses.NAME, methods=("GET",))
async def response_retrieve(
    request: HttpRequest, *, request_id: str, response_id: str
) -> HttpResponseBase:
    ctx = await _context(request, dialect=openai_responses.NAME, request_id=request_id)
    stored = await stored_responses.stored_response_get(
        user_id=ctx.key.user_id, response_id=response_id
    )
    return HttpResponse(orjson.dumps(stored), content_type="application/json")


@proxy_endpoint(dialect=openai_chat.NAME, methods=("POST",))
async def embeddings(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect=openai_chat.NAME, request_id=request_id)
    body = _json_body(request)
    requested = _model_name(body.get("model"), param="model")
    if "input" not in body:
        raise BadRequest("'input' is required.", param="input")
    model = await _model_route(ctx, requested=requested)
    return await pipeline.openai_embeddings(ctx, model=model, body={**body, "model": model})


def _openai_model(native: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": catalog.model_id(native),
        "object": "model",
        "created": 0,
        "owned_by": "google",
    }


@proxy_endpoint(dialect=openai_chat.NAME, methods=("GET",))
async def openai_models(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect=openai_chat.NAME, request_id=request_id)
    models = await catalog.models_list(ctx)
    body = {"object": "list", "data": [_openai_model(m) for m in models]}
    return HttpResponse(orjson.dumps(body), content_type="application/json")


@proxy_endpoint(dialect=openai_chat.NAME, methods=("GET",))
async def openai_model(request: HttpRequest, *, request_id: str, model: str) -> HttpResponseBase:
    ctx = await _context(request, dialect=openai_chat.NAME, request_id=request_id)
    name = _model_name(model, param=None)
    for native in await catalog.models_list(ctx):
        if catalog.model_id(native) == name:
            return HttpResponse(
                orjson.dumps(_openai_model(native)), content_type="application/json"
            )
    raise NotFound(
        f"The model '{name}' does not exist or this key may not use it.", code="model_not_found"
    )


@proxy_endpoint(dialect=openai_chat.NAME, methods=("GET", "POST", "PUT", "PATCH", "DELETE"))
async def openai_not_found(
    request: HttpRequest, *, request_id: str, rest: str = ""
) -> HttpResponseBase:
    raise NotFound(f"Unknown route {request.path}.", code="unknown_url")


# --------------------------------------------------------------------------- Gemini dialect


@proxy_endpoint(dialect=gemini_native.NAME, methods=("GET",))
async def gemini_models(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect=gemini_native.NAME, request_id=request_id)
    models = await catalog.models_list(ctx)
    return HttpResponse(orjson.dumps({"models": models}), content_type="application/json")


@proxy_endpoint(dialect=gemini_native.NAME, methods=("GET", "POST"))
async def gemini_model(request: HttpRequest, *, request_id: str, target: str) -> HttpResponseBase:
    """GET models/{model}, or POST models/{model}:{method}."""
    ctx = await _context(request, dialect=gemini_native.NAME, request_id=request_id)
    model_part, _, method = target.partition(":")
    model = _model_name(model_part, param=None)
    if request.method == "GET":
        if method:
            raise MethodNotAllowed(
                f"Use POST for :{method}.", code="method_not_allowed", allow=("POST", "OPTIONS")
            )
        for native in await catalog.models_list(ctx):
            if catalog.model_id(native) == model:
                return HttpResponse(orjson.dumps(native), content_type="application/json")
        raise NotFound(f"models/{model} is not found.", code="model_not_found")
    if method not in SUPPORTED_METHODS:
        supported = ", ".join(sorted(SUPPORTED_METHODS))
        raise NotFound(f"Unknown method '{method}'. Supported: {supported}.", code="unknown_method")
    body = _json_body(request)
    requested = model
    model = await _model_route(ctx, requested=requested)
    if method in GENERATE_METHODS:
        return await pipeline.generate(
            ctx,
            codec=gemini_native,
            body=body,
            model=model,
            client_model=requested,
            stream=method == "streamGenerateContent",
            state={"sse": request.GET.get("alt") == "sse"},
        )
    return await pipeline.native_call(ctx, model=model, method=method, body=body)


@proxy_endpoint(dialect=gemini_native.NAME, methods=("GET", "POST", "PUT", "PATCH", "DELETE"))
async def gemini_not_found(
    request: HttpRequest, *, request_id: str, rest: str = ""
) -> HttpResponseBase:
    raise NotFound(f"Unknown route {request.path}.", code="unknown_url")


# ------------------------------------------------------------------------ Anthropic dialect


@proxy_endpoint(dialect=anthropic_messages.NAME, methods=("POST",))
async def anthropic_messages_create(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    """POST /v1/messages (Claude Code adds ?beta=true, which routing ignores)."""
    ctx = await _context(request, dialect=anthropic_messages.NAME, request_id=request_id)
    body = _json_body(request)
    requested = _model_name(body.get("model"), param="model")
    model = await _model_route(ctx, requested=requested)
    return await pipeline.generate(
        ctx,
        codec=anthropic_messages,
        body={**body, "model": model},
        model=model,
        client_model=requested,
        stream=body.get("stream") is True,
    )


@proxy_endpoint(dialect=anthropic_messages.NAME, methods=("POST",))
async def anthropic_count_tokens(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    """POST /v1/messages/count_tokens, answered by Gemini's countTokens."""
    ctx = await _context(request, dialect=anthropic_messages.NAME, request_id=request_id)
    body = _json_body(request)
    requested = _model_name(body.get("model"), param="model")
    model = await _model_route(ctx, requested=requested)
    try:
        _, count_body = anthropic_messages.count_tokens_request({**body, "model": model})
    except CodecError as exc:
        raise BadRequest(exc.message, param=exc.param, code="invalid_request") from None
    return await pipeline.native_call(
        ctx,
        model=model,
        method="countTokens",
        body=count_body,
        reshape=anthropic_messages.count_tokens_response,
    )


@proxy_endpoint(dialect=anthropic_messages.NAME, methods=("GET",))
async def anthropic_models(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect=anthropic_messages.NAME, request_id=request_id)
    page = anthropic_messages.models_page(await catalog.models_list(ctx))
    return HttpResponse(orjson.dumps(page), content_type="application/json")


@proxy_endpoint(dialect=anthropic_messages.NAME, methods=("GET",))
async def anthropic_model(request: HttpRequest, *, request_id: str, model: str) -> HttpResponseBase:
    ctx = await _context(request, dialect=anthropic_messages.NAME, request_id=request_id)
    name = _model_name(model, param=None)
    for native in await catalog.models_list(ctx):
        if catalog.model_id(native) == name:
            body = anthropic_messages.model_info(native)
            return HttpResponse(orjson.dumps(body), content_type="application/json")
    raise NotFound(
        f"The model '{name}' does not exist or this key may not use it.", code="model_not_found"
    )


def _speaks_anthropic(request: HttpRequest) -> bool:
    """Anthropic's SDKs (and Claude Code) send anthropic-version on every request."""
    return "anthropic-version" in request.headers


def _speaks_gemini(request: HttpRequest) -> bool:
    """Google's clients authenticate with x-goog-api-key or ?key=, OpenAI's with a Bearer."""
    return "authorization" not in request.headers and bool(
        request.headers.get("x-goog-api-key") or request.GET.get("key")
    )


async def v1_models(request: HttpRequest) -> HttpResponseBase:
    """/v1/models: the OpenAI list, Anthropic's for Anthropic clients, or the native one for
    Gemini clients on Google's /v1 path."""
    if _speaks_anthropic(request):
        return await anthropic_models(request)
    if _speaks_gemini(request):
        return await gemini_models(request)
    return await openai_models(request)


async def v1_model(request: HttpRequest, model: str) -> HttpResponseBase:
    """/v1/models/{x}: an OpenAI model lookup, or a native call (`{model}:{method}`) or lookup
    from Gemini clients that use Google's stable /v1 path."""
    if ":" in model or _speaks_gemini(request):
        return await gemini_model(request, target=model)
    if _speaks_anthropic(request):
        return await anthropic_model(request, model=model)
    return await openai_model(request, model=model)


# --------------------------------------------------------------------------------- health


def _health() -> dict[str, str]:
    from django.core.cache import cache
    from django.db import connection

    report = {"database": "ok", "cache": "ok", "state": "ok", "encryption": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any failure is what /healthz reports, never raises
        report["database"] = f"error: {type(exc).__name__}"
    try:
        cache.set("healthz", "1", 5)
        if cache.get("healthz") != "1":
            report["cache"] = "error: read back failed"
    except Exception as exc:
        report["cache"] = f"error: {type(exc).__name__}"
    try:
        state_backend().ping()
    except Exception as exc:
        report["state"] = f"error: {type(exc).__name__}"
    report["encryption"] = encryption_health()
    return report


@read_only
async def healthz(request: HttpRequest) -> HttpResponse:
    report = await orm_call(_health)()
    healthy = all(value == "ok" for value in report.values())
    body = {"status": "ok" if healthy else "degraded", **report}
    return HttpResponse(
        orjson.dumps(body), status=200 if healthy else 503, content_type="application/json"
    )
