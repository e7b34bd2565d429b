"""The Anthropic Messages API codec (/v1/messages, Claude Code): requests to the pivot and back."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from common.errors import RotatorError
from rotator.codecs import shared
from rotator.codecs.base import CodecError, PivotRequest, ReplyMeta

NAME = "anthropic_messages"

# Claude Code (v2.1.69 and later) opens its system prompt with this attribution line. Its hash
# changes per conversation and sub-agent, so left in it would defeat Gemini's implicit
# prefix caching for everything after it; it carries nothing the model needs.
_ATTRIBUTION_PREFIX = "x-anthropic-billing-header:"

_BLOCK_TYPES_BY_ROLE = {
    "user": frozenset({"text", "image", "document", "tool_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking"}),
}
_TOOL_RESULT_BLOCK_TYPES = frozenset({"text", "image", "document"})

_IMAGE_MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}

_TOOL_CHOICE_MODES = {"auto": "AUTO", "any": "ANY", "none": "NONE"}

# Anthropic's output_config.effort in OpenAI's words (shared.thinking_for_effort's scale); "max"
# is beyond Gemini's highest level, so it asks for that.
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}

_REFUSAL_REASONS = shared.CONTENT_FILTER_REASONS

# Gemini's context overflow, reworded as Anthropic says it: Claude Code starts compacting the
# conversation when it reads "prompt is too long".
_CONTEXT_OVERFLOW = re.compile(
    r"input token count \(?(\d+)\)? exceeds the maximum number of tokens allowed \(?(\d+)\)?"
)


# --- request -------------------------------------------------------------------------------------


def request_to_pivot(body: Mapping[str, Any]) -> PivotRequest:
    """Returns the pivot request for a Messages API body.

    Raises CodecError naming the offending parameter (max_tokens is required, as Anthropic
    requires it). Changes nothing: the body is only read.
    """
    if not isinstance(body, Mapping):
        raise CodecError("The request body must be a JSON object.")
    max_tokens = _integer(body, "max_tokens", minimum=1)
    if max_tokens is None:
        raise CodecError("'max_tokens' is required.", param="max_tokens")
    model, request = _request_translate(body)
    config = _generation_config(body, model=model)
    config["maxOutputTokens"] = max_tokens
    request["generationConfig"] = config
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise CodecError("'stream' must be a boolean.", param="stream")
    return PivotRequest(model=model, body=request, stream=bool(stream))


def count_tokens_request(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Returns (model, Gemini countTokens body) for a Messages count_tokens body.

    The body is the Messages body without max_tokens; Gemini counts system instruction and
    tools only inside a generateContentRequest. Signatures are left out: they are not prompt.
    Raises CodecError as request_to_pivot does.
    """
    if not isinstance(body, Mapping):
        raise CodecError("The request body must be a JSON object.")
    model, request = _request_translate(body)
    for content in request["contents"]:
        content["parts"] = [
            {
                key: value
                for key, value in part.items()
                if key not in ("thoughtSignature", shared.SIGNATURE_BACKEND_KEY)
            }
            for part in content["parts"]
        ]
    return model, {"generateContentRequest": {"model": f"models/{model}", **request}}


def count_tokens_response(response: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the Messages count_tokens answer for a Gemini countTokens response."""
    total = response.get("totalTokens") if isinstance(response, Mapping) else None
    valid = isinstance(total, int) and not isinstance(total, bool) and total >= 0
    return {"input_tokens": total if valid else 0}


def _request_translate(body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Returns (model, GenerateContentRequest without generationConfig) for a Messages body."""
    model = body.get("model")
    model = model.removeprefix("models/") if isinstance(model, str) else ""
    if not model:
        raise CodecError("'model' is required and must be a model name.", param="model")
    request: dict[str, Any] = {"contents": _contents(body.get("messages"), model=model)}
    system_parts = _system_parts(body.get("system"))
    if system_parts:
        request["systemInstruction"] = {"parts": system_parts}
    declarations = _function_declarations(body.get("tools"))
    if declarations:
        request["tools"] = [{"functionDeclarations": declarations}]
    tool_config = _tool_config(body.get("tool_choice"), names=[d["name"] for d in declarations])
    if tool_config is not None:
        request["toolConfig"] = tool_config
    return model, request


def _system_parts(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        kept = [line for line in system.split("\n") if not line.startswith(_ATTRIBUTION_PREFIX)]
        text = "\n".join(kept)
        return [{"text": text}] if text.strip() else []
    if not isinstance(system, list):
        raise CodecError("'system' must be a string or an array of text blocks.", param="system")
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(system):
        where = f"system[{i}]"
        if not isinstance(block, Mapping) or block.get("type") != "text":
            raise CodecError("System blocks must be text blocks.", param=f"{where}.type")
        text = _text_of(block, where=where)
        if text and not text.startswith(_ATTRIBUTION_PREFIX):
            parts.append({"text": text})
    return parts


def _contents(messages: Any, *, model: str) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise CodecError("'messages' must be a non-empty array.", param="messages")
    # tool_use id -> tool name: Gemini's functionResponse must name the function it answers.
    call_names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise CodecError("Each message must be an object.", param=where)
        role = message.get("role")
        if role not in _BLOCK_TYPES_BY_ROLE:
            raise CodecError("A message role must be user or assistant.", param=f"{where}.role")
        parts = _message_parts(
            message.get("content"), role=str(role), where=where, model=model, call_names=call_names
        )
        if not parts:
            continue
        gemini_role = "model" if role == "assistant" else "user"
        # Consecutive same-role turns are merged: Gemini wants alternation, and the answers to
        # one model turn's calls must all sit in one user turn.
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    if not contents:
        raise CodecError(
            "'messages' must hold at least one message with content.", param="messages"
        )
    return contents


def _message_parts(
    content: Any, *, role: str, where: str, model: str, call_names: dict[str, str]
) -> list[dict[str, Any]]:
    if isinstance(content, str):
        # Gemini rejects empty text parts; an empty message contributes nothing.
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise CodecError(
            "'content' must be a string or an array of blocks.", param=f"{where}.content"
        )
    parts: list[dict[str, Any]] = []
    # A sealed signature from a thinking block waits for the part Gemini signed: the next
    # functionCall or text part (the response side puts the thinking block right before it).
    pending_signature: Any = None
    for j, block in enumerate(content):
        block_where = f"{where}.content[{j}]"
        if not isinstance(block, Mapping):
            raise CodecError("Each content block must be an object.", param=block_where)
        kind = block.get("type")
        if not isinstance(kind, str) or kind not in _BLOCK_TYPES_BY_ROLE[role]:
            raise CodecError(
                f"Content block type {kind!r} is not supported in a {role} message.",
                param=f"{block_where}.type",
            )
        if kind == "thinking":
            # Thought summaries are not sent back: Gemini takes its reasoning context from the
            # signature alone, and the summary text would only cost input tokens.
            if shared.signature_open(block.get("signature")) is not None:
                pending_signature = block["signature"]
            continue
        if kind == "redacted_thinking":
            if shared.signature_open(block.get("data")) is not None:
                pending_signature = block["data"]
            continue
        if kind == "tool_result":
            parts += _tool_result_parts(block, where=block_where, model=model, names=call_names)
            continue
        if kind == "tool_use":
            part = _function_call_part(block, where=block_where, names=call_names)
        elif kind == "text":
            text = _text_of(block, where=block_where)
            if not text:
                continue
            part = {"text": text}
        else:
            part = _media_part(block, kind=kind, where=block_where)
        if pending_signature is not None and ("functionCall" in part or "text" in part):
            part = shared.signed_part(part, pending_signature)
            pending_signature = None
        parts.append(part)
    # A signature with no part after it (Gemini's signature on the last part of an answer without
    # calls) is dropped: Gemini checks only function calls' signatures.
    return parts


def _text_of(block: Mapping[str, Any], *, where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise CodecError("A text block needs a string 'text'.", param=f"{where}.text")
    return text


def _function_call_part(
    block: Mapping[str, Any], *, where: str, names: dict[str, str]
) -> dict[str, Any]:
    call_id = block.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise CodecError("A tool_use block needs a string 'id'.", param=f"{where}.id")
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise CodecError("A tool_use block needs a string 'name'.", param=f"{where}.name")
    arguments = block.get("input", {})
    if not isinstance(arguments, Mapping):
        raise CodecError("A tool_use block's 'input' must be an object.", param=f"{where}.input")
    names[call_id] = name
    return {"functionCall": {"name": name, "args": dict(arguments)}}


def _tool_result_parts(
    block: Mapping[str, Any], *, where: str, model: str, names: dict[str, str]
) -> list[dict[str, Any]]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or call_id not in names:
        raise CodecError(
            "'tool_use_id' must name a tool_use block of an earlier assistant message.",
            param=f"{where}.tool_use_id",
        )
    content = block.get("content")
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, item in enumerate(content):
            item_where = f"{where}.content[{k}]"
            kind = item.get("type") if isinstance(item, Mapping) else None
            if not isinstance(kind, str) or kind not in _TOOL_RESULT_BLOCK_TYPES:
                raise CodecError(
                    f"Content block type {kind!r} is not supported in a tool_result.",
                    param=f"{item_where}.type",
                )
            assert isinstance(item, Mapping)
            if kind == "text":
                texts.append(_text_of(item, where=item_where))
            else:
                media.append(_media_part(item, kind=kind, where=item_where))
    elif content is not None:
        raise CodecError(
            "A tool_result's 'content' must be a string or an array of blocks.",
            param=f"{where}.content",
        )
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise CodecError("'is_error' must be a boolean.", param=f"{where}.is_error")
    # Gemini's documented keys: "output" for a result, "error" for a failure the model sees.
    response = {"error" if is_error else "output": "\n".join(texts)}
    function_response: dict[str, Any] = {"name": names[call_id], "response": response}
    major = shared.gemini_major_version(model)
    if media and major is not None and major >= 3:
        # Gemini 3 takes images and documents inside the function response (gemini-cli's
        # supportsMultimodalFunctionResponse); older models take them as parts beside it.
        function_response["parts"] = media
        return [{"functionResponse": function_response}]
    return [{"functionResponse": function_response}, *media]


def _media_part(block: Mapping[str, Any], *, kind: str, where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise CodecError(f"An {kind} block needs a 'source' object.", param=f"{where}.source")
    source_type = source.get("type")
    if source_type == "base64":
        mime_type, data = source.get("media_type"), source.get("data")
        if not isinstance(mime_type, str) or "/" not in mime_type:
            raise CodecError(
                "A base64 source needs a 'media_type'.", param=f"{where}.source.media_type"
            )
        if not isinstance(data, str) or not data:
            raise CodecError("A base64 source needs 'data'.", param=f"{where}.source.data")
        return {"inlineData": {"mimeType": mime_type, "data": data}}
    if source_type == "url":
        url = source.get("url")
        try:
            parsed = urlsplit(url) if isinstance(url, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.scheme.lower() not in ("http", "https") or not parsed.netloc:
            raise CodecError("A url source needs an http(s) 'url'.", param=f"{where}.source.url")
        mime_type = "application/pdf" if kind == "document" else _image_mime_of(parsed.path)
        return {"fileData": {"mimeType": mime_type, "fileUri": url}}
    if source_type == "text" and kind == "document":
        data = source.get("data")
        if not isinstance(data, str):
            raise CodecError("A text source needs string 'data'.", param=f"{where}.source.data")
        return {"text": data}
    raise CodecError(
        f"An {kind} source of type {source_type!r} cannot be sent to Gemini; send it as base64.",
        param=f"{where}.source.type",
    )


def _image_mime_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    # Gemini needs a MIME type for fileData; JPEG is the most common image format on the web.
    return _IMAGE_MIME_BY_EXTENSION.get(extension, "image/jpeg")


def _function_declarations(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise CodecError("'tools' must be an array.", param="tools")
    declarations = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping):
            raise CodecError("Each tool must be an object.", param=where)
        # Anthropic's typed tools (bash_*, web_search_*, text_editor_*, ...) are defined by
        # Anthropic, not by a schema the client sends: Gemini has nothing to run them with.
        if tool.get("type") not in (None, "custom") and "input_schema" not in tool:
            raise CodecError(
                f"Tool type {tool.get('type')!r} has no Gemini counterpart; define it with an "
                "input_schema.",
                param=f"{where}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise CodecError("A tool needs a string 'name'.", param=f"{where}.name")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise CodecError("'description' must be a string.", param=f"{where}.description")
        declarations.append(
            shared.function_declaration(
                name=name,
                description=description,
                schema=tool.get("input_schema"),
                param=f"{where}.input_schema",
            )
        )
    return declarations


def _tool_config(choice: Any, *, names: list[str]) -> dict[str, Any] | None:
    """Returns the toolConfig for tool_choice; disable_parallel_tool_use has no Gemini
    counterpart and is accepted without effect (Gemini may still call several tools)."""
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind not in (*_TOOL_CHOICE_MODES, "tool"):
        raise CodecError(
            "'tool_choice.type' must be auto, any, tool or none.", param="tool_choice.type"
        )
    assert isinstance(choice, Mapping)
    if not names:
        if kind in ("any", "tool"):
            raise CodecError(f"tool_choice {kind!r} needs at least one tool.", param="tool_choice")
        return None  # auto or none without tools: there is nothing to configure
    if kind != "tool":
        return {"functionCallingConfig": {"mode": _TOOL_CHOICE_MODES[str(kind)]}}
    name = choice.get("name")
    if not isinstance(name, str) or name not in names:
        raise CodecError("'tool_choice.name' must name one of the tools.", param="tool_choice.name")
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


def _generation_config(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    # Anthropic's range is 0-1; Gemini's 0-2 is accepted so that nothing Gemini can do is refused.
    for key, gemini_key, maximum in (("temperature", "temperature", 2.0), ("top_p", "topP", 1.0)):
        value = _number(body, key, maximum=maximum)
        if value is not None:
            config[gemini_key] = value
    top_k = _integer(body, "top_k", minimum=1)
    if top_k is not None:
        config["topK"] = top_k
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
            raise CodecError(
                "'stop_sequences' must be an array of strings.", param="stop_sequences"
            )
        if any(stop):
            config["stopSequences"] = [item for item in stop if item]
    output_config = body.get("output_config")
    if output_config is not None and not isinstance(output_config, Mapping):
        raise CodecError("'output_config' must be an object.", param="output_config")
    output_config = output_config or {}
    output_format = output_config.get("format")
    if output_format is not None:
        if not isinstance(output_format, Mapping) or output_format.get("type") != "json_schema":
            raise CodecError(
                "'output_config.format.type' must be json_schema.",
                param="output_config.format.type",
            )
        config.update(
            shared.json_output_config(
                output_format.get("schema"), param="output_config.format.schema"
            )
        )
    thinking_config = _thinking_config(
        body.get("thinking"), effort=output_config.get("effort"), model=model
    )
    if thinking_config is not None:
        config["thinkingConfig"] = thinking_config
    return config


def _thinking_config(thinking: Any, *, effort: Any, model: str) -> dict[str, Any] | None:
    """Returns the thinkingConfig for Anthropic's `thinking` and `output_config.effort`.

    enabled: its budget (shared.thinking_for_budget); adaptive: the effort's level, or Gemini's
    own dynamic thinking; disabled: off where the model can switch it off, else its lowest.
    """
    if effort is not None and effort not in _EFFORTS:
        raise CodecError(
            "'output_config.effort' must be low, medium, high, xhigh or max.",
            param="output_config.effort",
        )
    if thinking is None:
        return None if effort is None else shared.thinking_for_effort(_EFFORTS[effort], model=model)
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind not in ("enabled", "adaptive", "disabled"):
        raise CodecError(
            "'thinking.type' must be enabled, adaptive or disabled.", param="thinking.type"
        )
    assert isinstance(thinking, Mapping)
    if kind == "disabled":
        return shared.thinking_for_effort("none", model=model)
    if kind == "enabled":
        budget = _integer(thinking, "budget_tokens", minimum=1, param="thinking.budget_tokens")
        if budget is None:
            raise CodecError(
                "'thinking.budget_tokens' is required when thinking is enabled.",
                param="thinking.budget_tokens",
            )
        config = shared.thinking_for_budget(budget, model=model)
    elif effort is not None:
        config = shared.thinking_for_effort(_EFFORTS[effort], model=model)
    else:
        config = {"includeThoughts": True}
    if thinking.get("display") == "omitted":
        config.pop("includeThoughts", None)
    return config


def _integer(
    body: Mapping[str, Any], key: str, *, minimum: int, param: str | None = None
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CodecError(
            f"'{param or key}' must be an integer of at least {minimum}.", param=param or key
        )
    return value


def _number(body: Mapping[str, Any], key: str, *, maximum: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    # Written so that NaN fails the range check too.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= maximum:
        raise CodecError(f"'{key}' must be a number between 0 and {maximum:g}.", param=key)
    return float(value)


# --- response ------------------------------------------------------------------------------------


class _Blocks:
    """Turns Gemini parts, in order, into Anthropic content blocks and the stream events that
    build them; the one owner of where thinking blocks and their signatures go.

    A signature Gemini put on a part travels as the `signature` of a thinking block right
    before the block made from that part (an empty thinking block when there was no thought
    text), so that request_to_pivot can put it back on the same part.
    """

    def __init__(self, *, backend: str) -> None:
        self.backend = backend
        self.blocks: list[dict[str, Any]] = []
        self.tool_uses = 0
        self._open: str | None = None  # the type of the block still taking deltas

    def part(self, part: Any) -> list[dict[str, Any]]:
        """Returns the events for one Gemini part; other parts (inline images, code
        execution) have no Messages block and are skipped."""
        if not isinstance(part, Mapping):
            return []
        signature = part.get("thoughtSignature")
        token = (
            shared.signature_seal(signature, backend=self.backend)
            if isinstance(signature, str) and signature
            else None
        )
        call, text = part.get("functionCall"), part.get("text")
        events: list[dict[str, Any]] = []
        if isinstance(call, Mapping):
            events += self._sign(token)
            events += self._tool_use(call)
        elif isinstance(text, str) and part.get("thought") is True:
            if text:
                events += self._delta("thinking", {"type": "thinking_delta", "thinking": text})
            events += self._sign(token)
        elif isinstance(text, str):
            events += self._sign(token)
            if text:
                events += self._delta("text", {"type": "text_delta", "text": text})
        return events

    def close(self) -> list[dict[str, Any]]:
        """Returns the stop event of the block still open, if any."""
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": len(self.blocks) - 1}]

    def _start(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self.close()
        self.blocks.append(block)
        self._open = block["type"]
        # A copy: the block itself goes on growing with the deltas that follow.
        start = {"type": "content_block_start", "index": len(self.blocks) - 1}
        events.append({**start, "content_block": dict(block)})
        return events

    def _delta(self, kind: str, delta: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open != kind:
            empty = {"type": "text", "text": ""}
            if kind == "thinking":
                empty = {"type": "thinking", "thinking": "", "signature": ""}
            events += self._start(empty)
        block = self.blocks[-1]
        block[kind] = block[kind] + delta[kind]
        events.append(
            {"type": "content_block_delta", "index": len(self.blocks) - 1, "delta": delta}
        )
        return events

    def _sign(self, token: str | None) -> list[dict[str, Any]]:
        # A thinking block still open takes the signature (the thoughts led to the signed part);
        # a signed block is closed, so a later signature never overwrites it.
        if token is None:
            return []
        events: list[dict[str, Any]] = []
        if self._open != "thinking":
            events += self._start({"type": "thinking", "thinking": "", "signature": ""})
        self.blocks[-1]["signature"] = token
        index = len(self.blocks) - 1
        events.append(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "signature_delta", "signature": token},
            }
        )
        return events + self.close()

    def _tool_use(self, call: Mapping[str, Any]) -> list[dict[str, Any]]:
        name = call.get("name")
        arguments = call.get("args")
        arguments = dict(arguments) if isinstance(arguments, Mapping) else {}
        self.tool_uses += 1
        events = self._start(
            {"type": "tool_use", "id": tool_use_id(), "name": str(name or ""), "input": {}}
        )
        index = len(self.blocks) - 1
        # Gemini sends a call whole, so its input travels as one delta (Claude Code concatenates
        # the deltas and parses the result at the block's stop).
        partial = orjson.dumps(arguments, default=str).decode()
        events.append(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": partial},
            }
        )
        self.blocks[index]["input"] = arguments
        return events + self.close()


def tool_use_id() -> str:
    """Returns a fresh tool_use id: `toolu_` and 24 letters and digits, the shape real
    Anthropic accepts (the history may go there) and unique across conversations."""
    return f"toolu_{secrets.token_hex(12)}"


def _stop_reason(finish_reason: Any, *, blocked: bool, tool_uses: int) -> str:
    if blocked or finish_reason in _REFUSAL_REASONS:
        return "refusal"
    if finish_reason == "MAX_TOKENS":
        return "max_tokens"
    # Gemini has no tool-call reason (calls end with STOP), and a matched stop sequence is STOP
    # too without saying which one, so "stop_sequence" is never given.
    return "tool_use" if tool_uses else "end_turn"


def _usage(response: Mapping[str, Any] | None) -> dict[str, int]:
    usage = shared.usage_of(response) if response is not None else None
    usage = usage or shared.Usage()
    return {
        # Anthropic's input_tokens leaves out what was read from the cache.
        "input_tokens": max(usage.input_tokens - usage.cached_tokens, 0),
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def _first_candidate(response: Mapping[str, Any]) -> Mapping[str, Any] | None:
    # Anthropic has one answer per message; Rotator never asks Gemini for more.
    candidates = response.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    return first if isinstance(first, Mapping) else None


def _parts_of(candidate: Mapping[str, Any] | None) -> list[Any]:
    content = candidate.get("content") if candidate is not None else None
    parts = content.get("parts") if isinstance(content, Mapping) else None
    return parts if isinstance(parts, list) else []


def _blocked(response: Mapping[str, Any]) -> bool:
    feedback = response.get("promptFeedback")
    return isinstance(feedback, Mapping) and feedback.get("blockReason") is not None


def _message_head(meta: ReplyMeta) -> dict[str, Any]:
    return {
        "id": f"msg_{meta.request_id}",
        "type": "message",
        "role": "assistant",
        "model": meta.model,
    }


def response_from_pivot(response: Mapping[str, Any], *, meta: ReplyMeta) -> dict[str, Any]:
    """Returns the Messages API message for a Gemini GenerateContentResponse; odd upstream
    shapes are skipped, never raised."""
    response = response if isinstance(response, Mapping) else {}
    candidate = _first_candidate(response)
    blocks = _Blocks(backend=meta.backend)
    for part in _parts_of(candidate):
        blocks.part(part)
    return {
        **_message_head(meta),
        "content": blocks.blocks,
        "stop_reason": _stop_reason(
            candidate.get("finishReason") if candidate is not None else None,
            blocked=candidate is None and _blocked(response),
            tool_uses=blocks.tool_uses,
        ),
        "stop_sequence": None,
        "usage": _usage(response),
    }


def _event(payload: Mapping[str, Any]) -> bytes:
    # The SDKs dispatch on the SSE event name, not on the JSON type: both must be there.
    return (
        b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
    )


class StreamEncoder:
    """Encodes one streamed answer: message_start (on the first chunk, which carries the prompt's
    usage), the content block events, then message_delta and message_stop at the end."""

    content_type = "text/event-stream"

    def __init__(self, *, meta: ReplyMeta) -> None:
        self.meta = meta
        self._blocks = _Blocks(backend=meta.backend)
        self._started = False
        self._ended = False
        self._finish_reason: Any = None
        self._blocked = False
        self._last_usage: Mapping[str, Any] | None = None

    def feed(self, chunk: Mapping[str, Any]) -> bytes:
        if self._ended or not isinstance(chunk, Mapping):
            return b""
        # Read once at the end: Gemini repeats the running totals in every chunk.
        if isinstance(chunk.get("usageMetadata"), Mapping):
            self._last_usage = chunk
        out = self._start()
        candidate = _first_candidate(chunk)
        if candidate is None:
            self._blocked = self._blocked or _blocked(chunk)
            return out
        events: list[dict[str, Any]] = []
        for part in _parts_of(candidate):
            events += self._blocks.part(part)
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self._finish_reason = reason
        return out + b"".join(_event(event) for event in events)

    def finish(self) -> bytes:
        if self._ended:
            return b""
        out = self._start() + b"".join(_event(event) for event in self._blocks.close())
        self._ended = True
        stop_reason = _stop_reason(
            self._finish_reason, blocked=self._blocked, tool_uses=self._blocks.tool_uses
        )
        out += _event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                # Cumulative, as Anthropic's: the SDK overwrites message_start's counts with it.
                "usage": _usage(self._last_usage),
            }
        )
        return out + _event({"type": "message_stop"})

    def failure(self, error: RotatorError) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        # No message_stop after it: the SDK raises on the error event, and a partial answer must
        # not look complete.
        return _event(error_body(error))

    def keepalive(self) -> bytes:
        return b"" if self._ended else _event({"type": "ping"})

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message = {
            **_message_head(self.meta),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(self._last_usage),
        }
        return _event({"type": "message_start", "message": message})


# --- errors --------------------------------------------------------------------------------------


def _error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status in (503, 529):
        return "overloaded_error"
    if 400 <= status < 500:
        return "invalid_request_error"
    return "api_error"


def error_body(error: RotatorError) -> dict[str, Any]:
    """Returns Anthropic's error body for `error`, its type chosen from the status Rotator
    answers with (the view sends that status and any retry-after)."""
    message = error.message
    overflow = _CONTEXT_OVERFLOW.search(message) if error.status == 400 else None
    if overflow is not None:
        message = f"prompt is too long: {overflow.group(1)} tokens > {overflow.group(2)} maximum"
    return {"type": "error", "error": {"type": _error_type(error.status), "message": message}}


# --- models --------------------------------------------------------------------------------------


def model_info(native: Mapping[str, Any]) -> dict[str, Any]:
    """Returns Anthropic's model object for a native Gemini model description."""
    model_id = str(native.get("name", "")).removeprefix("models/")
    display_name = native.get("displayName")
    info: dict[str, Any] = {
        "type": "model",
        "id": model_id,
        "display_name": display_name
        if isinstance(display_name, str) and display_name
        else model_id,
        # Google publishes no release date; Anthropic documents the epoch for an unknown one.
        "created_at": "1970-01-01T00:00:00Z",
        "lifecycle": "active",
    }
    for key, gemini_key in (
        ("max_input_tokens", "inputTokenLimit"),
        ("max_tokens", "outputTokenLimit"),
    ):
        limit = native.get(gemini_key)
        if isinstance(limit, int) and not isinstance(limit, bool):
            info[key] = limit
    return info


def models_page(natives: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Returns Anthropic's model list: every model on one page (has_more false), so that
    clients paging with after_id stop after it."""
    data = [model_info(native) for native in natives]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
