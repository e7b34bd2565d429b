"""Type checks of client request fields, before anything reads them: a 400 naming the field."""

from collections.abc import Mapping
from typing import Any

from common.errors import BadRequest

# JSON types by name; booleans are not numbers here, though Python's bool is an int.
_TYPE_CHECKS = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
}

# OpenAI's chat completion request (https://platform.openai.com/docs/api-reference/chat):
# each field Rotator or Google reads, with the JSON types it may have. Optional fields may also
# be null, as OpenAI allows. Fields not listed go to Google unchecked.
CHAT_FIELD_TYPES: Mapping[str, tuple[str, ...]] = {
    "model": ("string",),
    "messages": ("array",),
    "stream": ("boolean",),
    "stream_options": ("object",),
    "temperature": ("number",),
    "top_p": ("number",),
    "n": ("integer",),
    "max_tokens": ("integer",),
    "max_completion_tokens": ("integer",),
    "stop": ("string", "array"),
    "presence_penalty": ("number",),
    "frequency_penalty": ("number",),
    "seed": ("integer",),
    "tools": ("array",),
    "tool_choice": ("string", "object"),
    "functions": ("array",),
    "function_call": ("string", "object"),
    "response_format": ("object",),
    "user": ("string",),
    "logit_bias": ("object",),
    "logprobs": ("boolean",),
    "top_logprobs": ("integer",),
    "parallel_tool_calls": ("boolean",),
    "reasoning_effort": ("string",),
    "metadata": ("object",),
    "modalities": ("array",),
    "store": ("boolean",),
    "service_tier": ("string",),
}
CHAT_REQUIRED = ("model", "messages")
STREAM_OPTIONS_FIELD_TYPES: Mapping[str, tuple[str, ...]] = {"include_usage": ("boolean",)}


def _kinds(types: tuple[str, ...]) -> str:
    return " or ".join(f"an {t}" if t[0] in "aeiou" else f"a {t}" for t in types)


def fields_check(
    body: Mapping[str, Any], *, types: Mapping[str, tuple[str, ...]], prefix: str = ""
) -> None:
    """Returns when every field of `body` listed in `types` has one of its types (or is null);
    raises BadRequest naming the first that does not (`prefix` names the enclosing field)."""
    for name, allowed in types.items():
        value = body.get(name)
        if value is None:
            continue
        if not any(_TYPE_CHECKS[kind](value) for kind in allowed):
            raise BadRequest(
                f"'{prefix}{name}' must be {_kinds(allowed)}.",
                param=f"{prefix}{name}",
                code="invalid_type",
            )


def chat_request_check(body: Mapping[str, Any]) -> None:
    """Returns when the chat request's fields have their types: `CHAT_FIELD_TYPES`, each
    message an object and `stream_options` with a boolean `include_usage`. Raises BadRequest
    naming the field otherwise."""
    fields_check(body, types=CHAT_FIELD_TYPES)
    for index, message in enumerate(body.get("messages") or ()):
        if not isinstance(message, dict):
            raise BadRequest(
                "Each message must be an object.", param=f"messages[{index}]", code="invalid_type"
            )
    options = body.get("stream_options")
    if isinstance(options, dict):
        fields_check(options, types=STREAM_OPTIONS_FIELD_TYPES, prefix="stream_options.")
