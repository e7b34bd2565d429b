"""What Google refuses in a generation request, with Google's status, paths and wording."""

import base64
import binascii
import re
import secrets
from typing import Any

from .errors import BAD_REQUEST, google_error

GEMINI_API = "gemini-api"
CODE_ASSIST = "code-assist"
# What gemini-cli and Vertex send for calls that never had a signature; AI Studio's FAQ also
# names the second one, Vertex (and so, we assume, Code Assist) only the first.
SKIP_SIGNATURE = "skip_thought_signature_validator"
_SKIP_SIGNATURES = {
    GEMINI_API: frozenset({SKIP_SIGNATURE, "context_engineering_is_the_way_to_go"}),
    CODE_ASSIST: frozenset({SKIP_SIGNATURE}),
}
# Real signatures are encrypted blobs; the fake's are base64 of this tag, the backend that
# minted it and some noise, so a test can see which backend signed a part.
_SIGNATURE_TAG = b"fake-thought-signature/"
SIGNATURE_MISSING = (
    "Function call is missing a thought_signature in functionCall parts. This is required for "
    "tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}`, position {position}. "
    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
SIGNATURE_INVALID = "Invalid thought signature"
SIGNATURE_CORRUPTED = "Corrupted thought signature"
RESPONSE_COUNT = (
    "Please ensure that the number of function response parts is equal to the number of "
    "function call parts of the function call turn."
)
CALL_ORDER = (
    "Please ensure that function call turn comes immediately after a user turn or after a "
    "function response turn."
)
RESPONSE_ORDER = (
    "Please ensure that function response turn comes immediately after a function call turn."
)
JSON_WITH_TOOLS = "Function calling with a response mime type: 'application/json' is unsupported"
BUILTIN_WITH_TOOLS_2 = "Tool use with function calling is unsupported"
BUILTIN_WITH_TOOLS_3 = (
    "Please enable tool_config.include_server_side_tool_invocations to use Built-in tools with "
    "Function calling."
)
# Wording below is not quoted from a captured response (Google's own is unknown); the status
# and the fact of the refusal are documented.
THINKING_LEVEL_UNSUPPORTED = "Thinking level is not supported for this model."
THINKING_BOTH = "You can only set one of thinking budget and thinking level."

# The OpenAPI-subset Schema proto (`parameters`, `responseSchema`), camelCase → snake_case.
# `additionalProperties`, `$ref` and `$defs` are absent on purpose: Google refused them
# through 2025, and a gateway must not rely on the newer leniency (use the JSON Schema fields).
_SCHEMA_FIELDS = {
    "type": "type",
    "format": "format",
    "title": "title",
    "description": "description",
    "nullable": "nullable",
    "enum": "enum",
    "items": "items",
    "minItems": "min_items",
    "maxItems": "max_items",
    "properties": "properties",
    "required": "required",
    "minProperties": "min_properties",
    "maxProperties": "max_properties",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "example": "example",
    "anyOf": "any_of",
    "propertyOrdering": "property_ordering",
    "default": "default",
    "minimum": "minimum",
    "maximum": "maximum",
}
_SCHEMA_NAMES = frozenset(_SCHEMA_FIELDS) | frozenset(_SCHEMA_FIELDS.values())
_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
_TYPE_PROTO = "type.googleapis.com/google.ai.generativelanguage.v1beta.Type"
_LEVEL_PROTO = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta.ThinkingConfig.ThinkingLevel"
)
_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
_FUNCTION_CALL_FIELDS = frozenset({"name", "args", "id"})
_BUILTIN_TOOLS = ("googleSearch", "google_search", "urlContext", "url_context", "codeExecution")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def _get(data: Any, camel: str, snake: str) -> Any:
    # The proto JSON parser takes both spellings of every field.
    if not isinstance(data, dict):
        return None
    return data[camel] if camel in data else data.get(snake)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def model_version(model: str) -> float:
    """Return the Gemini generation of `model` (2.5 for `gemini-2.5-pro`), 0 if not Gemini."""
    match = re.match(r"gemini-(\d+(?:\.\d+)?)", model)
    return float(match.group(1)) if match else 0.0


def model_signs(model: str) -> bool:
    """Return whether `model` signs its answers and enforces signatures (Gemini 3 and later)."""
    return model_version(model) >= 3


# -- thought signatures --------------------------------------------------------------------


def signature_mint(*, backend: str) -> str:
    """Return a new thought signature as `backend` (GEMINI_API or CODE_ASSIST) would mint it."""
    raw = _SIGNATURE_TAG + backend.encode() + b"/" + secrets.token_bytes(12)
    return base64.b64encode(raw).decode()


def signature_backend(signature: str) -> str | None:
    """Return the backend that minted a fake signature, None when it is not one."""
    try:
        raw = base64.b64decode(signature + "=" * (-len(signature) % 4), altchars=b"-_")
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_SIGNATURE_TAG):
        return None
    backend = raw[len(_SIGNATURE_TAG) :].split(b"/", 1)[0].decode(errors="replace")
    return backend if backend in (GEMINI_API, CODE_ASSIST) else None


def _base64_ok(value: str) -> bool:
    # Proto bytes take the standard and the URL-safe alphabet, with or without padding.
    return bool(_BASE64.fullmatch(value)) and len(value.rstrip("=")) % 4 != 1


def _signature_refusal(signature: str, *, backend: str) -> str | None:
    if signature in _SKIP_SIGNATURES[backend]:
        return None
    minted_by = signature_backend(signature)
    if minted_by is None:
        return SIGNATURE_CORRUPTED
    if minted_by != backend:
        # API-key and Code Assist signatures use incompatible encryption (gemini-cli).
        return SIGNATURE_INVALID
    return None


def current_turn_start(contents: list[dict[str, Any]]) -> int:
    """Return the index after the last user content with text: where the current turn begins."""
    for index in range(len(contents) - 1, -1, -1):
        content = contents[index]
        if content.get("role", "user") != "user":
            continue
        if any(isinstance(p.get("text"), str) for p in _dicts(content.get("parts"))):
            return index + 1
    return 0


# -- schemas ---------------------------------------------------------------------------------


def _schema_parse(node: Any, at: str, lines: list[str]) -> None:
    """Append the proto-parsing errors of a classic Schema at proto path `at`."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key not in _SCHEMA_NAMES:
            lines.append(f"Unknown name \"{key}\" at '{at}': Cannot find field.")
            continue
        if key in ("type", "items", "properties") and isinstance(value, list):
            lines.append(
                f"Unknown name \"{key}\" at '{at}': "
                "Proto field is not repeating, cannot start list."
            )
            continue
        if key == "type" and isinstance(value, str) and value.upper() not in _TYPES:
            lines.append(f"Invalid value at '{at}.type' ({_TYPE_PROTO}), \"{value}\"")
    properties = node.get("properties")
    if isinstance(properties, dict):
        # Proto JSON shows map entries by position: properties[0].value.
        for index, child in enumerate(properties.values()):
            _schema_parse(child, f"{at}.properties[{index}].value", lines)
    _schema_parse(node.get("items"), f"{at}.items", lines)
    for index, child in enumerate(_get(node, "anyOf", "any_of") or []):
        _schema_parse(child, f"{at}.any_of[{index}]", lines)


def _schema_check(node: Any, path: str, lines: list[str], *, root: bool) -> None:
    """Append the semantic errors of a classic Schema at `path` (Google's validator lines)."""
    if not isinstance(node, dict):
        return
    raw_type = node.get("type")
    kind = raw_type.upper() if isinstance(raw_type, str) else None
    any_of = _get(node, "anyOf", "any_of")
    properties = node.get("properties")
    required = node.get("required")
    if kind is None and not any_of:
        lines.append(
            f"{path}.type: must be specified when not using one_of, any_of or all_of fields"
        )
    if properties is not None and kind != "OBJECT":
        lines.append(f"{path}.properties: only allowed for OBJECT type")
    if required and kind != "OBJECT":
        lines.append(f"{path}.required: only allowed for OBJECT type")
    if kind == "OBJECT" and properties == {} and not root:
        lines.append(f"{path}.properties: should be non-empty for OBJECT type")
    if kind == "OBJECT" and isinstance(required, list):
        defined = properties if isinstance(properties, dict) else {}
        for index, name in enumerate(required):
            if name not in defined:
                lines.append(f"{path}.required[{index}]: property is not defined")
    if kind == "ARRAY" and "items" not in node:
        lines.append(f"{path}.items: missing field.")
    for index, value in enumerate(node.get("enum") or []):
        if value == "":
            lines.append(f"{path}.enum[{index}]: cannot be empty")
    if isinstance(properties, dict):
        for name, child in properties.items():
            _schema_check(child, f"{path}.properties[{name}]", lines, root=False)
    _schema_check(node.get("items"), f"{path}.items", lines, root=False)
    for index, child in enumerate(any_of or []):
        _schema_check(child, f"{path}.any_of[{index}]", lines, root=False)


def _pointer_resolves(root: Any, ref: str) -> bool:
    if not ref.startswith("#"):
        # Remote references are never fetched.
        return False
    node = root
    for token in [t for t in ref[1:].split("/") if t]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def _json_schema_refs(node: Any, where: list[str], root: Any, lines: list[str], path: str) -> None:
    """Append a line for each `$ref` in a JSON Schema that points at nothing."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not _pointer_resolves(root, ref):
            lines.append(f"{path}: reference to undefined schema at {'.'.join(where) or '.'}")
        for key, child in node.items():
            if key not in ("$ref", "enum", "const", "default", "examples", "required"):
                _json_schema_refs(child, [*where, key], root, lines, path)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            _json_schema_refs(child, [*where, str(index)], root, lines, path)


# -- the request -------------------------------------------------------------------------------


def _proto_error(lines: list[str], fields: list[str]) -> dict[str, Any]:
    messages = [
        line if line.startswith("Invalid value") else f"Invalid JSON payload received. {line}"
        for line in lines
    ]
    violations = [
        {"field": field, "description": message}
        for field, message in zip(fields, messages, strict=True)
    ]
    return google_error(
        400,
        "INVALID_ARGUMENT",
        "\n".join(messages),
        [{"@type": BAD_REQUEST, "fieldViolations": violations}],
    )


def _invalid(message: str) -> dict[str, Any]:
    return google_error(400, "INVALID_ARGUMENT", message)


def _declarations(request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for t, tool in enumerate(_dicts(request.get("tools"))):
        declarations = _get(tool, "functionDeclarations", "function_declarations")
        for d, declaration in enumerate(_dicts(declarations)):
            found.append((f"tools[{t}].function_declarations[{d}]", declaration))
    return found


def _proto_refusal(request: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    """Return the 400 for what Google's JSON-to-proto parser refuses, else None."""
    lines: list[str] = []
    for path, declaration in _declarations(request):
        _schema_parse(declaration.get("parameters"), f"{prefix}{path}.parameters", lines)
        _schema_parse(declaration.get("response"), f"{prefix}{path}.response", lines)
    config = _get(request, "generationConfig", "generation_config")
    _schema_parse(
        _get(config, "responseSchema", "response_schema"),
        f"{prefix}generation_config.response_schema",
        lines,
    )
    level = _get(
        _get(config, "thinkingConfig", "thinking_config"), "thinkingLevel", "thinking_level"
    )
    if isinstance(level, str) and level.upper() not in _LEVELS:
        at = f"{prefix}generation_config.thinking_config.thinking_level"
        lines.append(f"Invalid value at '{at}' ({_LEVEL_PROTO}), \"{level}\"")
    for c, content in enumerate(_dicts(request.get("contents"))):
        for p, part in enumerate(_dicts(content.get("parts"))):
            at = f"{prefix}contents[{c}].parts[{p}]"
            call = _get(part, "functionCall", "function_call")
            for key in call if isinstance(call, dict) else ():
                if key not in _FUNCTION_CALL_FIELDS:
                    lines.append(
                        f"Unknown name \"{key}\" at '{at}.function_call': Cannot find field."
                    )
            signature = _get(part, "thoughtSignature", "thought_signature")
            if signature is not None and not (isinstance(signature, str) and _base64_ok(signature)):
                shown = f'"{signature}"' if isinstance(signature, str) else str(signature)
                lines.append(
                    f"Invalid value at '{at}.thought_signature' (TYPE_BYTES), "
                    f"Base64 decoding failed for {shown}"
                )
    if not lines:
        return None
    fields = [re.search(r"at '([^']*)'", line).group(1) for line in lines]  # type: ignore[union-attr]
    return _proto_error(lines, fields)


def _schema_refusal(request: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    """Return the 400 listing every semantic schema error, one `* ...` line each, else None."""
    lines: list[str] = []
    for path, declaration in _declarations(request):
        classic = declaration.get("parameters")
        json_schema = _get(declaration, "parametersJsonSchema", "parameters_json_schema")
        if classic is not None and json_schema is not None:
            lines.append(
                f"{path}.parameters_json_schema: parameters and parameters_json_schema cannot "
                "both be set"
            )
        _schema_check(classic, f"{path}.parameters", lines, root=True)
        _schema_check(declaration.get("response"), f"{path}.response", lines, root=True)
        _json_schema_refs(json_schema, [], json_schema, lines, f"{path}.parameters_json_schema")
        response_json = _get(declaration, "responseJsonSchema", "response_json_schema")
        _json_schema_refs(response_json, [], response_json, lines, f"{path}.response_json_schema")
    config = _get(request, "generationConfig", "generation_config")
    response_schema = _get(config, "responseSchema", "response_schema")
    response_json = _get(config, "responseJsonSchema", "response_json_schema")
    at = "generation_config"
    _schema_check(response_schema, f"{at}.response_schema", lines, root=True)
    if response_json is not None:
        if response_schema is not None:
            lines.append(
                f"{at}.response_json_schema: response_schema and response_json_schema cannot "
                "both be set"
            )
        if _get(config, "responseMimeType", "response_mime_type") != "application/json":
            lines.append(
                f"{at}.response_mime_type: must be application/json when response_json_schema "
                "is set"
            )
        _json_schema_refs(response_json, [], response_json, lines, f"{at}.response_json_schema")
    if not lines:
        return None
    root = prefix or "GenerateContentRequest."
    return _invalid("".join(f"* {root}{line}\n" for line in lines))


def _model_refusal(request: dict[str, Any], model: str) -> dict[str, Any] | None:
    """Return the 400 for an option this model family refuses, else None."""
    version = model_version(model)
    config = _get(request, "generationConfig", "generation_config")
    config = config if isinstance(config, dict) else {}
    for camel, snake in (
        ("presencePenalty", "presence_penalty"),
        ("frequencyPenalty", "frequency_penalty"),
    ):
        value = _get(config, camel, snake)
        if version >= 2.5 and isinstance(value, int | float) and value != 0:
            target = "this model" if version >= 3 else f"models/{model}"
            return _invalid(f"Penalty is not enabled for {target}")
    declares = bool(_declarations(request))
    builtin = any(
        any(key in tool for key in _BUILTIN_TOOLS) for tool in _dicts(request.get("tools"))
    )
    mime = _get(config, "responseMimeType", "response_mime_type")
    if declares and mime == "application/json" and version < 3:
        return _invalid(JSON_WITH_TOOLS)
    if declares and builtin:
        if version < 3:
            return _invalid(BUILTIN_WITH_TOOLS_2)
        tool_config = _get(request, "toolConfig", "tool_config")
        invocations = _get(
            tool_config, "includeServerSideToolInvocations", "include_server_side_tool_invocations"
        )
        if invocations is not True:
            return _invalid(BUILTIN_WITH_TOOLS_3)
    return _thinking_refusal(_get(config, "thinkingConfig", "thinking_config"), model, version)


def _thinking_refusal(thinking: Any, model: str, version: float) -> dict[str, Any] | None:
    if not isinstance(thinking, dict):
        return None
    budget = _get(thinking, "thinkingBudget", "thinking_budget")
    level = _get(thinking, "thinkingLevel", "thinking_level")
    if budget is not None and level is not None:
        return _invalid(THINKING_BOTH)
    if level is not None and version < 3:
        return _invalid(THINKING_LEVEL_UNSUPPORTED)
    if isinstance(level, str):
        allowed: tuple[str, ...] = _LEVELS
        if model.startswith("gemini-3-pro"):
            allowed = ("LOW", "HIGH")
        elif model.startswith("gemini-3.1-pro"):
            allowed = ("LOW", "MEDIUM", "HIGH")
        if level.upper() not in allowed:
            return _invalid(f"Thinking level {level.upper()} is not supported for this model.")
    if isinstance(budget, int) and 2.5 <= version < 3 and budget != -1:
        low, high = (128, 32768) if "pro" in model else (0, 24576)
        if budget == 0 and low > 0:
            return _invalid("Budget 0 is invalid. This model only works in thinking mode.")
        if not low <= budget <= high:
            return _invalid(
                f"The thinking budget {budget} is invalid. Please choose a value between {low} "
                f"and {high}."
            )
    return None


def _history_refusal(contents: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the 400 for function calls and responses in the wrong order or number."""
    previous: dict[str, Any] | None = None
    for content in contents:
        parts = _dicts(content.get("parts"))
        calls = [p for p in parts if _get(p, "functionCall", "function_call") is not None]
        responses = [
            p for p in parts if _get(p, "functionResponse", "function_response") is not None
        ]
        role = content.get("role", "user")
        if (
            role == "model"
            and calls
            and (previous is None or previous.get("role", "user") != "user")
        ):
            return _invalid(CALL_ORDER)
        if role == "user" and responses:
            previous_calls = [
                p
                for p in _dicts((previous or {}).get("parts"))
                if _get(p, "functionCall", "function_call") is not None
            ]
            if previous is None or previous.get("role") != "model" or not previous_calls:
                return _invalid(RESPONSE_ORDER)
            if len(responses) != len(previous_calls):
                return _invalid(RESPONSE_COUNT)
        previous = content
    return None


def _signatures_refusal(contents: list[dict[str, Any]], *, backend: str) -> dict[str, Any] | None:
    """Return the 400 for a current-turn model step without, or with a foreign, signature."""
    for index in range(current_turn_start(contents), len(contents)):
        content = contents[index]
        if content.get("role") != "model":
            continue
        parts = _dicts(content.get("parts"))
        for part in parts:
            signature = _get(part, "thoughtSignature", "thought_signature")
            if isinstance(signature, str):
                problem = _signature_refusal(signature, backend=backend)
                if problem is not None:
                    return _invalid(problem)
        first_call = next(
            (p for p in parts if isinstance(_get(p, "functionCall", "function_call"), dict)), None
        )
        if (
            first_call is not None
            and _get(first_call, "thoughtSignature", "thought_signature") is None
        ):
            name = _get(first_call, "functionCall", "function_call").get("name")
            # Google counts positions from 1 over `contents`.
            return _invalid(SIGNATURE_MISSING.format(name=name, position=index + 1))
    return None


def generate_refusal(request: dict[str, Any], *, model: str, backend: str) -> dict[str, Any] | None:
    """Return Google's 400 error object for a GenerateContentRequest it refuses, else None.

    `backend` is GEMINI_API or CODE_ASSIST; Code Assist names fields under `request.`. Parsing
    errors come first, as Google parses the whole body before it validates anything.
    """
    prefix = "request." if backend == CODE_ASSIST else ""
    contents = _dicts(request.get("contents"))
    refusal = (
        _proto_refusal(request, prefix)
        or _schema_refusal(request, prefix)
        or _model_refusal(request, model)
        or _history_refusal(contents)
    )
    if refusal is None and model_signs(model):
        refusal = _signatures_refusal(contents, backend=backend)
    return refusal


# -- Google's OpenAI-compatible endpoint -------------------------------------------------------


def _openai_signature(call: dict[str, Any]) -> Any:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    return google.get("thought_signature") if isinstance(google, dict) else None


def openai_refusal(body: dict[str, Any], *, model: str) -> dict[str, Any] | None:
    """Return the 400 Google's OpenAI-compatible endpoint answers a chat request with, else None.

    The endpoint turns the request into a GenerateContentRequest for the Gemini API, so the
    model-family, history and signature rules apply; signatures travel in
    `tool_calls[].extra_content.google.thought_signature`.
    """
    version = model_version(model)
    for name in ("presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if version >= 2.5 and isinstance(value, int | float) and value != 0:
            target = "this model" if version >= 3 else f"models/{model}"
            return _invalid(f"Penalty is not enabled for {target}")
    response_format = body.get("response_format")
    json_mode = isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    if json_mode and _dicts(body.get("tools")) and version < 3:
        return _invalid(JSON_WITH_TOOLS)
    messages = _dicts(body.get("messages"))
    for index, message in enumerate(messages):
        calls = _dicts(message.get("tool_calls"))
        if message.get("role") != "assistant" or not calls:
            continue
        answers = 0
        for later in messages[index + 1 :]:
            if later.get("role") != "tool":
                break
            answers += 1
        if answers and answers != len(calls):
            return _invalid(RESPONSE_COUNT)
    if not model_signs(model):
        return None
    start = max((i + 1 for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    for index in range(start, len(messages)):
        calls = _dicts(messages[index].get("tool_calls"))
        if messages[index].get("role") != "assistant" or not calls:
            continue
        signature = _openai_signature(calls[0])
        if signature is None:
            function = calls[0].get("function")
            called = function.get("name") if isinstance(function, dict) else None
            return _invalid(SIGNATURE_MISSING.format(name=called, position=index + 1))
        if not isinstance(signature, str) or not _base64_ok(signature):
            return _invalid(f'Base64 decoding failed for "{signature}"')
        problem = _signature_refusal(signature, backend=GEMINI_API)
        if problem is not None:
            return _invalid(problem)
    return None
