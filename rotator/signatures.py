"""Thought signatures on the way to Google and back: keep those the serving backend accepts,
put Google's documented skip value where Gemini 3 would otherwise refuse an unsigned call, and
keep the signatures of the short tool-call ids Rotator hands out server-side."""

import itertools
import re
import secrets
from typing import Any

from django.conf import settings
from django.core.cache import cache

from rotator.codecs.shared import SIGNATURE_BACKEND_KEY

# Google's documented value for a function call that has no signature of its own (history
# from another model, another gateway or the other backend); Vertex documents only this one.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_GEMINI_MAJOR = re.compile(r"gemini-(\d+)")


def signatures_require(model: str) -> bool:
    """Whether `model` refuses unsigned function calls in the current turn (Gemini 3+)."""
    match = _GEMINI_MAJOR.match(model)
    return match is not None and int(match.group(1)) >= 3


def signatures_fit(body: dict[str, Any], *, backend: str, model: str) -> dict[str, Any]:
    """Returns the request body to send to `backend`: signatures sealed by another backend
    removed (the two do not accept each other's), Rotator's bookkeeping keys removed, and on
    Gemini 3 the skip value on the first functionCall of each current-turn model turn that has
    none. The input is not changed; an untouched body is returned as it is."""
    contents = body.get("contents")
    if not isinstance(contents, list):
        return body
    require = signatures_require(model)
    current_turn = _current_turn_start(contents) if require else len(contents)
    changed = False
    fitted: list[Any] = []
    for position, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            fitted.append(content)
            continue
        new_parts = [_part_fit(part, backend=backend) for part in parts]
        if require and position >= current_turn and content.get("role") == "model":
            _skip_value_put(new_parts)
        if any(new is not old for new, old in zip(new_parts, parts, strict=True)):
            changed = True
            fitted.append({**content, "parts": new_parts})
        else:
            fitted.append(content)
    return {**body, "contents": fitted} if changed else body


def _part_fit(part: Any, *, backend: str) -> Any:
    if not isinstance(part, dict) or SIGNATURE_BACKEND_KEY not in part:
        return part
    fitted = {key: value for key, value in part.items() if key != SIGNATURE_BACKEND_KEY}
    if part[SIGNATURE_BACKEND_KEY] != backend:
        fitted.pop("thoughtSignature", None)
    return fitted


def _skip_value_put(parts: list[Any]) -> None:
    """Gemini checks the first functionCall part of each step; give it the skip value when it
    has no signature (replaces the list's item, never mutates a part the caller owns)."""
    for index, part in enumerate(parts):
        if isinstance(part, dict) and "functionCall" in part:
            if not part.get("thoughtSignature"):
                parts[index] = {**part, "thoughtSignature": SKIP_SIGNATURE}
            return


def _current_turn_start(contents: list[Any]) -> int:
    """The index after the last user turn that holds text rather than only function
    responses: Google checks signatures from there on."""
    for position in range(len(contents) - 1, -1, -1):
        content = contents[position]
        if not isinstance(content, dict) or content.get("role") != "user":
            continue
        parts = content.get("parts")
        if isinstance(parts, list) and any(
            isinstance(part, dict) and "functionResponse" not in part for part in parts
        ):
            return position + 1
    return 0


# ----------------------------------------------------------------- call ids and their store

# Tool-call ids Rotator hands out: short and plain, so that clients which truncate or
# sanitise ids (many agents do) cannot corrupt them; the signature stays server-side.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_STORE_PREFIX = "rotator-signature:"


def call_ids_prefix() -> str:
    """A fresh prefix for one answer's call ids: random, so ids never collide across requests,
    processes or restarts (a collision would restore another conversation's signature)."""
    return f"call_{secrets.token_hex(8)}_"


def call_ids_assign(response: Any, *, prefix: str) -> list[tuple[str, str]]:
    """Gives each functionCall part of a pivot response (or stream chunk) that lacks a short,
    plain id one (`prefix` + a process-wide counter) and returns the
    (id, signature) pairs of the signed calls, for `signatures_remember`. Changes `response`
    in place: it is the pipeline's own parsed copy."""
    found: list[tuple[str, str]] = []
    candidates = response.get("candidates") if isinstance(response, dict) else None
    for candidate in candidates if isinstance(candidates, list) else []:
        content = candidate.get("content") if isinstance(candidate, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            call = part.get("functionCall") if isinstance(part, dict) else None
            if not isinstance(call, dict):
                continue
            call_id = call.get("id")
            if not isinstance(call_id, str) or not _PLAIN_ID.fullmatch(call_id):
                call_id = call["id"] = f"{prefix}{next(_call_numbers)}"
            signature = part.get("thoughtSignature")
            if isinstance(signature, str) and signature:
                found.append((call_id, signature))
    return found


_call_numbers = itertools.count(1)


async def signatures_remember(found: list[tuple[str, str]], *, backend: str) -> None:
    """Stores each call id's signature with the backend that minted it (shared cache, TTL
    SIGNATURE_TTL_SECONDS); oversized signatures are not kept (the skip value covers them)."""
    entries = {
        _STORE_PREFIX + call_id: (signature, backend)
        for call_id, signature in found
        if len(signature) <= settings.SIGNATURE_MAX_BYTES
    }
    if entries:
        await cache.aset_many(entries, timeout=settings.SIGNATURE_TTL_SECONDS)


async def _recall(call_ids: set[str]) -> dict[str, tuple[str, str]]:
    if not call_ids:
        return {}
    stored = await cache.aget_many([_STORE_PREFIX + call_id for call_id in call_ids])
    return {key.removeprefix(_STORE_PREFIX): value for key, value in stored.items()}


async def signatures_restore(body: dict[str, Any]) -> dict[str, Any]:
    """Returns `body` with the stored signature (and its backend) put back on every
    functionCall part whose id Rotator handed out; the store is authoritative over whatever
    the client sent. The input is not changed."""
    contents = body.get("contents")
    if not isinstance(contents, list):
        return body
    ids = {
        part["functionCall"]["id"]
        for content in contents
        if isinstance(content, dict) and content.get("role") == "model"
        for part in content.get("parts") or []
        if isinstance(part, dict)
        and isinstance(part.get("functionCall"), dict)
        and isinstance(part["functionCall"].get("id"), str)
    }
    stored = await _recall(ids)
    if not stored:
        return body
    restored: list[Any] = []
    for content in contents:
        if not (isinstance(content, dict) and content.get("role") == "model"):
            restored.append(content)
            continue
        parts = []
        for part in content.get("parts") or []:
            call = part.get("functionCall") if isinstance(part, dict) else None
            known = stored.get(str(call.get("id"))) if isinstance(call, dict) else None
            if known is not None:
                signature, backend = known
                part = {**part, "thoughtSignature": signature, SIGNATURE_BACKEND_KEY: backend}
            parts.append(part)
        restored.append({**content, "parts": parts})
    return {**body, "contents": restored}


async def openai_signatures_fit(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The OpenAI-compatible shortcut's request with Gemini 3's signatures in place: for the
    assistant tool calls of the current turn, the stored signature where Rotator minted the
    id on the Gemini API, else the client's own `extra_content`, else (first call of a turn)
    the skip value. Other models and bodies without tool calls come back unchanged."""
    messages = body.get("messages")
    if not signatures_require(model) or not isinstance(messages, list):
        return body
    start = 0
    for position in range(len(messages) - 1, -1, -1):
        message = messages[position]
        if isinstance(message, dict) and message.get("role") == "user":
            start = position + 1
            break
    ids = {
        call["id"]
        for message in messages[start:]
        if isinstance(message, dict) and isinstance(message.get("tool_calls"), list)
        for call in message["tool_calls"]
        if isinstance(call, dict) and isinstance(call.get("id"), str)
    }
    if not ids:
        return body
    stored = await _recall(ids)
    fitted = list(messages)
    for position in range(start, len(messages)):
        message = messages[position]
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if not isinstance(calls, list):
            continue
        new_calls = []
        for index, call in enumerate(calls):
            if not isinstance(call, dict):
                new_calls.append(call)
                continue
            known = stored.get(str(call.get("id")))
            signature = _extra_signature(call)
            if known is not None:
                signature = known[0] if known[1] == "gemini_api" else None
            if signature is None and index == 0:
                signature = SKIP_SIGNATURE
            if signature is not None and signature != _extra_signature(call):
                call = {**call, "extra_content": {"google": {"thought_signature": signature}}}
            new_calls.append(call)
        fitted[position] = {**message, "tool_calls": new_calls}
    return {**body, "messages": fitted}


def _extra_signature(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None
