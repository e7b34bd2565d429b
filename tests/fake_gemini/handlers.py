"""The fake's aiohttp application: one handler per Google endpoint, plus the /_fake/ controls."""

import asyncio
import base64
import json
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from aiohttp import web

from .catalog import GENERATIVE_MODELS, MODELS, model_strip, model_supports, openai_model
from .errors import (
    ERRORS,
    behaviour_error,
    credential_invalid,
    credential_missing,
    entity_not_found,
    field_missing,
    google_error,
    json_invalid,
    model_not_found,
    oauth_error,
    precondition_failed,
    project_denied,
    stream_error_body,
    unregistered_caller,
)
from .replies import (
    embedding_dimensions,
    embedding_values,
    native_chunks,
    native_embed_text,
    native_prompt_tokens,
    native_reply,
    native_response,
    openai_chunks,
    openai_completion,
    openai_reply,
    words,
)
from .rules import (
    CODE_ASSIST,
    GEMINI_API,
    generate_refusal,
    model_signs,
    openai_refusal,
    signature_mint,
)
from .state import OAuthAccount, RecordedRequest

if TYPE_CHECKING:
    from .server import FakeGemini

FAKE: web.AppKey[Any] = web.AppKey("fake_gemini")
_INVALID = object()
_NATIVE_METHODS = frozenset(
    {
        "generateContent",
        "streamGenerateContent",
        "countTokens",
        "embedContent",
        "batchEmbedContents",
    }
)
_CONTENTS_MISSING = "* GenerateContentRequest.contents: contents is not specified\n"
_OAUTH_SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform "
    "https://www.googleapis.com/auth/userinfo.email "
    "https://www.googleapis.com/auth/userinfo.profile openid"
)
_ONBOARD_RESPONSE_TYPE = (
    "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse"
)
_PACIFIC = ZoneInfo("America/Los_Angeles")
_CODE_ASSIST_TIERS = {
    "free-tier": {
        "id": "free-tier",
        "name": "Gemini Code Assist for individuals",
        "description": "Gemini Code Assist for individuals, at no cost.",
        "userDefinedCloudaicompanionProject": False,
    },
    "legacy-tier": {
        "id": "legacy-tier",
        "name": "Gemini Code Assist",
        "description": "Gemini Code Assist with a Google Cloud project you choose.",
        "userDefinedCloudaicompanionProject": True,
    },
    "standard-tier": {
        "id": "standard-tier",
        "name": "Gemini Code Assist Standard",
        "description": "Gemini Code Assist Standard edition.",
        "userDefinedCloudaicompanionProject": True,
    },
}
_INELIGIBLE_MESSAGES = {
    "VALIDATION_REQUIRED": "Verify your account to continue.",
    "INELIGIBLE_ACCOUNT": "Your account is not eligible for Gemini Code Assist for individuals.",
}
# Free-tier daily request limits reported by retrieveUserQuota; they only have to look real.
_CODE_ASSIST_DAILY_LIMITS = {"gemini-2.5-pro": 100, "gemini-3-pro-preview": 100}


def _pretty(data: Any) -> bytes:
    # Google indents its JSON; the array stream in particular spans many lines per element,
    # which catches clients that parse it line by line.
    return json.dumps(data, indent=2, ensure_ascii=False).encode()


def _compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


# Encoded once: these never change and the benchmark may hit them often.
_MODELS_BODY = _pretty({"models": list(MODELS.values())})
_MODEL_BODIES = {name: _pretty(entry) for name, entry in MODELS.items()}
_OPENAI_MODELS_BODY = _compact({"object": "list", "data": [openai_model(n) for n in MODELS]})
_OPENAI_MODEL_BODIES = {name: _compact(openai_model(name)) for name in MODELS}


@dataclass(slots=True)
class Plan:
    """How an accepted request is answered, after its behaviour is applied."""

    chunks: int
    delay: float
    cut_after: int | None = None
    # "ok", "empty", "safety", "malformed_function_call" or "no_finish".
    outcome: str = "ok"
    # Function calls in a function-call answer (`parallel_calls`).
    calls: int = 1
    # Function-call steps per turn before the acknowledgement text (`tool_loop`).
    steps: int = 1
    # `stream_error`: the in-band error object sent after `error_after` chunks of a 200 stream,
    # as an SSE event or (`error_raw`) as bare JSON after the last event.
    stream_error: dict[str, Any] | None = None
    error_after: int = 1
    error_raw: bool = False


class Exchange:
    """One request's bookkeeping: its record, how its errors are shaped and what it sent."""

    __slots__ = (
        "array_errors",
        "dropped",
        "fake",
        "gone_seen",
        "model",
        "record",
        "request",
        "started_at",
        "status",
        "streaming",
    )

    def __init__(self, fake: "FakeGemini", request: web.Request) -> None:
        self.fake = fake
        self.request = request
        self.started_at = time.time()
        self.record: RecordedRequest | None = None
        self.model: str | None = None
        self.array_errors = False
        self.status = 0
        self.streaming = False
        # Set when the fake closes the connection itself, so that is not counted as a cancel.
        self.dropped = False
        self.gone_seen = False

    def begin(
        self,
        *,
        dialect: str,
        secret: str | None,
        model: str | None,
        stream: bool,
        body: Any,
        array_errors: bool = False,
    ) -> None:
        """Note what the request is; record it when the fake records."""
        self.model = model
        self.array_errors = array_errors
        if not self.fake.record:
            return
        request = self.request
        self.record = RecordedRequest(
            started_at=self.started_at,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            secret=secret,
            model=model,
            dialect=dialect,
            stream=stream,
            body=None if body is _INVALID else body,
            headers=dict(request.headers),
        )
        self.fake._record_add(self.record)

    async def send(
        self,
        data: Any = None,
        *,
        status: int = 200,
        pretty: bool = False,
        plan: Plan | None = None,
        encoded: bytes | None = None,
    ) -> web.StreamResponse:
        """Answer with JSON; under `cut_stream` send half of it and drop the connection."""
        if encoded is None:
            encoded = _pretty(data) if pretty else _compact(data)
        self.status = status
        if plan is not None and plan.cut_after is not None:
            response = web.StreamResponse(status=status)
            response.content_type = "application/json"
            response.content_length = len(encoded)
            await response.prepare(self.request)
            await response.write(encoded[: len(encoded) // 2])
            await self.hang_up(reset=False)
        return web.Response(
            body=encoded, status=status, content_type="application/json", charset="utf-8"
        )

    async def error(self, error: dict[str, Any]) -> web.StreamResponse:
        """Answer with a Google error, as an array where this endpoint uses one."""
        wrapped: Any = {"error": error}
        return await self.send(
            [wrapped] if self.array_errors else wrapped, status=error["code"], pretty=True
        )

    async def stream(
        self, events: list[bytes], *, content_type: str, plan: Plan, tail: bytes = b""
    ) -> web.StreamResponse:
        """Write `events` `plan.delay` seconds apart, `tail` with the last one."""
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        self.status = 200
        self.streaming = True
        await response.prepare(self.request)
        last = len(events) - 1
        try:
            for i, event in enumerate(events):
                if plan.cut_after is not None and i >= plan.cut_after:
                    await self.hang_up(reset=False)
                if i and plan.delay > 0:
                    await asyncio.sleep(plan.delay)
                await response.write(event + tail if i == last else event)
            if plan.cut_after is not None:
                # A one-chunk reply (a function call) still must not end cleanly.
                await self.hang_up(reset=False)
            await response.write_eof()
        except ConnectionResetError:
            # The client left while a write was under way (no cancellation reached us first).
            self.gone()
        return response

    async def hang_up(self, *, reset: bool) -> NoReturn:
        """Drop the connection: with a TCP RST (`reset`), else a FIN after what was written."""
        self.dropped = True
        transport = self.request.transport
        if transport is not None:
            if reset:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    # Linger 0 makes close send RST, so the client sees "connection reset".
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                transport.close()
        # aiohttp cancels this handler when it notices the closed connection; the sleep only
        # bounds the wait should that notice never come.
        await asyncio.sleep(5)
        raise asyncio.CancelledError

    def gone(self) -> None:
        """Note that the client went away before the response was complete."""
        if self.dropped or self.gone_seen:
            return
        self.gone_seen = True
        if self.record is not None:
            self.record.cancelled = True
        if self.streaming and not self.fake._stopping:
            self.fake.cancelled += 1


Handler = Callable[["FakeGemini", Exchange], Awaitable[web.StreamResponse]]


def _endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler with the bookkeeping every Google endpoint shares."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        fake: FakeGemini = request.app[FAKE]
        exchange = Exchange(fake, request)
        fake.request_count += 1
        fake.in_flight += 1
        if fake.in_flight > fake.max_in_flight:
            fake.max_in_flight = fake.in_flight
        try:
            return await handler(fake, exchange)
        except asyncio.CancelledError:
            exchange.gone()
            raise
        finally:
            fake.in_flight -= 1
            if exchange.record is not None:
                exchange.record.finished_at = time.time()
                exchange.record.status = exchange.status

    return wrapper


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _INVALID


async def _form_body(request: web.Request) -> dict[str, str]:
    raw = (await request.read()).decode("utf-8", "replace")
    if request.content_type == "application/json":
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(raw, keep_blank_values=True))


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _api_key(request: web.Request) -> str | None:
    """Return the credential of a Gemini API request: header, then ?key=, then Bearer."""
    return request.headers.get("x-goog-api-key") or request.query.get("key") or _bearer(request)


async def _plan(
    fake: "FakeGemini",
    exchange: Exchange,
    credentials: tuple[str, ...],
    model: str | None,
    method: str,
) -> Plan | web.StreamResponse:
    """Apply this request's behaviour: return an error response, or the plan to answer by."""
    plan = Plan(fake.stream_chunks, fake.chunk_delay_seconds)
    behaviour = fake._behaviour_take(credentials, model)
    if behaviour is None:
        return plan
    name, params = behaviour.name, behaviour.params
    if name in ERRORS:
        return await exchange.error(
            behaviour_error(name, params, model=model, method=method, secret=credentials[0])
        )
    plan.chunks = int(params.get("chunks", plan.chunks))
    plan.delay = float(params.get("chunk_delay", plan.delay))
    if name == "timeout":
        await asyncio.sleep(float(params.get("seconds", 30)))
    elif name == "slow_first_byte":
        await asyncio.sleep(float(params.get("seconds", 1.0)))
    elif name == "reset":
        await exchange.hang_up(reset=True)
    elif name == "cut_stream":
        plan.cut_after = int(params.get("after", 1))
        plan.chunks = max(plan.chunks, plan.cut_after + 1)
    elif name in (
        "empty",
        "safety",
        "malformed_function_call",
        "no_finish",
        "thoughts_only",
        "signature_only",
    ):
        plan.outcome = name
    elif name == "parallel_calls":
        plan.calls = int(params.get("count", 2))
    elif name == "tool_loop":
        plan.steps = int(params.get("steps", 3))
        plan.calls = int(params.get("count", 1))
    elif name == "stream_error":
        plan.stream_error = stream_error_body(int(params.get("status", 503)), model=model)
        plan.error_after = int(params.get("after", 1))
        plan.error_raw = bool(params.get("raw", False))
        plan.chunks = max(plan.chunks, plan.error_after + 1)
    return plan


async def _stream_error_plain(exchange: Exchange, plan: Plan) -> web.StreamResponse | None:
    """Answer a non-streamed request under `stream_error` with that error as an HTTP status."""
    if plan.stream_error is None:
        return None
    return await exchange.error(plan.stream_error)


def _in_band(events: list[bytes], error: bytes, plan: Plan, *, sse: bool) -> list[bytes]:
    """Return the first `plan.error_after` events followed by the in-band error object."""
    kept = events[: plan.error_after]
    if sse and not plan.error_raw:
        return [*kept, b"data: " + error + b"\n\n"]
    if sse:
        return [*kept, error]
    return [*kept, b"\n,\r\n" + error + b"]"]


async def _generate(
    fake: "FakeGemini",
    exchange: Exchange,
    request: dict[str, Any],
    *,
    model: str,
    stream: bool,
    plan: Plan,
    backend: str,
    wrap: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> web.StreamResponse:
    """Answer a GenerateContentRequest, whole or streamed (SSE or Google's JSON array).

    A request Google would refuse gets Google's 400 instead; `backend` (GEMINI_API or
    CODE_ASSIST) decides which thought signatures are accepted and minted.
    """
    refusal = generate_refusal(request, model=model, backend=backend)
    if refusal is not None:
        return await exchange.error(refusal)
    if not stream and (plain := await _stream_error_plain(exchange, plan)) is not None:
        return plain
    reply = native_reply(
        request,
        number=fake._reply_number(),
        min_words=plan.chunks if stream else 0,
        outcome=plan.outcome,
        calls=plan.calls,
        steps=plan.steps,
        signature=signature_mint(backend=backend) if model_signs(model) else None,
    )
    response_id = secrets.token_urlsafe(16)
    if not stream:
        data = native_response(reply, model=model, response_id=response_id)
        return await exchange.send(wrap(data) if wrap else data, pretty=True, plan=plan)
    chunks = native_chunks(reply, model=model, response_id=response_id, count=plan.chunks)
    if wrap:
        chunks = [wrap(chunk) for chunk in chunks]
    # The in-band error is never wrapped in {"response": ...}, on Code Assist either.
    error = _compact({"error": plan.stream_error}) if plan.stream_error else None
    if exchange.request.query.get("alt") == "sse":
        events = [b"data: " + _compact(chunk) + b"\n\n" for chunk in chunks]
        if error is not None:
            events = _in_band(events, error, plan, sse=True)
        return await exchange.stream(events, content_type="text/event-stream", plan=plan)
    encoded = [_pretty(chunk) for chunk in chunks]
    events = [b"[" + encoded[0], *(b"\n,\r\n" + e for e in encoded[1:])]
    if error is not None:
        events = _in_band(events, _pretty({"error": plan.stream_error}), plan, sse=False)
    else:
        events[-1] += b"]"
    return await exchange.stream(events, content_type="application/json; charset=UTF-8", plan=plan)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _model_unknown(model: str) -> dict[str, Any]:
    return google_error(
        404, "NOT_FOUND", f"Model is not found: models/{model} for api version v1beta"
    )


# -- native Gemini API -------------------------------------------------------------------------


@_endpoint
async def native_models_list(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    secret = _api_key(exchange.request)
    exchange.begin(dialect="gemini", secret=secret, model=None, stream=False, body=None)
    if secret is None:
        return await exchange.error(unregistered_caller())
    plan = await _plan(fake, exchange, (secret,), None, "listModels")
    if not isinstance(plan, Plan):
        return plan
    return await exchange.send(encoded=_MODELS_BODY)


@_endpoint
async def native_model_get(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    secret = _api_key(exchange.request)
    model = model_strip(exchange.request.match_info["model"]) or ""
    exchange.begin(dialect="gemini", secret=secret, model=model, stream=False, body=None)
    if secret is None:
        return await exchange.error(unregistered_caller())
    # Passing no model keeps rate-limit behaviours for real calls: reading metadata is free.
    plan = await _plan(fake, exchange, (secret,), None, "getModel")
    if not isinstance(plan, Plan):
        return plan
    body = _MODEL_BODIES.get(model)
    if body is None:
        return await exchange.error(_model_unknown(model))
    return await exchange.send(encoded=body)


@_endpoint
async def native_model_post(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    request = exchange.request
    raw_model, _, method = request.match_info["target"].rpartition(":")
    model = model_strip(raw_model) or ""
    stream = method == "streamGenerateContent"
    secret = _api_key(request)
    body = await _json_body(request)
    # Streaming methods answer errors with a one-element array, like the OpenAI endpoint.
    exchange.begin(
        dialect="gemini", secret=secret, model=model, stream=stream, body=body, array_errors=stream
    )
    if secret is None:
        return await exchange.error(unregistered_caller())
    if body is _INVALID:
        return await exchange.error(json_invalid())
    plan = await _plan(fake, exchange, (secret,), model, method)
    if not isinstance(plan, Plan):
        return plan
    if method not in _NATIVE_METHODS or not model_supports(model, method):
        return await exchange.error(model_not_found(model, method))
    data = body if isinstance(body, dict) else {}
    if method in ("generateContent", "streamGenerateContent"):
        if not _dicts(data.get("contents")):
            return await exchange.error(field_missing(_CONTENTS_MISSING))
        return await _generate(
            fake, exchange, data, model=model, stream=stream, plan=plan, backend=GEMINI_API
        )
    if method == "countTokens":
        inner = data.get("generateContentRequest")
        tokens = native_prompt_tokens(inner if isinstance(inner, dict) else data)
        return await exchange.send(
            {
                "totalTokens": tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
            },
            pretty=True,
            plan=plan,
        )
    if method == "embedContent":
        if not isinstance(data.get("content"), dict):
            return await exchange.error(
                field_missing("* EmbedContentRequest.content: content is not specified\n")
            )
        values = embedding_values(
            native_embed_text(data), embedding_dimensions(data.get("outputDimensionality"))
        )
        return await exchange.send({"embedding": {"values": values}}, plan=plan)
    requests = _dicts(data.get("requests"))
    if not requests:
        return await exchange.error(
            field_missing("* BatchEmbedContentsRequest.requests: requests is not specified\n")
        )
    embeddings = [
        {
            "values": embedding_values(
                native_embed_text(r), embedding_dimensions(r.get("outputDimensionality"))
            )
        }
        for r in requests
    ]
    return await exchange.send({"embeddings": embeddings}, plan=plan)


# -- Google's OpenAI-compatible endpoint ----------------------------------------------------


def _openai_begin(
    exchange: Exchange, body: Any, *, stream: bool = False
) -> tuple[str | None, str | None]:
    data = body if isinstance(body, dict) else {}
    model = model_strip(data["model"]) if isinstance(data.get("model"), str) else None
    secret = _api_key(exchange.request)
    # This endpoint wraps every error in a one-element array: Google's quirk, not ours.
    exchange.begin(
        dialect="openai", secret=secret, model=model, stream=stream, body=body, array_errors=True
    )
    return secret, model


@_endpoint
async def openai_chat(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    body = await _json_body(exchange.request)
    stream = isinstance(body, dict) and body.get("stream") is True
    secret, model = _openai_begin(exchange, body, stream=stream)
    if secret is None:
        return await exchange.error(unregistered_caller())
    if not isinstance(body, dict):
        return await exchange.error(json_invalid())
    plan = await _plan(fake, exchange, (secret,), model, "generateContent")
    if not isinstance(plan, Plan):
        return plan
    if not _dicts(body.get("messages")):
        return await exchange.error(field_missing(_CONTENTS_MISSING))
    if model is None:
        return await exchange.error(field_missing("model is not specified"))
    if not model_supports(model, "generateContent"):
        return await exchange.error(model_not_found(model, "generateContent", api_version="v1main"))
    refusal = openai_refusal(body, model=model)
    if refusal is not None:
        return await exchange.error(refusal)
    if not stream and (plain := await _stream_error_plain(exchange, plan)) is not None:
        return plain
    reply = openai_reply(
        body,
        number=fake._reply_number(),
        min_words=plan.chunks if stream else 0,
        outcome=plan.outcome,
        calls=plan.calls,
        steps=plan.steps,
        signature=signature_mint(backend=GEMINI_API) if model_signs(model) else None,
    )
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    if not stream:
        completion = openai_completion(
            reply, model=model, completion_id=completion_id, created=created
        )
        return await exchange.send(completion, plan=plan)
    chunks, usage = openai_chunks(
        reply, model=model, completion_id=completion_id, created=created, count=plan.chunks
    )
    events = [b"data: " + _compact(chunk) + b"\n\n" for chunk in chunks]
    if plan.stream_error is not None:
        # No usage chunk and no [DONE] after an in-band error.
        events = _in_band(events, _compact({"error": plan.stream_error}), plan, sse=True)
        return await exchange.stream(events, content_type="text/event-stream", plan=plan)
    options = body.get("stream_options")
    tail = b""
    if isinstance(options, dict) and options.get("include_usage") is True:
        # As OpenAI does: one extra chunk with no choices, only usage.
        tail += b"data: " + _compact(usage) + b"\n\n"
    tail += b"data: [DONE]\n\n"
    return await exchange.stream(events, content_type="text/event-stream", plan=plan, tail=tail)


@_endpoint
async def openai_embeddings(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    body = await _json_body(exchange.request)
    secret, model = _openai_begin(exchange, body)
    if secret is None:
        return await exchange.error(unregistered_caller())
    if not isinstance(body, dict):
        return await exchange.error(json_invalid())
    plan = await _plan(fake, exchange, (secret,), model, "embedContent")
    if not isinstance(plan, Plan):
        return plan
    raw = body.get("input")
    texts = (
        [raw] if isinstance(raw, str) else [str(x) for x in raw] if isinstance(raw, list) else []
    )
    if not texts:
        return await exchange.error(field_missing("input is not specified"))
    if model is None or not model_supports(model, "embedContent"):
        return await exchange.error(
            model_not_found(model or "", "embedContent", api_version="v1main")
        )
    dimensions = embedding_dimensions(body.get("dimensions"))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        values: Any = embedding_values(text, dimensions)
        if as_base64:
            # The OpenAI SDK asks for base64 by default: little-endian float32, like OpenAI.
            values = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": index, "embedding": values})
    tokens = max(sum(words(t) for t in texts), 1)
    return await exchange.send(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        plan=plan,
    )


@_endpoint
async def openai_models_list(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    secret, _ = _openai_begin(exchange, None)
    if secret is None:
        return await exchange.error(unregistered_caller())
    plan = await _plan(fake, exchange, (secret,), None, "listModels")
    if not isinstance(plan, Plan):
        return plan
    return await exchange.send(encoded=_OPENAI_MODELS_BODY)


@_endpoint
async def openai_model_get(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    secret, _ = _openai_begin(exchange, None)
    model = model_strip(exchange.request.match_info["model"]) or ""
    if exchange.record is not None:
        exchange.record.model = model
    if secret is None:
        return await exchange.error(unregistered_caller())
    plan = await _plan(fake, exchange, (secret,), None, "getModel")
    if not isinstance(plan, Plan):
        return plan
    body = _OPENAI_MODEL_BODIES.get(model)
    if body is None:
        return await exchange.error(_model_unknown(model))
    return await exchange.send(encoded=body)


# -- OAuth token endpoint -----------------------------------------------------------------


def id_token_build(*, email: str, client_id: str | None) -> str:
    """Return an unsigned JWT shaped like Google's id_token; its payload carries the email."""

    def segment(data: dict[str, Any] | bytes) -> str:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "azp": client_id or "",
        "aud": client_id or "",
        "sub": str(int.from_bytes(email.encode()[:8].ljust(8, b"\0"), "big")),
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    header = {"alg": "RS256", "kid": "fake", "typ": "JWT"}
    return f"{segment(header)}.{segment(payload)}.{segment(b'not-a-signature')}"


@_endpoint
async def oauth_token(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    form = await _form_body(exchange.request)
    refresh_token = form.get("refresh_token") or None
    exchange.begin(dialect="oauth", secret=refresh_token, model=None, stream=False, body=form)
    grant_type = form.get("grant_type", "")
    if grant_type != "refresh_token":
        error = oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        return await exchange.send(error, status=400, pretty=True)
    if refresh_token is None:
        error = oauth_error("invalid_request", "Missing required parameter: refresh_token")
        return await exchange.send(error, status=400, pretty=True)
    client_id = form.get("client_id")
    if fake.token_delay_seconds:
        await asyncio.sleep(fake.token_delay_seconds)
    minted = fake._oauth_mint(refresh_token, client_id)
    if minted is None:
        error = oauth_error("invalid_grant", "Token has been expired or revoked.")
        return await exchange.send(error, status=400, pretty=True)
    account, access_token = minted
    return await exchange.send(
        {
            "access_token": access_token,
            "expires_in": account.access_token_lifetime_seconds,
            "scope": _OAUTH_SCOPES,
            "token_type": "Bearer",
            "id_token": id_token_build(email=account.email, client_id=client_id),
        },
        pretty=True,
    )


# -- Code Assist (cloudcode-pa v1internal) -------------------------------------------------

CodeAssistMethod = Callable[
    ["FakeGemini", Exchange, OAuthAccount, dict[str, Any], Plan], Awaitable[web.StreamResponse]
]


def _code_assist_model(method: str, data: dict[str, Any]) -> str | None:
    raw = data.get("model")
    inner = data.get("request")
    # countTokens names its model inside `request` ("models/..."), as gemini-cli sends it.
    if method == "countTokens" and isinstance(inner, dict) and isinstance(inner.get("model"), str):
        raw = inner["model"]
    return model_strip(raw) if isinstance(raw, str) else None


async def _code_assist_auth(
    exchange: Exchange, token: str | None
) -> OAuthAccount | web.StreamResponse:
    if token is None:
        return await exchange.error(credential_missing())
    account = exchange.fake._oauth_account_for(token)
    if account is None:
        return await exchange.error(credential_invalid())
    return account


@_endpoint
async def code_assist_call(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    request = exchange.request
    method = request.match_info["method"]
    token = _bearer(request)
    body = await _json_body(request)
    data = body if isinstance(body, dict) else {}
    stream = method == "streamGenerateContent"
    model = _code_assist_model(method, data)
    # Code Assist streams answer errors as a one-element array too (seen in gemini-cli logs).
    exchange.begin(
        dialect="code_assist",
        secret=token,
        model=model,
        stream=stream,
        body=body,
        array_errors=stream,
    )
    account = await _code_assist_auth(exchange, token)
    if not isinstance(account, OAuthAccount):
        return account
    if body is _INVALID:
        return await exchange.error(json_invalid())
    assert token is not None
    plan = await _plan(fake, exchange, (token, account.refresh_token), model, method)
    if not isinstance(plan, Plan):
        return plan
    handler = _CODE_ASSIST_METHODS.get(method)
    if handler is None:
        return await exchange.error(entity_not_found())
    return await handler(fake, exchange, account, data, plan)


def _tier(account: OAuthAccount) -> dict[str, Any]:
    return _CODE_ASSIST_TIERS.get(
        account.tier,
        {"id": account.tier, "name": account.tier, "userDefinedCloudaicompanionProject": True},
    )


async def _load_code_assist(
    fake: "FakeGemini", exchange: Exchange, account: OAuthAccount, data: dict[str, Any], plan: Plan
) -> web.StreamResponse:
    tier = _tier(account)
    body: dict[str, Any]
    if account.ineligible_reason is not None:
        reason = account.ineligible_reason
        body = {
            "ineligibleTiers": [
                {
                    "reasonCode": reason,
                    "reasonMessage": _INELIGIBLE_MESSAGES.get(
                        reason, "Your account is not eligible for this tier."
                    ),
                    "tierId": tier["id"],
                    "tierName": tier["name"],
                    "validationUrl": "https://accounts.google.com/signin/continue?fake=verify",
                    "validationUrlLinkText": "Verify your account",
                }
            ]
        }
    elif account.onboarded:
        body = {
            "currentTier": tier,
            "allowedTiers": [{**tier, "isDefault": True}],
            "cloudaicompanionProject": account.project_id,
            "gcpManaged": False,
        }
    else:
        body = {"allowedTiers": [{**tier, "isDefault": True}], "gcpManaged": False}
    return await exchange.send(body, pretty=True)


def _operation_done(name: str, project_id: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "done": True,
        "response": {
            "@type": _ONBOARD_RESPONSE_TYPE,
            "cloudaicompanionProject": {"id": project_id, "name": project_id},
        },
    }


async def _onboard_user(
    fake: "FakeGemini", exchange: Exchange, account: OAuthAccount, data: dict[str, Any], plan: Plan
) -> web.StreamResponse:
    if account.ineligible_reason is not None:
        return await exchange.error(
            precondition_failed(_INELIGIBLE_MESSAGES.get(account.ineligible_reason, "Ineligible."))
        )
    tier_id = data.get("tierId") or account.tier
    project = data.get("cloudaicompanionProject") or None
    if tier_id == "free-tier" and project:
        # Free-tier projects are Google-managed; naming one fails, as gemini-cli warns.
        return await exchange.error(precondition_failed())
    if tier_id != "free-tier" and not project:
        return await exchange.error(
            field_missing(f"cloudaicompanionProject is required for tier {tier_id}.")
        )
    if account.onboarded:
        return await exchange.send(
            _operation_done(f"operations/{secrets.token_hex(8)}", account.project_id), pretty=True
        )
    pending = account.pending_operation
    name = fake._onboard_start(account, project)
    if pending is None:
        return await exchange.send({"name": name, "done": False}, pretty=True)
    # Older clients poll by calling onboardUser again instead of reading the operation.
    return await exchange.send(
        _operation_done(name, fake._onboard_finish(name, account)), pretty=True
    )


async def _project_check(
    exchange: Exchange, account: OAuthAccount, project: Any
) -> web.StreamResponse | None:
    if not account.onboarded or not project or project != account.project_id:
        return await exchange.error(project_denied(project if isinstance(project, str) else None))
    return None


async def _code_assist_generate(
    fake: "FakeGemini", exchange: Exchange, account: OAuthAccount, data: dict[str, Any], plan: Plan
) -> web.StreamResponse:
    denied = await _project_check(exchange, account, data.get("project"))
    if denied is not None:
        return denied
    model = exchange.model or ""
    if not model_supports(model, "generateContent"):
        return await exchange.error(entity_not_found())
    inner = data.get("request")
    if not isinstance(inner, dict) or not _dicts(inner.get("contents")):
        return await exchange.error(field_missing(_CONTENTS_MISSING))
    fake._code_assist_used(account, model)
    trace_id = secrets.token_hex(8)

    def wrap(response: dict[str, Any]) -> dict[str, Any]:
        return {"response": response, "traceId": trace_id}

    return await _generate(
        fake,
        exchange,
        inner,
        model=model,
        stream=exchange.request.match_info["method"] == "streamGenerateContent",
        plan=plan,
        backend=CODE_ASSIST,
        wrap=wrap,
    )


async def _code_assist_count_tokens(
    fake: "FakeGemini", exchange: Exchange, account: OAuthAccount, data: dict[str, Any], plan: Plan
) -> web.StreamResponse:
    # gemini-cli sends no project here; one that is sent must still be the account's.
    if "project" in data:
        denied = await _project_check(exchange, account, data["project"])
        if denied is not None:
            return denied
    if not model_supports(exchange.model, "countTokens"):
        return await exchange.error(entity_not_found())
    inner = data.get("request")
    # Not wrapped in {"response": ...}: Code Assist answers countTokens flat.
    tokens = native_prompt_tokens(inner if isinstance(inner, dict) else data)
    return await exchange.send({"totalTokens": tokens}, pretty=True, plan=plan)


async def _retrieve_user_quota(
    fake: "FakeGemini", exchange: Exchange, account: OAuthAccount, data: dict[str, Any], plan: Plan
) -> web.StreamResponse:
    denied = await _project_check(exchange, account, data.get("project"))
    if denied is not None:
        return denied
    reset = _daily_reset(datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    buckets = []
    for model in GENERATIVE_MODELS:
        limit = _CODE_ASSIST_DAILY_LIMITS.get(model, 1000)
        left = max(limit - account.requests_by_model.get(model, 0), 0)
        buckets.append(
            {
                "remainingAmount": str(left),
                "remainingFraction": left / limit,
                "resetTime": reset,
                "tokenType": "REQUESTS",
                "modelId": model,
            }
        )
    return await exchange.send({"buckets": buckets}, pretty=True)


def _daily_reset(now: datetime) -> datetime:
    """Return the next midnight in Pacific time, when Google's daily quotas reset."""
    local = now.astimezone(_PACIFIC)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(UTC)


_CODE_ASSIST_METHODS: dict[str, CodeAssistMethod] = {
    "loadCodeAssist": _load_code_assist,
    "onboardUser": _onboard_user,
    "generateContent": _code_assist_generate,
    "streamGenerateContent": _code_assist_generate,
    "countTokens": _code_assist_count_tokens,
    "retrieveUserQuota": _retrieve_user_quota,
}


@_endpoint
async def code_assist_operation(fake: "FakeGemini", exchange: Exchange) -> web.StreamResponse:
    token = _bearer(exchange.request)
    name = f"operations/{exchange.request.match_info['operation']}"
    exchange.begin(dialect="code_assist", secret=token, model=None, stream=False, body=None)
    account = await _code_assist_auth(exchange, token)
    if not isinstance(account, OAuthAccount):
        return account
    assert token is not None
    plan = await _plan(fake, exchange, (token, account.refresh_token), None, "getOperation")
    if not isinstance(plan, Plan):
        return plan
    project_id = fake._onboard_finish(name, account)
    if project_id is None:
        return await exchange.error(entity_not_found())
    return await exchange.send(_operation_done(name, project_id), pretty=True)


# -- /_fake/: steering from another process (the benchmark) -------------------------------


async def control_behave(request: web.Request) -> web.Response:
    """POST {secret, behaviour, model?, times?, params?, ...more params} → fake.behave(...)."""
    fake: FakeGemini = request.app[FAKE]
    try:
        data = await request.json()
        params = {**data.pop("params", {}), **data}
        secret = params.pop("secret")
        behaviour = params.pop("behaviour")
        model = params.pop("model", None)
        times = params.pop("times", None)
        fake.behave(secret, behaviour, model=model, times=times, **params)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
    return web.json_response({"ok": True})


async def control_reset(request: web.Request) -> web.Response:
    request.app[FAKE].reset()
    return web.json_response({"ok": True})


async def control_requests(request: web.Request) -> web.Response:
    """GET → counters and recorded requests; `?bodies=1` adds bodies and headers."""
    fake: FakeGemini = request.app[FAKE]
    return web.json_response(fake._summary(bodies=request.query.get("bodies") == "1"))


async def control_oauth_account(request: web.Request) -> web.Response:
    """POST the keyword arguments of `FakeGemini.oauth_account_add`."""
    fake: FakeGemini = request.app[FAKE]
    try:
        fake.oauth_account_add(**await request.json())
    except (TypeError, ValueError) as exc:
        return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
    return web.json_response({"ok": True})


def app_build(fake: "FakeGemini") -> web.Application:
    """Return the aiohttp application serving every fake endpoint for `fake`."""
    # Requests with inline images can be large; Google accepts 20 MB inline.
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[FAKE] = fake
    router = app.router
    router.add_get("/v1beta/models", native_models_list)
    router.add_get("/v1beta/models/{model}", native_model_get)
    router.add_post("/v1beta/models/{target}", native_model_post)
    router.add_post("/v1beta/openai/chat/completions", openai_chat)
    router.add_post("/v1beta/openai/embeddings", openai_embeddings)
    router.add_get("/v1beta/openai/models", openai_models_list)
    router.add_get("/v1beta/openai/models/{model:.+}", openai_model_get)
    router.add_post("/v1internal:{method}", code_assist_call)
    router.add_get("/v1internal/operations/{operation}", code_assist_operation)
    router.add_post("/token", oauth_token)
    router.add_post("/_fake/behave", control_behave)
    router.add_post("/_fake/reset", control_reset)
    router.add_get("/_fake/requests", control_requests)
    router.add_post("/_fake/oauth_account", control_oauth_account)
    return app
