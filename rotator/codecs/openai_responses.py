"""The OpenAI Responses API (`/v1/responses`, Codex CLI and the openai SDK) as a codec."""

import mimetypes
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from common import clock
from common.errors import RotatorError
from rotator.codecs import openai_chat, shared
from rotator.codecs.base import CodecError, PivotRequest, ReplyMeta

NAME = "openai_responses"

_MESSAGE_ROLES = {"user": "user", "assistant": "model", "system": "system", "developer": "system"}
# Assistant history normally carries output_text; some clients replay it as input_text.
_PART_TYPES_BY_ROLE = {
    "user": frozenset({"input_text", "input_image", "input_file"}),
    "model": frozenset({"output_text", "input_text", "refusal"}),
    "system": frozenset({"input_text", "text"}),
}
_WEB_SEARCH_TYPES = frozenset({"web_search", "web_search_2025_08_26", "web_search_preview"})
_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
# The one string parameter a custom (freeform) tool is offered to Gemini with.
_CUSTOM_INPUT = "input"
_CONTENT_FILTER_REASONS = shared.CONTENT_FILTER_REASONS
_IMAGE_MIME_BY_EXTENSION = shared.IMAGE_MIME_BY_EXTENSION
# Options with no Gemini counterpart that change nothing about the answer: accepted, echoed
# where the Response object has a place for them, otherwise ignored.
# previous_response_id is resolved before the codec (its items are already in `input`).
_ECHOED = ("previous_response_id", "prompt_cache_key", "safety_identifier", "user")
# Options that need state or features Rotator does not have: refused by name rather than
# silently ignored, because the answer would differ from what the client expects.
_REFUSED = {
    "conversation": "Conversations are not supported; send the full input (store: false).",
    "prompt": "Stored prompt templates are not supported; send instructions and input.",
}


# --- request ------------------------------------------------------------------------------------


def request_to_pivot(body: Mapping[str, Any]) -> PivotRequest:
    """Returns the Gemini request for a Responses API body; raises CodecError naming the field
    Gemini cannot take. Reads `body` only."""
    if not isinstance(body, Mapping):
        raise CodecError("The request body must be a JSON object.")
    model = body.get("model")
    model = model.removeprefix("models/") if isinstance(model, str) else ""
    if not model:
        raise CodecError("'model' is required and must be a model name.", param="model")
    for key, message in _REFUSED.items():
        if body.get(key) is not None:
            raise CodecError(message, param=key)
    if body.get("background") is True:
        raise CodecError("Background responses are not supported.", param="background")
    metadata = _metadata(body.get("metadata"))

    tools = _Tools.of(body.get("tools"), model=model)
    history = _History(model=model)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise CodecError("'instructions' must be a string.", param="instructions")
    if instructions:
        history.system.append({"text": instructions})
    history.add_input(body.get("input"))

    pivot: dict[str, Any] = {"contents": history.contents}
    if history.system:
        pivot["systemInstruction"] = {"parts": history.system}
    tool_config = tools.config(body.get("tool_choice"))
    if tools.gemini:
        pivot["tools"] = tools.gemini
    if tool_config:
        pivot["toolConfig"] = tool_config
    generation_config = _generation_config(body, model=model, has_functions=bool(tools.names))
    if generation_config:
        pivot["generationConfig"] = generation_config

    parallel = _boolean(body, "parallel_tool_calls")
    store = _boolean(body, "store")
    text = body.get("text")
    echo: dict[str, Any] = {
        "instructions": instructions,
        "tools": tools.echo,
        "tool_choice": body.get("tool_choice") if body.get("tool_choice") is not None else "auto",
        # Gemini has no switch for it (it may answer with several calls either way).
        "parallel_tool_calls": True if parallel is None else parallel,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": metadata,
        # The API's default is to store; whether Rotator keeps the answer is the caller's concern.
        "store": True if store is None else store,
        "text": text if isinstance(text, Mapping) else {"format": {"type": "text"}},
        "reasoning": _reasoning_echo(body.get("reasoning")),
        "truncation": body.get("truncation") if body.get("truncation") == "auto" else "disabled",
        **{key: body[key] for key in _ECHOED if isinstance(body.get(key), str)},
    }
    return PivotRequest(
        model=model,
        body=pivot,
        stream=_boolean(body, "stream") or False,
        state={
            "custom_tools": sorted(tools.custom),
            "namespaced": tools.namespaced,
            "echo": echo,
        },
    )


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise CodecError("'metadata' must be an object of string values.", param="metadata")
    return dict(value)


class _Tools:
    """The client's tools in Gemini terms, and what the Response object echoes of them."""

    def __init__(self) -> None:
        self.declarations: list[dict[str, Any]] = []
        self.names: list[str] = []
        self.custom: set[str] = set()
        # Gemini name -> [namespace, name] of the tools a namespace groups.
        self.namespaced: dict[str, list[str]] = {}
        self.web_search = False
        self.gemini: list[dict[str, Any]] = []
        self.echo: list[dict[str, Any]] = []
        self.model = ""

    @classmethod
    def of(cls, tools: Any, *, model: str) -> "_Tools":
        result = cls()
        result.model = model
        if tools is None:
            return result
        if not isinstance(tools, list):
            raise CodecError("'tools' must be an array.", param="tools")
        for i, tool in enumerate(tools):
            result.add(tool, where=f"tools[{i}]")
        if result.declarations:
            result.gemini.append({"functionDeclarations": result.declarations})
        if result.web_search:
            major = _major(model)
            if result.declarations and (major is None or major < 3):
                # Gemini 2.x answers 400 "Tool use with function calling is unsupported".
                raise CodecError(
                    f"{model} cannot combine web search with function tools; remove the "
                    'web_search tool (in Codex: web_search = "disabled") or use a Gemini 3 model.',
                    param="tools",
                )
            result.gemini.append({"googleSearch": {}})
        return result

    def add(self, tool: Any, *, where: str, namespace: str | None = None) -> None:
        if not isinstance(tool, Mapping):
            raise CodecError("Each tool must be an object.", param=where)
        kind = _text_of(tool.get("type"))
        if kind in _WEB_SEARCH_TYPES and namespace is None:
            self.web_search = True
            self.echo.append(dict(tool))
            return
        if kind == "namespace" and namespace is None:
            self.namespace_add(tool, where=where)
            return
        if kind not in ("function", "custom"):
            raise CodecError(
                f"Tools of type {kind!r} cannot be served by Gemini; use function, custom or "
                "web_search tools.",
                param=f"{where}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise CodecError("A tool needs a non-empty string 'name'.", param=f"{where}.name")
        if namespace is not None:
            self.namespaced[_qualified(namespace, name)] = [namespace, name]
            name = _qualified(namespace, name)
        if name in self.names:
            raise CodecError(f"Two tools are named {name!r}.", param=f"{where}.name")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise CodecError("'description' must be a string.", param=f"{where}.description")
        if kind == "function":
            schema = tool.get("parameters")
            param = f"{where}.parameters"
        else:
            schema = _custom_schema(tool.get("format"), where=f"{where}.format")
            param = f"{where}.format"
            self.custom.add(name)
        self.declarations.append(
            shared.function_declaration(
                name=name, description=description, schema=schema, param=param
            )
        )
        self.names.append(name)
        if namespace is None:
            self.echo.append(dict(tool))

    def namespace_add(self, tool: Mapping[str, Any], *, where: str) -> None:
        """A namespace's tools become functions named `<namespace>__<name>`: Gemini has no
        grouping, and the answer names them back apart."""
        namespace, tools = tool.get("name"), tool.get("tools")
        if not isinstance(namespace, str) or not namespace:
            raise CodecError("A namespace needs a non-empty string 'name'.", param=f"{where}.name")
        if not isinstance(tools, list):
            raise CodecError("A namespace needs a 'tools' array.", param=f"{where}.tools")
        for j, inner in enumerate(tools):
            self.add(inner, where=f"{where}.tools[{j}]", namespace=namespace)
        self.echo.append(dict(tool))

    def config(self, choice: Any) -> dict[str, Any]:
        config: dict[str, Any] = {}
        calling = self._function_calling(choice)
        if calling is not None:
            config["functionCallingConfig"] = calling
        if self.web_search and self.declarations:
            # Gemini 3 combines built-in and function tools only when asked to.
            config["includeServerSideToolInvocations"] = True
        return config

    def _function_calling(self, choice: Any) -> dict[str, Any] | None:
        if choice is None:
            return None
        if isinstance(choice, str) and choice in _TOOL_CHOICE_MODES:
            if not self.names:
                if choice == "required":
                    raise CodecError("'tool_choice' 'required' needs a tool.", param="tool_choice")
                return None
            return {"mode": _TOOL_CHOICE_MODES[choice]}
        kind = choice.get("type") if isinstance(choice, Mapping) else None
        if kind in ("function", "custom"):
            name = choice.get("name")
            if name not in self.names or (kind == "custom") != (name in self.custom):
                raise CodecError(
                    f"'tool_choice' names {name!r}, which is not a {kind} tool of this request.",
                    param="tool_choice.name",
                )
            return {"mode": "ANY", "allowedFunctionNames": [name]}
        if kind == "allowed_tools":
            return self._allowed(choice)
        raise CodecError(
            "'tool_choice' must be auto, none, required, a function or custom tool, or "
            "allowed_tools; hosted tools cannot be forced on Gemini.",
            param="tool_choice",
        )

    def _allowed(self, choice: Mapping[str, Any]) -> dict[str, Any]:
        mode, listed = choice.get("mode"), choice.get("tools")
        if mode not in ("auto", "required") or not isinstance(listed, list):
            raise CodecError(
                "'allowed_tools' needs mode auto or required and a tools array.",
                param="tool_choice",
            )
        names = [item.get("name") for item in listed if isinstance(item, Mapping)]
        allowed = [name for name in self.names if name in names]
        if not allowed:
            raise CodecError("'allowed_tools' names none of the tools.", param="tool_choice.tools")
        if mode == "required":
            return {"mode": "ANY", "allowedFunctionNames": allowed}
        # Gemini takes allowedFunctionNames only in ANY mode; in AUTO the others are withheld.
        self.declarations[:] = [item for item in self.declarations if item["name"] in allowed]
        return {"mode": "AUTO"}


def _custom_schema(format_: Any, *, where: str) -> dict[str, Any]:
    """The one string parameter a freeform tool becomes; its grammar, which Gemini cannot
    enforce, is put in the parameter's description so that the model can follow it."""
    description = "The tool's raw input as free text (not JSON)."
    if format_ is not None:
        if not isinstance(format_, Mapping) or format_.get("type") not in ("text", "grammar"):
            raise CodecError("A custom tool's format must be text or grammar.", param=where)
        definition = format_.get("definition")
        if format_.get("type") == "grammar" and isinstance(definition, str) and definition:
            syntax = format_.get("syntax") if isinstance(format_.get("syntax"), str) else "lark"
            description += f" It must match this {syntax} grammar:\n{definition}"
    return {
        "type": "object",
        "properties": {_CUSTOM_INPUT: {"type": "string", "description": description}},
        "required": [_CUSTOM_INPUT],
    }


class _History:
    """Input items turned into Gemini contents: same-role neighbours coalesced, tool outputs
    named after their calls, sealed signatures put back where Gemini left them."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.system: list[dict[str, Any]] = []
        self.contents: list[dict[str, Any]] = []
        # call_id -> function name: Gemini matches a functionResponse to its call by name.
        self.call_names: dict[str, str] = {}
        # A reasoning item's token, waiting for the model part that Gemini signed.
        self.pending_token: str | None = None

    def add_input(self, value: Any) -> None:
        if isinstance(value, str):
            if value:
                self.user([{"text": value}])
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.add_item(item, where=f"input[{i}]")
        else:
            raise CodecError("'input' must be a string or an array of items.", param="input")
        self.token_flush()
        if not self.contents:
            raise CodecError("'input' must hold at least one message with content.", param="input")

    def add_item(self, item: Any, *, where: str) -> None:
        if not isinstance(item, Mapping):
            raise CodecError("Each input item must be an object.", param=where)
        kind = item.get("type") or "message"
        if kind == "message":
            self.message(item, where=where)
        elif kind in ("function_call", "custom_tool_call"):
            self.call(item, where=where, custom=kind == "custom_tool_call")
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self.output(item, where=where)
        elif kind == "reasoning":
            token = item.get("encrypted_content")
            if shared.signature_open(token) is not None:
                self.token_flush()
                self.pending_token = token
        elif kind == "web_search_call":
            pass  # a record that a search ran; its results have no place in Gemini's history
        else:
            raise CodecError(
                f"Input items of type {kind!r} cannot be sent to Gemini.", param=f"{where}.type"
            )

    def message(self, item: Mapping[str, Any], *, where: str) -> None:
        role = _MESSAGE_ROLES.get(_text_of(item.get("role")))
        if role is None:
            raise CodecError(
                "A message role must be user, assistant, system or developer.",
                param=f"{where}.role",
            )
        parts = self.content_parts(item.get("content"), role=role, where=f"{where}.content")
        if role == "system":
            # Gemini has one place for instructions; a fake user turn would misattribute them.
            self.system.extend(parts)
        elif role == "model":
            for part in parts:
                self.model_part(part)
        else:
            self.user(parts)

    def content_parts(self, content: Any, *, role: str, where: str) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [{"text": content}] if content else []
        if not isinstance(content, list):
            raise CodecError("'content' must be a string or an array of parts.", param=where)
        parts: list[dict[str, Any]] = []
        for j, part in enumerate(content):
            part_where = f"{where}[{j}]"
            kind = _text_of(part.get("type")) if isinstance(part, Mapping) else ""
            if kind not in _PART_TYPES_BY_ROLE[role]:
                raise CodecError(
                    f"Content part type {kind!r} is not supported here.", param=f"{part_where}.type"
                )
            translated = _media_part(part, where=part_where)
            if translated is not None:
                parts.append(translated)
        return parts

    def call(self, item: Mapping[str, Any], *, where: str, custom: bool) -> None:
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not call_id:
            raise CodecError("A tool call needs a string 'call_id'.", param=f"{where}.call_id")
        if not isinstance(name, str) or not name:
            raise CodecError("A tool call needs a string 'name'.", param=f"{where}.name")
        namespace = item.get("namespace")
        if isinstance(namespace, str) and namespace:
            name = _qualified(namespace, name)
        if custom:
            raw = item.get("input")
            if not isinstance(raw, str):
                raise CodecError(
                    "A custom tool call needs a string 'input'.", param=f"{where}.input"
                )
            args: dict[str, Any] = {_CUSTOM_INPUT: raw}
        else:
            args = _arguments(item.get("arguments"), param=f"{where}.arguments")
        self.call_names[call_id] = name
        self.model_part({"functionCall": {"name": name, "args": args}})

    def output(self, item: Mapping[str, Any], *, where: str) -> None:
        call_id = item.get("call_id")
        name = self.call_names.get(call_id) if isinstance(call_id, str) else None
        if name is None:
            raise CodecError(
                f"No tool call found for function call output with call_id {call_id!r}.",
                param=f"{where}.call_id",
            )
        value = item.get("output")
        if isinstance(value, str):
            texts, media = [value], []
        elif isinstance(value, list):
            parts = self.content_parts(value, role="user", where=f"{where}.output")
            texts = [part["text"] for part in parts if "text" in part]
            media = [part for part in parts if "text" not in part]
        else:
            raise CodecError(
                "A tool output must be a string or an array of parts.", param=f"{where}.output"
            )
        response: dict[str, Any] = {
            "functionResponse": {"name": name, "response": {"output": "\n".join(texts)}}
        }
        major = _major(self.model)
        if media and major is not None and major >= 3:
            # Gemini 3 takes images inside the function response (gemini-cli's rule).
            response["functionResponse"]["parts"] = media
            media = []
        # Older models see them as parts of the same user turn, after the response.
        self.user([response, *media])

    def model_part(self, part: dict[str, Any]) -> None:
        if self.pending_token is not None:
            part = shared.signed_part(part, self.pending_token)
            self.pending_token = None
        self.append("model", [part])

    def user(self, parts: list[dict[str, Any]]) -> None:
        self.token_flush()
        self.append("user", parts)

    def token_flush(self) -> None:
        """A token no model part followed came from a signature Gemini put on an empty last
        part: it goes back on the last part of that model turn, if that part is unsigned."""
        token, self.pending_token = self.pending_token, None
        if token is None or not self.contents or self.contents[-1]["role"] != "model":
            return
        parts = self.contents[-1]["parts"]
        if "thoughtSignature" not in parts[-1]:
            parts[-1] = shared.signed_part(parts[-1], token)

    def append(self, role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        # Coalescing keeps Gemini's alternation and puts the answers to parallel calls into the
        # one user turn Gemini requires.
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})


def _media_part(part: Mapping[str, Any], *, where: str) -> dict[str, Any] | None:
    kind = part["type"]
    if kind in ("input_text", "output_text", "text", "refusal"):
        key = "refusal" if kind == "refusal" else "text"
        text = part.get(key)
        if not isinstance(text, str):
            raise CodecError(f"A {kind} part needs a string '{key}'.", param=f"{where}.{key}")
        return {"text": text} if text else None
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise CodecError(
                "An input_image needs an image_url (a data URL or an https URL); uploaded "
                "file ids cannot be forwarded to Gemini.",
                param=f"{where}.image_url",
            )
        return _url_part(url, param=f"{where}.image_url", image=True)
    file_data, file_url = part.get("file_data"), part.get("file_url")
    if isinstance(file_data, str) and file_data:
        if file_data.startswith("data:"):
            return _url_part(file_data, param=f"{where}.file_data", image=False)
        filename = part.get("filename")
        mime_type = mimetypes.guess_type(filename)[0] if isinstance(filename, str) else None
        if mime_type is None:
            raise CodecError(
                "Send 'file_data' as a data URL (data:application/pdf;base64,...) or give a "
                "'filename' with a known extension.",
                param=f"{where}.file_data",
            )
        return {"inlineData": {"mimeType": mime_type, "data": file_data}}
    if isinstance(file_url, str) and file_url:
        return _url_part(file_url, param=f"{where}.file_url", image=False)
    raise CodecError(
        "An input_file needs file_data or file_url; uploaded file ids cannot be forwarded.",
        param=where,
    )


def _url_part(url: str, *, param: str, image: bool) -> dict[str, Any]:
    if url.startswith("data:"):
        header, comma, data = url.removeprefix("data:").partition(",")
        fields = [item.strip() for item in header.split(";")]
        mime_type = fields[0].lower()
        if not comma or not data or "base64" not in fields[1:] or "/" not in mime_type:
            raise CodecError(
                "Expected a base64 data URL such as data:image/png;base64,...", param=param
            )
        return {"inlineData": {"mimeType": mime_type, "data": data}}
    try:
        parsed = urlsplit(url)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme.lower() not in ("http", "https") or not parsed.netloc:
        raise CodecError("Expected a base64 data URL or an http(s) URL.", param=param)
    name = parsed.path.rsplit("/", 1)[-1].lower()
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    if image:
        # Gemini needs a MIME type for fileData; JPEG is the most common image format on the web.
        mime_type = _IMAGE_MIME_BY_EXTENSION.get(extension, "image/jpeg")
    else:
        # PDFs are what the Responses API documents input_file for.
        mime_type = mimetypes.guess_type(name)[0] or "application/pdf"
    return {"fileData": {"mimeType": mime_type, "fileUri": url}}


def _arguments(value: Any, *, param: str) -> dict[str, Any]:
    """Returns a call's arguments as the JSON object Gemini's functionCall.args requires."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    parsed = None
    if isinstance(value, str):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = None
    if not isinstance(parsed, dict):
        raise CodecError("'arguments' must be a JSON object encoded as a string.", param=param)
    return parsed


def _generation_config(
    body: Mapping[str, Any], *, model: str, has_functions: bool
) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_output_tokens = body.get("max_output_tokens")
    if max_output_tokens is not None:
        if isinstance(max_output_tokens, bool) or not isinstance(max_output_tokens, int):
            raise CodecError("'max_output_tokens' must be an integer.", param="max_output_tokens")
        if max_output_tokens < 1:
            raise CodecError("'max_output_tokens' must be at least 1.", param="max_output_tokens")
        # Both count reasoning tokens, so the value passes unchanged.
        config["maxOutputTokens"] = max_output_tokens
    for key, gemini_key, maximum in (("temperature", "temperature", 2.0), ("top_p", "topP", 1.0)):
        value = body.get(key)
        if value is None:
            continue
        # Written so that NaN fails the range check too.
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= maximum
        ):
            raise CodecError(f"'{key}' must be a number between 0 and {maximum:g}.", param=key)
        config[gemini_key] = value
    config.update(_text_format(body.get("text"), model=model, has_functions=has_functions))
    thinking = _thinking(body.get("reasoning"), model=model)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def _text_format(text: Any, *, model: str, has_functions: bool) -> dict[str, Any]:
    if text is None:
        return {}
    if not isinstance(text, Mapping):
        raise CodecError("'text' must be an object.", param="text")
    format_ = text.get("format")
    if format_ is None:
        return {}
    kind = format_.get("type") if isinstance(format_, Mapping) else None
    if kind == "text":
        return {}
    if kind not in ("json_object", "json_schema"):
        raise CodecError(
            "'text.format.type' must be text, json_object or json_schema.", param="text.format.type"
        )
    major = _major(model)
    if has_functions and (major is None or major < 3):
        # Gemini 2.x: "Function calling with a response mime type: 'application/json' is
        # unsupported"; said here, before a request is spent on it.
        raise CodecError(
            f"{model} cannot combine JSON output with function tools; use a Gemini 3 model.",
            param="text.format",
        )
    if kind == "json_object":
        return shared.json_output_config(None, param="text.format")
    schema = format_.get("schema")
    if schema is None:
        raise CodecError("A json_schema format needs a 'schema'.", param="text.format.schema")
    return shared.json_output_config(schema, param="text.format.schema")


def _thinking(reasoning: Any, *, model: str) -> dict[str, Any]:
    if reasoning is None:
        return {}
    if not isinstance(reasoning, Mapping):
        raise CodecError("'reasoning' must be an object.", param="reasoning")
    effort = reasoning.get("effort")
    summary = reasoning.get("summary") or reasoning.get("generate_summary")
    summary = summary if summary is None else _text_of(summary)
    effort = effort if effort is None else _text_of(effort)
    if summary is not None and summary not in _SUMMARIES:
        raise CodecError(
            "'reasoning.summary' must be auto, concise or detailed.", param="reasoning.summary"
        )
    if effort is None:
        return {"includeThoughts": True} if summary is not None else {}
    if effort not in _EFFORTS:
        raise CodecError(
            "'reasoning.effort' must be one of none, minimal, low, medium, high, xhigh, max.",
            param="reasoning.effort",
        )
    # "max" is above Gemini's scale as xhigh is; both get the highest Gemini offers.
    return shared.thinking_for_effort("xhigh" if effort == "max" else effort, model=model)


def _reasoning_echo(reasoning: Any) -> dict[str, Any] | None:
    if not isinstance(reasoning, Mapping):
        return None
    return {
        "effort": reasoning.get("effort"),
        "summary": reasoning.get("summary") or reasoning.get("generate_summary"),
    }


def _boolean(body: Mapping[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise CodecError(f"'{key}' must be a boolean.", param=key)
    return value


def _qualified(namespace: str, name: str) -> str:
    """The Gemini function name of a tool inside a namespace."""
    return f"{namespace}__{name}"


def _text_of(value: Any) -> str:
    """`value` if it is a string, else "": lets a membership test meet any JSON safely."""
    return value if isinstance(value, str) else ""


def _major(model: str) -> int | None:
    match = re.match(r"gemini-(\d+)", model)
    return int(match.group(1)) if match else None


# --- response -----------------------------------------------------------------------------------


class _Output:
    """Builds the Response's output items from Gemini parts, in order, and (when streaming)
    the events announcing them. One builder serves both, so both say the same thing."""

    def __init__(self, *, meta: ReplyMeta, stream: bool) -> None:
        self.meta = meta
        self.stream = stream
        self.custom_tools = frozenset(meta.state.get("custom_tools", ()))
        self.namespaced: Mapping[str, list[str]] = meta.state.get("namespaced", {})
        self.items: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.blocked = False
        # The latest usageMetadata seen: Gemini repeats the running totals in every chunk, so
        # only the last counts, and it is read once, when the Response object is built.
        self.usage_metadata: Mapping[str, Any] | None = None
        self.id_base = re.sub(r"[^A-Za-z0-9]", "", meta.request_id)[:32]

    def response(self, response: Mapping[str, Any]) -> None:
        """Takes in one pivot response or stream chunk."""
        if not isinstance(response, Mapping):
            return
        if isinstance(response.get("usageMetadata"), Mapping):
            self.usage_metadata = response
        candidates = response.get("candidates")
        candidate = candidates[0] if isinstance(candidates, list) and candidates else None
        if not isinstance(candidate, Mapping):
            feedback = response.get("promptFeedback")
            if isinstance(feedback, Mapping) and feedback.get("blockReason") is not None:
                self.blocked = True
            return
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, Mapping) else None
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, Mapping):
                self.part(part)
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self.finish_reason = reason

    def part(self, part: Mapping[str, Any]) -> None:
        signature = part.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        call = part.get("functionCall")
        text = part.get("text")
        if isinstance(call, Mapping):
            if signature is not None:
                self.reasoning_sign(signature)
            self.call(call)
        elif isinstance(text, str) and text and part.get("thought") is True:
            self.thought(text)
            if signature is not None:
                self.reasoning_sign(signature)
        elif isinstance(text, str) and text:
            if signature is not None:
                self.reasoning_sign(signature)
            self.text(text)
        elif signature is not None:
            # Gemini's signature-only part (often its own stream chunk): kept on a reasoning item.
            self.reasoning_sign(signature)

    def reasoning_sign(self, signature: str) -> None:
        """Puts the signature on the open reasoning item, or on a new one, and closes it: the
        item the next part follows, so that the client sends the signature back before it."""
        item = self.open if self.open is not None and self.open["type"] == "reasoning" else None
        if item is None or item.get("encrypted_content") is not None:
            item = self.item_open({"type": "reasoning", "id": self.item_id("rs"), "summary": []})
        item["encrypted_content"] = shared.signature_seal(signature, backend=self.meta.backend)
        self.item_close("completed")

    def thought(self, text: str) -> None:
        item = self.open
        if item is None or item["type"] != "reasoning":
            item = self.item_open({"type": "reasoning", "id": self.item_id("rs"), "summary": []})
        if not item["summary"]:
            item["summary"].append({"type": "summary_text", "text": ""})
            self.event(
                "response.reasoning_summary_part.added",
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
        item["summary"][0]["text"] += text
        self.event("response.reasoning_summary_text.delta", summary_index=0, delta=text)

    def text(self, text: str) -> None:
        item = self.open
        if item is None or item["type"] != "message":
            item = self.item_open(
                {
                    "type": "message",
                    "id": self.item_id("msg"),
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                }
            )
            item["content"].append(_output_text(""))
            self.event("response.content_part.added", content_index=0, part=_output_text(""))
        item["content"][0]["text"] += text
        self.event("response.output_text.delta", content_index=0, delta=text, logprobs=[])

    def call(self, call: Mapping[str, Any]) -> None:
        name = _text_of(call.get("name"))
        given = call.get("args")
        args: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        call_id = "call_" + secrets.token_hex(12)
        custom = name in self.custom_tools
        # A namespaced tool is answered under its own name, with its namespace beside it.
        namespace, name = self.namespaced.get(name, (None, name))
        if custom:
            raw = args.get(_CUSTOM_INPUT)
            # The model was offered one string parameter; anything else is passed on as JSON
            # rather than lost.
            value = raw if isinstance(raw, str) else _json(args)
            kind, field, item_id = "custom_tool_call", "input", self.item_id("ctc")
            item = {"type": kind, "id": item_id, "call_id": call_id, "name": name, "input": ""}
            if namespace is not None:
                item["namespace"] = namespace
            self.item_open(item)
            item["input"] = value
            self.event("response.custom_tool_call_input.delta", delta=value)
            self.event("response.custom_tool_call_input.done", input=value)
        else:
            value, field = _json(args), "arguments"
            item = {
                "type": "function_call",
                "id": self.item_id("fc"),
                "call_id": call_id,
                "name": name,
                "arguments": "",
                "status": "in_progress",
            }
            if namespace is not None:
                item["namespace"] = namespace
            self.item_open(item)
            item[field] = value
            # Gemini sends a call whole, so one delta carries all of it.
            self.event("response.function_call_arguments.delta", delta=value)
            self.event("response.function_call_arguments.done", name=name, arguments=value)
        self.item_close("completed")

    def item_id(self, prefix: str) -> str:
        return f"{prefix}_{self.id_base}{len(self.items)}"

    def item_open(self, item: dict[str, Any]) -> dict[str, Any]:
        self.item_close("completed")
        self.items.append(item)
        self.open = item
        if self.stream:
            self.event("response.output_item.added", item=_copy(item))
        return item

    def item_close(self, status: str) -> None:
        item, self.open = self.open, None
        if item is None:
            return
        if "status" in item:
            item["status"] = status
        if item["type"] == "message":
            part = item["content"][0]
            self.event("response.output_text.done", content_index=0, text=part["text"], logprobs=[])
            self.event("response.content_part.done", content_index=0, part=_copy(part))
        elif item["type"] == "reasoning":
            item.setdefault("encrypted_content", None)
            for index, summary in enumerate(item["summary"]):
                self.event(
                    "response.reasoning_summary_text.done",
                    summary_index=index,
                    text=summary["text"],
                )
                self.event(
                    "response.reasoning_summary_part.done", summary_index=index, part=_copy(summary)
                )
        self.event("response.output_item.done", item=_copy(item))

    def event(self, kind: str, **fields: Any) -> None:
        """Records a stream event about the last item: the only one that is ever open."""
        if not self.stream:
            return
        event: dict[str, Any] = {"type": kind, "output_index": len(self.items) - 1}
        if "item" not in fields:
            event["item_id"] = self.items[-1]["id"]
        event.update(fields)
        self.events.append(event)

    def status(self) -> tuple[str, str | None]:
        """(status, incomplete reason) of the answer so far."""
        if self.finish_reason == "MAX_TOKENS":
            return "incomplete", "max_output_tokens"
        if self.blocked or self.finish_reason in _CONTENT_FILTER_REASONS:
            return "incomplete", "content_filter"
        return "completed", None

    def body(
        self, *, status: str, reason: str | None, error: dict[str, Any] | None
    ) -> dict[str, Any]:
        return _response_object(
            meta=self.meta,
            output=self.items,
            status=status,
            reason=reason,
            usage=shared.usage_of(self.usage_metadata) if self.usage_metadata else None,
            error=error,
        )


def response_from_pivot(response: Mapping[str, Any], *, meta: ReplyMeta) -> dict[str, Any]:
    """Returns the Response object for a pivot (Gemini) response."""
    output = _Output(meta=meta, stream=False)
    output.response(response)
    status, reason = output.status()
    output.item_close("completed" if status == "completed" else "incomplete")
    return output.body(status=status, reason=reason, error=None)


def _response_object(
    *,
    meta: ReplyMeta,
    output: list[dict[str, Any]],
    status: str,
    reason: str | None,
    usage: shared.Usage | None,
    error: dict[str, Any] | None,
) -> dict[str, Any]:
    echo = meta.state.get("echo", {})
    body: dict[str, Any] = {
        "id": response_id(meta.request_id),
        "object": "response",
        "created_at": meta.created,
        "status": status,
        "model": meta.model,
        # Not copied: only final items and the empty output of the first events reach here.
        "output": output,
        "error": error,
        "incomplete_details": {"reason": reason} if reason is not None else None,
        "instructions": echo.get("instructions"),
        "metadata": echo.get("metadata", {}),
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "tool_choice": echo.get("tool_choice", "auto"),
        "tools": echo.get("tools", []),
        "temperature": echo.get("temperature"),
        "top_p": echo.get("top_p"),
        "max_output_tokens": echo.get("max_output_tokens"),
        "reasoning": echo.get("reasoning"),
        "store": echo.get("store", True),
        "text": echo.get("text", {"format": {"type": "text"}}),
        "truncation": echo.get("truncation", "disabled"),
        "usage": _usage(usage),
    }
    for key in _ECHOED:
        if key in echo:
            body[key] = echo[key]
    if status == "completed":
        body["completed_at"] = int(clock.now().timestamp())
    return body


def response_id(request_id: str) -> str:
    """Returns the Response id for a request: the request id, so logs and ids agree."""
    return "resp_" + re.sub(r"[^A-Za-z0-9]", "", request_id)


def _usage(usage: shared.Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    # Items change while they stream; an event must show the item as it was when sent.
    copied: dict[str, Any] = orjson.loads(orjson.dumps(value))
    return copied


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


# --- stream -------------------------------------------------------------------------------------


class StreamEncoder:
    """Pivot stream chunks in, the Responses API's typed SSE events out."""

    content_type = "text/event-stream"

    def __init__(self, *, meta: ReplyMeta) -> None:
        self.output = _Output(meta=meta, stream=True)
        self.sequence = 0
        self.started = False
        self.ended = False
        # The Response object of the terminal event, once sent (what `store: true` keeps).
        self.final: dict[str, Any] | None = None

    def feed(self, chunk: Mapping[str, Any]) -> bytes:
        if self.ended:
            return b""
        head = self._start()
        self.output.response(chunk)
        return head + self._drain()

    def finish(self) -> bytes:
        if self.ended:
            return b""
        head = self._start()
        status, reason = self.output.status()
        self.output.item_close("completed" if status == "completed" else "incomplete")
        body = self.final = self.output.body(status=status, reason=reason, error=None)
        self.ended = True
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return head + self._drain() + self._frame({"type": kind, "response": body})

    def failure(self, error: RotatorError) -> bytes:
        if self.ended:
            return b""
        head = self._start()
        self.output.item_close("incomplete")
        body = self.final = self.output.body(
            status="failed", reason=None, error=_failure_error(error)
        )
        self.ended = True
        return head + self._drain() + self._frame({"type": "response.failed", "response": body})

    def keepalive(self) -> bytes:
        # An SSE comment: every client ignores it, and it keeps proxies and idle timers quiet.
        return b": keepalive\n\n"

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        body = self.output.body(status="in_progress", reason=None, error=None)
        return self._frame({"type": "response.created", "response": body}) + self._frame(
            {"type": "response.in_progress", "response": body}
        )

    def _drain(self) -> bytes:
        events, self.output.events = self.output.events, []
        return b"".join(self._frame(event) for event in events)

    def _frame(self, event: dict[str, Any]) -> bytes:
        event["sequence_number"] = self.sequence
        self.sequence += 1
        return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), orjson.dumps(event))


def _failure_error(error: RotatorError) -> dict[str, Any]:
    # The SDK types `code` as a closed list; of it, these are the two a gateway can mean.
    # Codex waits and retries on rate_limit_exceeded, reading the delay from the message.
    code = "rate_limit_exceeded" if error.status == 429 else "server_error"
    message = error.message
    if error.retry_after_seconds is not None and "try again in" not in message.lower():
        message = f"{message} Please try again in {error.retry_after_seconds}s."
    return {"code": code, "message": message, "param": error.param, "type": error.openai_type}


# The Responses API answers errors in the same shape as chat completions.
error_body = openai_chat.error_body
