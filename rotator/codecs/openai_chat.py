"""The OpenAI Chat Completions dialect as a codec of the pipeline: chat requests to the pivot
(request), the pivot's answers to chat.completion objects (response) and chunks (stream)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from common.errors import RotatorError, UpstreamUnreachable
from common.naming import model_bare
from rotator.codecs import shared
from rotator.codecs.base import CodecError, PivotRequest, ReplyMeta
from rotator.codecs.shared import EFFORTS

NAME = "openai_chat"


_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

# The content part types OpenAI defines for each role. Gemini's systemInstruction is text only.
_PART_TYPES_BY_ROLE = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": frozenset({"text"}),
    "function": frozenset({"text"}),
}

_IMAGE_MIME_BY_EXTENSION = shared.IMAGE_MIME_BY_EXTENSION
# OpenAI defines wav and mp3; the others are formats Gemini documents as accepted, passed along.
_AUDIO_MIME_BY_FORMAT = {
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "aiff": "audio/aiff",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
}

_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    # MALFORMED_FUNCTION_CALL (and its cousins UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS) end the
    # turn without a usable call: no tool_calls reach the client, so "tool_calls" would be a lie,
    # and no filter fired, so "content_filter" would be too. "stop" with whatever text came is the
    # honest OpenAI value; LANGUAGE, OTHER and reasons Google adds later fall back to it as well.
}


@dataclass(frozen=True)
class GeminiChatRequest:
    """A chat completion request in Gemini terms plus the OpenAI options Rotator acts on itself."""

    model: str
    request: dict[str, Any]
    stream: bool
    include_usage: bool
    n: int


# --- request -------------------------------------------------------------------------------------


def chat_request_to_gemini(body: Mapping[str, Any]) -> GeminiChatRequest:
    """Return the Gemini GenerateContentRequest (and model, stream options) for an OpenAI body.

    Raises CodecError naming the offending parameter when the body is not a chat request
    Gemini can serve. Changes nothing: the body is only read.
    """
    if not isinstance(body, Mapping):
        raise CodecError("The request body must be a JSON object.")
    model = _model_of(body.get("model"))
    system_parts, contents = _messages_translate(body.get("messages"))
    request: dict[str, Any] = {"contents": contents}
    if system_parts:
        request["systemInstruction"] = {"parts": system_parts}
    declarations = _function_declarations(body)
    if declarations:
        request["tools"] = [{"functionDeclarations": declarations}]
    tool_config = _tool_config(body, names=[declaration["name"] for declaration in declarations])
    if tool_config is not None:
        request["toolConfig"] = tool_config
    generation_config = _generation_config(body, model=model)
    if generation_config:
        request["generationConfig"] = generation_config
    safety_settings = _safety_settings(body)
    if safety_settings is not None:
        request["safetySettings"] = safety_settings
    n = _integer(body, "n", minimum=1)
    return GeminiChatRequest(
        model=model,
        request=request,
        # OpenAI streams only when asked; the bridges Rotator replaces defaulted to streaming.
        stream=_boolean(body, "stream") or False,
        include_usage=_include_usage(body.get("stream_options")),
        n=1 if n is None else n,
    )


def _model_of(value: Any) -> str:
    model = model_bare(value) if isinstance(value, str) else ""
    if not model:
        raise CodecError("'model' is required and must be a model name.", param="model")
    return model


def _include_usage(options: Any) -> bool:
    if options is None:
        return False
    if not isinstance(options, Mapping):
        raise CodecError("'stream_options' must be an object.", param="stream_options")
    return _boolean(options, "include_usage", param="stream_options.include_usage") or False


def _messages_translate(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (systemInstruction parts, contents) for OpenAI messages."""
    if not isinstance(messages, list) or not messages:
        raise CodecError("'messages' must be a non-empty array.", param="messages")
    system_parts: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    # Tool call id -> function name, so a tool message can name the function it answers (Gemini
    # matches functionResponse to functionCall by name; sending the call id was a bridge bug).
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise CodecError("Each message must be an object.", param=where)
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise CodecError(
                "A message role must be one of system, developer, user, assistant, tool, function.",
                param=f"{where}.role",
            )
        parts = _content_parts(message.get("content"), where=where, role=role)
        if role in ("system", "developer"):
            # Gemini has a place for instructions; a fake user turn would misattribute them.
            system_parts.extend(parts)
            continue
        if role == "assistant":
            gemini_role = "model"
            if not parts and isinstance(message.get("refusal"), str) and message["refusal"]:
                parts = [{"text": message["refusal"]}]
            parts += _assistant_call_parts(message, where=where, call_names=call_names)
        elif role == "tool":
            gemini_role = "user"
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in call_names:
                raise CodecError(
                    "'tool_call_id' must name a tool call of an earlier assistant message.",
                    param=f"{where}.tool_call_id",
                )
            parts = [_function_response(call_names[call_id], parts)]
        elif role == "function":
            gemini_role = "user"
            name = _function_name(message.get("name"), param=f"{where}.name")
            parts = [_function_response(name, parts)]
        else:
            gemini_role = "user"
        if not parts:
            continue
        # Merging consecutive same-role turns keeps Gemini's alternation happy and puts parallel
        # tool results into the one user turn that answers the model's parallel calls.
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    if not contents:
        if system_parts:
            # Only a system message (some clients send a lone prompt that way): Gemini wants a
            # user turn, so the instructions become the user's message and are answered.
            return [], [{"role": "user", "parts": system_parts}]
        raise CodecError(
            "'messages' must hold at least one message with content.", param="messages"
        )
    return system_parts, contents


def _content_parts(content: Any, *, where: str, role: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        # Gemini rejects empty text parts; an empty message simply contributes nothing.
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise CodecError(
            "'content' must be a string or an array of parts.", param=f"{where}.content"
        )
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        part_where = f"{where}.content[{j}]"
        if not isinstance(part, Mapping):
            raise CodecError("Each content part must be an object.", param=part_where)
        kind = part.get("type")
        if not isinstance(kind, str) or kind not in _PART_TYPES_BY_ROLE[role]:
            raise CodecError(
                f"Content part type {kind!r} is not supported in a {role} message.",
                param=f"{part_where}.type",
            )
        translated = _content_part(part, kind=kind, where=part_where)
        if translated is not None:
            parts.append(translated)
    return parts


def _content_part(part: Mapping[str, Any], *, kind: str, where: str) -> dict[str, Any] | None:
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise CodecError(f"A {kind} part needs a string '{kind}'.", param=f"{where}.{kind}")
        return {"text": text} if text else None
    if kind == "image_url":
        return _image_part(part.get("image_url"), where=f"{where}.image_url")
    if kind == "input_audio":
        return _audio_part(part.get("input_audio"), where=f"{where}.input_audio")
    return _file_part(part.get("file"), where=f"{where}.file")


def _image_part(image_url: Any, *, where: str) -> dict[str, Any]:
    # OpenAI sends {"url", "detail"}; some clients send the URL string itself. Gemini has no
    # per-image detail knob in GenerateContent, so detail is dropped.
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    param = f"{where}.url" if isinstance(image_url, Mapping) else where
    if isinstance(url, str) and url.startswith("data:"):
        mime_type, data = _data_url(url, param=param)
        return {"inlineData": {"mimeType": mime_type, "data": data}}
    if isinstance(url, str):
        try:
            parsed = urlsplit(url)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.scheme.lower() in ("http", "https") and parsed.netloc:
            return {"fileData": {"mimeType": _image_mime_of(parsed.path), "fileUri": url}}
    raise CodecError("An image must be a base64 data URL or an http(s) URL.", param=param)


def _image_mime_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    # Gemini needs a MIME type for fileData; JPEG is the most common image format on the web.
    return _IMAGE_MIME_BY_EXTENSION.get(extension, "image/jpeg")


def _audio_part(audio: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(audio, Mapping):
        raise CodecError("'input_audio' must be an object.", param=where)
    data = audio.get("data")
    if not isinstance(data, str) or not data:
        raise CodecError("'input_audio.data' must be base64 audio.", param=f"{where}.data")
    audio_format = audio.get("format")
    mime_type = _AUDIO_MIME_BY_FORMAT.get(audio_format) if isinstance(audio_format, str) else None
    if mime_type is None:
        raise CodecError(
            f"'input_audio.format' must be one of {', '.join(_AUDIO_MIME_BY_FORMAT)}.",
            param=f"{where}.format",
        )
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def _file_part(file: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(file, Mapping):
        raise CodecError("'file' must be an object.", param=where)
    file_data = file.get("file_data")
    if file_data is None and file.get("file_id") is not None:
        raise CodecError(
            "Uploaded file ids cannot be forwarded to Gemini; send the file inline as file_data.",
            param=f"{where}.file_id",
        )
    if not isinstance(file_data, str) or not file_data.startswith("data:"):
        raise CodecError(
            "'file_data' must be a base64 data URL such as data:application/pdf;base64,...",
            param=f"{where}.file_data",
        )
    mime_type, data = _data_url(file_data, param=f"{where}.file_data")
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def _data_url(url: str, *, param: str) -> tuple[str, str]:
    """Return (MIME type, base64 data) of a `data:<mime>[;...];base64,<data>` URL."""
    header, comma, data = url.removeprefix("data:").partition(",")
    fields = [item.strip() for item in header.split(";")]
    mime_type = fields[0].lower()
    if not comma or not data or "base64" not in fields[1:] or "/" not in mime_type:
        raise CodecError(
            "Expected a base64 data URL such as data:image/png;base64,...", param=param
        )
    return mime_type, data


def _assistant_call_parts(
    message: Mapping[str, Any], *, where: str, call_names: dict[str, str]
) -> list[dict[str, Any]]:
    """Return functionCall parts for an assistant message's tool_calls (or legacy function_call)."""
    parts: list[dict[str, Any]] = []
    tool_calls = message.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list):
        raise CodecError("'tool_calls' must be an array.", param=f"{where}.tool_calls")
    for j, call in enumerate(tool_calls or []):
        call_where = f"{where}.tool_calls[{j}]"
        if not isinstance(call, Mapping):
            raise CodecError("Each tool call must be an object.", param=call_where)
        if call.get("type") not in (None, "function"):
            raise CodecError(
                "Only function tool calls can be sent to Gemini.", param=f"{call_where}.type"
            )
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise CodecError("A tool call needs a string 'id'.", param=f"{call_where}.id")
        function = call.get("function")
        if not isinstance(function, Mapping):
            raise CodecError(
                "A tool call needs a 'function' object.", param=f"{call_where}.function"
            )
        name = _function_name(function.get("name"), param=f"{call_where}.function.name")
        part: dict[str, Any] = {
            "functionCall": {
                "name": name,
                "args": _arguments(
                    function.get("arguments"), param=f"{call_where}.function.arguments"
                ),
                # Gemini accepts a client's ids; the pipeline finds the call's signature by it.
                "id": call_id,
            }
        }
        signature = _signature_of(call)
        if signature is not None:
            # Only Google's own OpenAI endpoint sends signatures this way (Rotator's ids are
            # looked up in its store, which overrides this).
            part["thoughtSignature"] = signature
            part[shared.SIGNATURE_BACKEND_KEY] = "gemini_api"
        parts.append(part)
        call_names[call_id] = name
    function_call = message.get("function_call")
    if function_call is not None:
        # The deprecated single call has no id; its answer is a role "function" message by name.
        if not isinstance(function_call, Mapping):
            raise CodecError("'function_call' must be an object.", param=f"{where}.function_call")
        name = _function_name(function_call.get("name"), param=f"{where}.function_call.name")
        args = _arguments(function_call.get("arguments"), param=f"{where}.function_call.arguments")
        parts.append({"functionCall": {"name": name, "args": args}})
    return parts


def _signature_of(call: Mapping[str, Any]) -> str | None:
    """Return the Gemini thought signature a client sent back in a tool call's
    extra_content (Google's OpenAI-compatible shape), if any."""
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, Mapping) else None
    signature = google.get("thought_signature") if isinstance(google, Mapping) else None
    return signature if isinstance(signature, str) and signature else None


def _function_name(value: Any, *, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise CodecError("A function name must be a non-empty string.", param=param)
    return value


def _arguments(value: Any, *, param: str) -> dict[str, Any]:
    """Return tool call arguments as the JSON object Gemini's functionCall.args requires."""
    if isinstance(value, Mapping):
        return dict(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        # Clients send "" for a call without arguments.
        return {}
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    raise CodecError("Tool call arguments must be a JSON object.", param=param)


def _function_response(name: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    text = "\n".join(part["text"] for part in parts)
    # Gemini's response is a JSON object (a Struct): a tool answering with a JSON object passes
    # through as is; anything else (text, arrays, numbers) is wrapped, keeping the text verbatim.
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def _function_declarations(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise CodecError("'tools' must be an array.", param="tools")
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, Mapping):
            raise CodecError("Each tool must be an object.", param=f"tools[{i}]")
        if tool.get("type") != "function":
            raise CodecError(
                "Only tools of type 'function' can be sent to Gemini.", param=f"tools[{i}].type"
            )
        declarations.append(_declaration(tool.get("function"), where=f"tools[{i}].function"))
    functions = body.get("functions")  # the deprecated form of tools
    if functions is not None and not isinstance(functions, list):
        raise CodecError("'functions' must be an array.", param="functions")
    for i, function in enumerate(functions or []):
        declarations.append(_declaration(function, where=f"functions[{i}]"))
    return declarations


def _declaration(function: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(function, Mapping):
        raise CodecError("A function definition must be an object.", param=where)
    name = _function_name(function.get("name"), param=f"{where}.name")
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise CodecError("'description' must be a string.", param=f"{where}.description")
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise CodecError("'parameters' must be a JSON schema object.", param=f"{where}.parameters")
    return shared.function_declaration(
        name=name, description=description, schema=parameters, param=f"{where}.parameters"
    )


def _tool_config(body: Mapping[str, Any], *, names: list[str]) -> dict[str, Any] | None:
    choice, param = body.get("tool_choice"), "tool_choice"
    legacy = choice is None and body.get("function_call") is not None
    if legacy:
        choice, param = body.get("function_call"), "function_call"
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_CHOICE_MODES:
        if not names:
            if choice == "required":
                raise CodecError(f"'{param}' 'required' needs at least one tool.", param=param)
            return None  # "auto" or "none" without tools: there is nothing to configure.
        return {"functionCallingConfig": {"mode": _TOOL_CHOICE_MODES[choice]}}
    name = _forced_function_name(choice, legacy=legacy)
    if name is None:
        raise CodecError(
            f"'{param}' must be 'auto', 'none', 'required' or name one function.", param=param
        )
    if name not in names:
        raise CodecError(f"'{param}' names {name!r}, which is not among the tools.", param=param)
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


def _forced_function_name(choice: Any, *, legacy: bool) -> str | None:
    if not isinstance(choice, Mapping):
        return None
    if legacy:
        name = choice.get("name")  # function_call: {"name": X}
    else:
        function = choice.get("function") if choice.get("type") == "function" else None
        name = function.get("name") if isinstance(function, Mapping) else None
    return name if isinstance(name, str) and name else None


def _generation_config(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    # Both count thinking tokens in Gemini 2.5+, as max_completion_tokens counts reasoning tokens.
    max_tokens = _integer(body, "max_tokens", minimum=1)
    max_completion_tokens = _integer(body, "max_completion_tokens", minimum=1)
    if max_completion_tokens is not None or max_tokens is not None:
        config["maxOutputTokens"] = (
            max_completion_tokens if max_completion_tokens is not None else max_tokens
        )
    for key, gemini_key, minimum, maximum in (
        ("temperature", "temperature", 0.0, 2.0),
        ("top_p", "topP", 0.0, 1.0),
        ("presence_penalty", "presencePenalty", -2.0, 2.0),
        ("frequency_penalty", "frequencyPenalty", -2.0, 2.0),
    ):
        value = _number(body, key, minimum=minimum, maximum=maximum)
        if value is not None:
            config[gemini_key] = value
    stop = _stop_sequences(body.get("stop"))
    if stop:
        config["stopSequences"] = stop
    seed = _integer(body, "seed")
    if seed is not None:
        config["seed"] = seed
    n = _integer(body, "n", minimum=1)
    if n is not None and n > 1:
        # n == 1 is Gemini's default; leaving candidateCount out keeps models that reject the
        # field ("multiple candidates is not enabled") working for ordinary requests.
        config["candidateCount"] = n
    if _boolean(body, "logprobs"):
        config["responseLogprobs"] = True
    top_logprobs = _integer(body, "top_logprobs", minimum=0, maximum=20)
    if top_logprobs is not None:
        config["logprobs"] = top_logprobs
    config.update(_response_format(body.get("response_format")))
    thinking_config = _thinking_config(body, model=model)
    if thinking_config is not None:
        config["thinkingConfig"] = thinking_config
    return config


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise CodecError("'stop' must be a string or an array of strings.", param="stop")
    return [item for item in stop if item]


def _response_format(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CodecError("'response_format' must be an object.", param="response_format")
    kind = value.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind != "json_schema":
        raise CodecError(
            "'response_format.type' must be text, json_object or json_schema.",
            param="response_format.type",
        )
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise CodecError(
            "'response_format.json_schema' must be an object.", param="response_format.json_schema"
        )
    return shared.json_output_config(spec.get("schema"), param="response_format.json_schema.schema")


def _thinking_config(body: Mapping[str, Any], *, model: str) -> dict[str, Any] | None:
    effort = body.get("reasoning_effort")
    config = None
    if effort is not None:
        if not isinstance(effort, str) or effort not in EFFORTS:
            raise CodecError(
                "'reasoning_effort' must be one of none, minimal, low, medium, high, xhigh.",
                param="reasoning_effort",
            )
        config = shared.thinking_for_effort(effort, model=model)
    explicit, param = _google_option(body, "thinking_config")
    if explicit is not None:
        # Gemini's own knob replaces reasoning_effort whole: merging could send thinkingLevel and
        # thinkingBudget together, which Gemini rejects.
        if not isinstance(explicit, Mapping):
            raise CodecError(f"'{param}' must be an object.", param=param)
        expected_types = {"thinkingBudget": int, "includeThoughts": bool, "thinkingLevel": str}
        config = {}
        for key, value in explicit.items():
            if value is None:
                continue
            camel = _camel(str(key))
            expected = expected_types.get(camel)
            wrong_bool = expected is int and isinstance(value, bool)
            if expected is not None and (wrong_bool or not isinstance(value, expected)):
                raise CodecError(
                    f"'{param}.{key}' must be of type {expected.__name__}.", param=f"{param}.{key}"
                )
            config[camel] = value
    return config


def _google_option(body: Mapping[str, Any], key: str) -> tuple[Any, str]:
    """Return (value, param) of a Gemini-only option sent as google.<key>.

    The OpenAI SDKs merge extra_body into the body, so `google` arrives at the top level; raw HTTP
    clients copying the SDK examples send a literal `extra_body`. The top level wins.
    """
    for path, container in (
        ("google", body.get("google")),
        ("extra_body.google", _member(body.get("extra_body"), "google")),
    ):
        if container is None:
            continue
        if not isinstance(container, Mapping):
            raise CodecError(f"'{path}' must be an object.", param=path)
        if container.get(key) is not None:
            return container[key], f"{path}.{key}"
    return None, f"google.{key}"


def _safety_settings(body: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    value, param = _google_option(body, "safety_settings")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise CodecError(f"'{param}' must be an array of objects.", param=param)
    return [{_camel(str(key)): setting for key, setting in item.items()} for item in value]


def _member(container: Any, key: str) -> Any:
    return container.get(key) if isinstance(container, Mapping) else None


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _boolean(body: Mapping[str, Any], key: str, *, param: str | None = None) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise CodecError(f"'{param or key}' must be a boolean.", param=param or key)
    return value


def _integer(
    body: Mapping[str, Any], key: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodecError(f"'{key}' must be an integer.", param=key)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise CodecError(f"'{key}' must be {bounds}.", param=key)
    return value


def _number(body: Mapping[str, Any], key: str, *, minimum: float, maximum: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CodecError(f"'{key}' must be a number.", param=key)
    # Written so that NaN (which Python's json accepts) fails the range check too.
    if not minimum <= value <= maximum:
        raise CodecError(f"'{key}' must be between {minimum:g} and {maximum:g}.", param=key)
    return value


# --- response ------------------------------------------------------------------------------------


def gemini_response_to_chat(
    response: Mapping[str, Any], *, model: str, completion_id: str, created: int
) -> dict[str, Any]:
    """Return the OpenAI chat.completion object for a native Gemini GenerateContentResponse.

    Raises nothing for odd upstream shapes: unknown fields and malformed parts are skipped.
    """
    response = response if isinstance(response, Mapping) else {}
    choices: list[dict[str, Any]] = []
    for position, candidate in enumerate(_list(response.get("candidates"))):
        if not isinstance(candidate, Mapping):
            continue
        index = _candidate_index(candidate, position)
        texts: list[str] = []
        thoughts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        for kind, value in _candidate_items(candidate):
            if kind == "content":
                texts.append(value)
            elif kind == "reasoning_content":
                thoughts.append(value)
            else:
                tool_calls.append(_tool_call(value, completion_id, index, len(tool_calls)))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts else (None if tool_calls else ""),
        }
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        if tool_calls:
            message["tool_calls"] = tool_calls
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": _logprobs(candidate),
                "finish_reason": _finish_reason(
                    candidate.get("finishReason"), tool_calls=bool(tool_calls)
                ),
            }
        )
    if not choices:
        # No candidates: a blocked prompt (promptFeedback.blockReason) or an empty answer.
        blocked = _member(response.get("promptFeedback"), "blockReason") is not None
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": "content_filter" if blocked else "stop",
            }
        )
    choices.sort(key=lambda choice: int(choice["index"]))
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage_from_gemini(response.get("usageMetadata")),
    }


def usage_from_gemini(usage_metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return OpenAI usage for Gemini usageMetadata, or None when there is none.

    completion_tokens counts thoughts too, as OpenAI counts reasoning tokens in completion tokens.
    """
    if not isinstance(usage_metadata, Mapping):
        return None
    prompt = _count(usage_metadata.get("promptTokenCount"))
    thoughts = _count(usage_metadata.get("thoughtsTokenCount"))
    completion = _count(usage_metadata.get("candidatesTokenCount")) + thoughts
    total = usage_metadata.get("totalTokenCount")
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": _count(total) if _is_count(total) else prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }
    cached = usage_metadata.get("cachedContentTokenCount")
    if _is_count(cached):
        usage["prompt_tokens_details"] = {"cached_tokens": _count(cached)}
    return usage


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(value: Any) -> int:
    return int(value) if _is_count(value) else 0


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _candidate_index(candidate: Mapping[str, Any], position: int) -> int:
    # proto3 JSON leaves index 0 out, so a lone candidate usually has no index at all.
    index = candidate.get("index")
    return _count(index) if _is_count(index) else position


def _candidate_items(candidate: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Return a candidate's parts in order as ("content" | "reasoning_content", text) or
    ("tool_call", (name, args, signature, id)). Other parts (inline images, code execution) have no
    place in an OpenAI chat message and are skipped, as are Gemini's empty signature-only parts.
    """
    items: list[tuple[str, Any]] = []
    for part in _list(_member(candidate.get("content"), "parts")):
        if not isinstance(part, Mapping):
            continue
        call = part.get("functionCall")
        text = part.get("text")
        if isinstance(call, Mapping):
            signature = part.get("thoughtSignature")
            name = call.get("name")
            args = call.get("args")
            call_id = call.get("id")
            items.append(
                (
                    "tool_call",
                    (
                        name if isinstance(name, str) else "",
                        args if isinstance(args, Mapping) else {},
                        signature if isinstance(signature, str) and signature else None,
                        call_id if isinstance(call_id, str) and call_id else None,
                    ),
                )
            )
        elif isinstance(text, str) and text:
            items.append(("reasoning_content" if part.get("thought") is True else "content", text))
    return items


def _tool_call(
    call: tuple[str, Mapping[str, Any], str | None, str | None],
    completion_id: str,
    choice_index: int,
    call_index: int,
) -> dict[str, Any]:
    name, args, signature, given_id = call
    # The pipeline gives every call a short, plain id and keeps its signature server-side;
    # this fallback (also short and plain) serves callers without a pipeline.
    suffix = re.sub(r"[^A-Za-z0-9]", "", completion_id.removeprefix("chatcmpl-"))[:24]
    call_id = given_id or f"call_{suffix}_{choice_index}_{call_index}"
    tool_call: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {
            "name": name,
            "arguments": json.dumps(args, ensure_ascii=False, separators=(",", ":"), default=str),
        },
    }
    if signature is not None:
        # The shape Google's own OpenAI endpoint uses, for clients that echo unknown fields.
        tool_call["extra_content"] = {"google": {"thought_signature": signature}}
    return tool_call


def _finish_reason(reason: Any, *, tool_calls: bool) -> str:
    mapped = _FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    # A normal end with calls in the message is OpenAI's "tool_calls"; a cut-off or filtered
    # answer keeps its own reason even when it carries calls.
    return "tool_calls" if mapped == "stop" and tool_calls else mapped


def _logprobs(candidate: Mapping[str, Any]) -> dict[str, Any] | None:
    result = candidate.get("logprobsResult")
    if not isinstance(result, Mapping):
        return None
    top = _list(result.get("topCandidates"))
    content: list[dict[str, Any]] = []
    for position, chosen in enumerate(_list(result.get("chosenCandidates"))):
        if not isinstance(chosen, Mapping):
            continue
        step = top[position] if position < len(top) else None
        entry = _logprob(chosen)
        entry["top_logprobs"] = [
            _logprob(alternative)
            for alternative in _list(_member(step, "candidates"))
            if isinstance(alternative, Mapping)
        ]
        content.append(entry)
    return {"content": content, "refusal": None}


def _logprob(candidate: Mapping[str, Any]) -> dict[str, Any]:
    token = candidate.get("token")
    token = token if isinstance(token, str) else ""
    logprob = candidate.get("logProbability")
    if isinstance(logprob, bool) or not isinstance(logprob, int | float):
        logprob = 0.0
    return {
        "token": token,
        "logprob": float(logprob),
        "bytes": list(token.encode("utf-8", errors="replace")),
    }


# --- stream --------------------------------------------------------------------------------------


@dataclass
class _ChoiceState:
    started: bool = False
    finished: bool = False
    tool_calls: int = 0


class ChatStreamTranslator:
    """Feeds native Gemini stream events (already unwrapped from Code Assist's {"response": ...})
    and yields OpenAI chat.completion.chunk dicts.

    `usage` holds the latest usage seen (prompt_tokens, completion_tokens, total_tokens) for
    Rotator's counters, whether or not the client asked for a usage chunk.
    """

    def __init__(self, *, model: str, completion_id: str, created: int, include_usage: bool):
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self.usage: dict[str, int] | None = None
        self._usage_full: dict[str, Any] | None = None
        self._choices: dict[int, _ChoiceState] = {}
        self._finished = False
        self.unfinished = False

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return the chunks for one Gemini stream event; records its usage in `usage`."""
        if self._finished or not isinstance(event, Mapping):
            return []
        usage = usage_from_gemini(event.get("usageMetadata"))
        if usage is not None:
            self._usage_full = usage
            self.usage = {
                key: usage[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")
            }
        chunks: list[dict[str, Any]] = []
        candidates = [item for item in _list(event.get("candidates")) if isinstance(item, Mapping)]
        for position, candidate in enumerate(candidates):
            chunks += self._candidate_chunks(candidate, _candidate_index(candidate, position))
        if not candidates and _member(event.get("promptFeedback"), "blockReason") is not None:
            state = self._choices.setdefault(0, _ChoiceState())
            if not state.finished:
                chunks.append(self._close(0, state, "content_filter"))
        return chunks

    def finish(self) -> list[dict[str, Any]]:
        """Return the closing chunks: a finish_reason for any choice Gemini left open, then the
        usage chunk if it was asked for. `unfinished` tells whether Gemini ended the stream
        without any finish reason (the caller must not present that as a normal end)."""
        if self._finished:
            return []
        self._finished = True
        self.unfinished = not self._choices or any(
            not state.finished for state in self._choices.values()
        )
        if not self._choices:
            self._choices[0] = _ChoiceState()
        chunks = [
            self._close(index, state, "tool_calls" if state.tool_calls else "stop")
            for index, state in sorted(self._choices.items())
            if not state.finished
        ]
        if self.include_usage:
            chunks.append({**self._chunk_base(), "choices": [], "usage": self._usage_full})
        return chunks

    def _candidate_chunks(self, candidate: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
        state = self._choices.setdefault(index, _ChoiceState())
        if state.finished:
            return []
        deltas: list[dict[str, Any]] = []
        for kind, value in _candidate_items(candidate):
            if kind == "tool_call":
                # Each call gets its own index, counted per choice across the whole stream.
                call = _tool_call(value, self.completion_id, index, state.tool_calls)
                deltas.append({"tool_calls": [{"index": state.tool_calls, **call}]})
                state.tool_calls += 1
            elif deltas and list(deltas[-1]) == [kind]:
                deltas[-1][kind] += value
            else:
                deltas.append({kind: value})
        logprobs = _logprobs(candidate)
        chunks = []
        for delta in deltas:
            if not state.started:
                state.started = True
                delta = {"role": "assistant", **delta}
            chunks.append(self._chunk(index, delta, None, logprobs))
            logprobs = None  # the event's logprobs travel once, with its first chunk
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            chunks.append(
                self._close(index, state, _finish_reason(reason, tool_calls=state.tool_calls > 0))
            )
        return chunks

    def _close(self, index: int, state: _ChoiceState, reason: str) -> dict[str, Any]:
        delta: dict[str, Any] = {} if state.started else {"role": "assistant", "content": ""}
        state.started = state.finished = True
        return self._chunk(index, delta, reason, None)

    def _chunk(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None,
        logprobs: dict[str, Any] | None,
    ) -> dict[str, Any]:
        choice = {
            "index": index,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish_reason,
        }
        chunk: dict[str, Any] = {**self._chunk_base(), "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None  # as OpenAI: every chunk but the last carries usage null
        return chunk

    def _chunk_base(self) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }


# --- codec -------------------------------------------------------------------------------------


# The pipeline gives the calls of this dialect's answers short ids and keeps their
# signatures server-side (rotator.signatures).
CALL_IDS = True


def request_to_pivot(body: Mapping[str, Any]) -> PivotRequest:
    """Returns the pivot of a chat completion request; raises CodecError naming the field."""
    translated = chat_request_to_gemini(body)
    return PivotRequest(
        model=translated.model,
        body=shared.request_fit_for_model(translated.request, model=translated.model),
        stream=translated.stream,
        state={
            "include_usage": translated.include_usage,
            # The deprecated `functions` form is answered in its own shape (`function_call`).
            "legacy_functions": body.get("functions") is not None and not body.get("tools"),
        },
    )


def passthrough_body(
    body: Mapping[str, Any], *, model: str, stream: bool, client_wants_usage: bool
) -> dict[str, Any]:
    """The body for Google's OpenAI-compatible endpoint (the API-key shortcut): the client's
    own, less what Google refuses for the model, and asking for usage on a stream always (the
    counters need it; the passthrough encoder hides it from clients that did not ask)."""
    upstream = shared.openai_body_fit_for_model(dict(body), model=model)
    if stream and not client_wants_usage:
        options = body.get("stream_options")
        upstream["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return upstream


def response_from_pivot(response: Mapping[str, Any], *, meta: ReplyMeta) -> dict[str, Any]:
    chat = gemini_response_to_chat(
        response,
        model=meta.model,
        completion_id=f"chatcmpl-{meta.request_id}",
        created=meta.created,
    )
    if meta.state.get("legacy_functions"):
        for choice in chat["choices"]:
            _legacy_function_call(choice["message"], choice)
    return chat


def _legacy_function_call(message: dict[str, Any], choice: dict[str, Any]) -> None:
    """A tool-call answer in the deprecated single-call shape (`functions` requests)."""
    calls = message.pop("tool_calls", None)
    if calls:
        message["function_call"] = calls[0]["function"]
        if choice.get("finish_reason") == "tool_calls":
            choice["finish_reason"] = "function_call"


def _event(chunk: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class StreamEncoder:
    content_type = "text/event-stream"

    def __init__(self, *, meta: ReplyMeta) -> None:
        self.legacy_functions = bool(meta.state.get("legacy_functions"))
        self.translator = ChatStreamTranslator(
            model=meta.model,
            completion_id=f"chatcmpl-{meta.request_id}",
            created=meta.created or int(time.time()),
            include_usage=bool(meta.state.get("include_usage")),
        )

    def feed(self, chunk: Mapping[str, Any]) -> bytes:
        return b"".join(_event(self._shaped(item)) for item in self.translator.feed(chunk))

    def _shaped(self, chunk: dict[str, Any]) -> dict[str, Any]:
        if self.legacy_functions:
            for choice in chunk.get("choices", []):
                delta = choice.get("delta", {})
                calls = delta.pop("tool_calls", None)
                if calls:
                    delta["function_call"] = calls[0]["function"]
                if choice.get("finish_reason") == "tool_calls":
                    choice["finish_reason"] = "function_call"
        return chunk

    def finish(self) -> bytes:
        closing_chunks = self.translator.finish()
        if self.translator.unfinished:
            closing_chunks = [chunk for chunk in closing_chunks if not chunk["choices"]]
        closing = b"".join(_event(self._shaped(item)) for item in closing_chunks)
        if self.translator.unfinished:
            # Gemini stopped without a finish reason: the answer may be cut short, and gemini-cli
            # treats it as a failure. Say so instead of a normal "stop" (no [DONE]: the SDK raises).
            cut = UpstreamUnreachable(
                "Upstream ended the stream without a finish reason; the answer may be incomplete.",
                code="upstream_unfinished",
            )
            return closing + self.failure(cut)
        return closing + b"data: [DONE]\n\n"

    def failure(self, error: RotatorError) -> bytes:
        # No [DONE] after an error: the openai SDK raises on the error event.
        return _event(error_body(error))

    def keepalive(self) -> bytes:
        return b": keep-alive\n\n"


def error_body(error: RotatorError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.openai_type,
            "param": error.param,
            "code": error.code,
        }
    }
