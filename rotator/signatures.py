"""Thought signatures on the way to Google: keep those the serving backend accepts, and put
Google's documented skip value where Gemini 3 would otherwise refuse an unsigned call."""

import re
from typing import Any

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
