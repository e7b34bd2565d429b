"""Proxy endpoints: thin async views. Parse, authenticate, call rotator.forward, render.

Plain `async def` views rather than DRF/adrf: they keep DRF's conventions (one authentication
function, per-key throttling in the state backend, one exception renderer per dialect)
without its per-request wrapping, which measured as a large share of the forwarding budget
(docs/performance.md).
"""

import logging
import re
import time
import uuid
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
from rotator import clock, forward, pool, throttle
from rotator.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RotatorError,
    StateUnavailable,
)
from rotator.forward import RequestContext
from rotator.methods import head_strip, method_check, read_only
from rotator.orm import orm_call
from rotator.render import error_response
from rotator.state import state_backend
from rotator.validate import chat_request_check

logger = logging.getLogger("rotator.request")

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")
REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")

View = Callable[..., Awaitable[HttpResponseBase]]


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
            request_id = given_id if REQUEST_ID.fullmatch(given_id) else uuid.uuid4().hex
            if request.method == "OPTIONS":
                return _preflight(request)
            head = False
            try:
                head = method_check(request, methods=methods)
                response = await view(request, request_id=request_id, **kwargs)
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
                    forward.request_log(ctx)
            except Exception:
                logger.exception("unhandled error in %s (request_id=%s)", request.path, request_id)
                response = error_response(
                    RotatorError(f"Internal error; request id {request_id}.", code="internal"),
                    dialect=dialect,
                )
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


def presented_key(request: HttpRequest) -> str | None:
    """The caller's key, as OpenAI clients send it or as Google clients do."""
    authorization = request.headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return request.headers.get("x-goog-api-key") or request.GET.get("key") or None


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
    name = value.removeprefix("models/")
    if not MODEL_NAME.fullmatch(name):
        raise BadRequest(
            "Model names contain only letters, digits, '.', '_' and '-'.",
            param=param,
            code="invalid_model",
        )
    return name


# --------------------------------------------------------------------------- OpenAI dialect


@proxy_endpoint(dialect="openai", methods=("POST",))
async def chat_completions(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect="openai", request_id=request_id)
    body = _json_body(request)
    model = _model_name(body.get("model"), param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required: a non-empty array.", param="messages")
    chat_request_check(body)
    # Recorded only once allowed: a refused name must not become a usage row or a label.
    pool.model_check(key=ctx.key, model=model)
    ctx.model = model
    return await forward.chat_completions(ctx, {**body, "model": model})


@proxy_endpoint(dialect="openai", methods=("POST",))
async def embeddings(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect="openai", request_id=request_id)
    body = _json_body(request)
    model = _model_name(body.get("model"), param="model")
    if "input" not in body:
        raise BadRequest("'input' is required.", param="input")
    pool.model_check(key=ctx.key, model=model)
    ctx.model = model
    return await forward.embeddings(ctx, {**body, "model": model})


def _openai_model(native: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(native.get("name", "")).removeprefix("models/"),
        "object": "model",
        "created": 0,
        "owned_by": "google",
    }


@proxy_endpoint(dialect="openai", methods=("GET",))
async def openai_models(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect="openai", request_id=request_id)
    models = await forward.models_list(ctx)
    body = {"object": "list", "data": [_openai_model(m) for m in models]}
    return HttpResponse(orjson.dumps(body), content_type="application/json")


@proxy_endpoint(dialect="openai", methods=("GET",))
async def openai_model(request: HttpRequest, *, request_id: str, model: str) -> HttpResponseBase:
    ctx = await _context(request, dialect="openai", request_id=request_id)
    name = _model_name(model, param=None)
    for native in await forward.models_list(ctx):
        if str(native.get("name", "")).removeprefix("models/") == name:
            return HttpResponse(
                orjson.dumps(_openai_model(native)), content_type="application/json"
            )
    raise NotFound(
        f"The model '{name}' does not exist or this key may not use it.", code="model_not_found"
    )


@proxy_endpoint(dialect="openai", methods=("GET", "POST", "PUT", "PATCH", "DELETE"))
async def openai_not_found(
    request: HttpRequest, *, request_id: str, rest: str = ""
) -> HttpResponseBase:
    raise NotFound(f"Unknown route {request.path}.", code="unknown_url")


# --------------------------------------------------------------------------- Gemini dialect


@proxy_endpoint(dialect="gemini", methods=("GET",))
async def gemini_models(request: HttpRequest, *, request_id: str) -> HttpResponseBase:
    ctx = await _context(request, dialect="gemini", request_id=request_id)
    models = await forward.models_list(ctx)
    return HttpResponse(orjson.dumps({"models": models}), content_type="application/json")


@proxy_endpoint(dialect="gemini", methods=("GET", "POST"))
async def gemini_model(request: HttpRequest, *, request_id: str, target: str) -> HttpResponseBase:
    """GET models/{model}, or POST models/{model}:{method}."""
    ctx = await _context(request, dialect="gemini", request_id=request_id)
    model_part, _, method = target.partition(":")
    model = _model_name(model_part, param=None)
    if request.method == "GET":
        if method:
            raise MethodNotAllowed(
                f"Use POST for :{method}.", code="method_not_allowed", allow=("POST", "OPTIONS")
            )
        for native in await forward.models_list(ctx):
            if str(native.get("name", "")).removeprefix("models/") == model:
                return HttpResponse(orjson.dumps(native), content_type="application/json")
        raise NotFound(f"models/{model} is not found.", code="model_not_found")
    if method not in forward.SUPPORTED_METHODS:
        supported = ", ".join(sorted(forward.SUPPORTED_METHODS))
        raise NotFound(f"Unknown method '{method}'. Supported: {supported}.", code="unknown_method")
    body = _json_body(request)
    pool.model_check(key=ctx.key, model=model)
    ctx.model = model
    return await forward.gemini_call(
        ctx, model=model, method=method, body=body, sse=request.GET.get("alt") == "sse"
    )


@proxy_endpoint(dialect="gemini", methods=("GET", "POST", "PUT", "PATCH", "DELETE"))
async def gemini_not_found(
    request: HttpRequest, *, request_id: str, rest: str = ""
) -> HttpResponseBase:
    raise NotFound(f"Unknown route {request.path}.", code="unknown_url")


def _speaks_gemini(request: HttpRequest) -> bool:
    """Google's clients authenticate with x-goog-api-key or ?key=, OpenAI's with a Bearer."""
    return "authorization" not in request.headers and bool(
        request.headers.get("x-goog-api-key") or request.GET.get("key")
    )


async def v1_models(request: HttpRequest) -> HttpResponseBase:
    """/v1/models: the OpenAI list, or the native one for Gemini clients on Google's /v1 path."""
    if _speaks_gemini(request):
        return await gemini_models(request)
    return await openai_models(request)


async def v1_model(request: HttpRequest, model: str) -> HttpResponseBase:
    """/v1/models/{x}: an OpenAI model lookup, or a native call (`{model}:{method}`) or lookup
    from Gemini clients that use Google's stable /v1 path."""
    if ":" in model or _speaks_gemini(request):
        return await gemini_model(request, target=model)
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
