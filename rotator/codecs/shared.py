"""Helpers every codec shares: tool and response schemas, thinking levels, usage, and the
sealed thought signatures that travel through clients.

One function per rule, so that a change of policy (for example the schema field Gemini is sent)
happens here for every dialect at once.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from accounts.secrets import SecretUnreadable, decrypt, encrypt
from rotator.codecs import schema as schemas
from rotator.codecs.base import CodecError

# A part of a pivot request may carry, beside its "thoughtSignature", the backend that minted
# it under this key. The pipeline keeps the signature only when the serving credential's
# backend matches, and removes the key before anything is sent to Google.
SIGNATURE_BACKEND_KEY = "rotatorSignatureBackend"

BACKENDS = frozenset({"gemini_api", "code_assist"})

# Gemini finish reasons that mean a filter stopped the answer (each dialect has its own word
# for it: content_filter, refusal); a prompt blocked outright has promptFeedback.blockReason.
CONTENT_FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

# The image types Gemini takes, by file extension (for image URLs that name no type).
IMAGE_MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
}


def function_declaration(
    *, name: str, description: str | None, schema: Mapping[str, Any] | None, param: str
) -> dict[str, Any]:
    """Returns a Gemini functionDeclaration for a client tool, its schema under
    `parametersJsonSchema` (JSON Schema, as gemini-cli sends it to both backends: MCP schemas
    with arrays without items, untyped nodes or $refs pass, where the classic `parameters`
    refuses them); raises CodecError naming `param` for a schema Gemini cannot take."""
    declaration: dict[str, Any] = {"name": name}
    if description:
        declaration["description"] = description
    if schema is not None:
        if not isinstance(schema, Mapping):
            raise CodecError("A tool's parameters must be a JSON schema object.", param=param)
        cleaned = schemas.json_schema_for_gemini(schema, param=param)
        if cleaned is not None:
            declaration["parametersJsonSchema"] = cleaned
    return declaration


def json_output_config(schema: Mapping[str, Any] | None, *, param: str) -> dict[str, Any]:
    """Returns the generationConfig entries asking Gemini for JSON (matching `schema`, under
    `responseJsonSchema`, which takes JSON Schema as clients write it)."""
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if schema is not None:
        if not isinstance(schema, Mapping):
            raise CodecError("The JSON schema must be an object.", param=param)
        cleaned = schemas.json_schema_for_gemini(schema, param=param)
        if cleaned is not None:
            config["responseJsonSchema"] = cleaned
    return config


EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
# Gemini 2.5 budgets in tokens. low/medium/high are the values Google's own OpenAI endpoint
# documents (1K, 8K, 24K). minimal is 512 because that is the floor of 2.5 Flash-Lite and valid for
# Pro (floor 128) and Flash too. xhigh, newer than Gemini's scale, is treated as high.
_THINKING_BUDGET_BY_EFFORT = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_THINKING_BUDGET_BY_EFFORT["xhigh"] = _THINKING_BUDGET_BY_EFFORT["high"]
# 2.5 Pro "only works in thinking mode": a budget of 0 is a 400, so "none" asks for its floor.
_PRO_MINIMUM_THINKING_BUDGET = 128


def thinking_for_effort(effort: str, *, model: str) -> dict[str, Any]:
    """Returns the thinkingConfig for an OpenAI-style effort (none, minimal, low, medium, high,
    xhigh): a thinkingLevel on Gemini 3 and later, a thinkingBudget on 2.5."""
    major = gemini_major_version(model)
    if major is not None and major >= 3:
        # Gemini 3 takes a level, not a budget, and cannot switch thinking off. Flash models accept
        # minimal/low/medium/high; Pro models accept only low/high, so there medium rounds up to
        # high (keeping answer quality over saving tokens) and none/minimal round to low.
        flash = "flash" in model
        if effort in ("none", "minimal"):
            level = "minimal" if flash else "low"
        elif effort == "medium":
            level = "medium" if flash else "high"
        elif effort == "xhigh":
            level = "high"
        else:
            level = effort
        if effort == "none":
            return {"thinkingLevel": level}
        return {"thinkingLevel": level, "includeThoughts": True}
    if effort == "none":
        pro = "pro" in model
        return {"thinkingBudget": _PRO_MINIMUM_THINKING_BUDGET if pro else 0}
    return {"thinkingBudget": _THINKING_BUDGET_BY_EFFORT[effort], "includeThoughts": True}


def gemini_major_version(model: str) -> int | None:
    """The major version in a Gemini model id ("gemini-3.1-pro-preview" is 3); None for others."""
    match = re.match(r"gemini-(\d+)", model)
    return int(match.group(1)) if match else None


def thinking_for_budget(budget_tokens: int, *, model: str) -> dict[str, Any]:
    """Returns the thinkingConfig for a token budget (Anthropic's budget_tokens): the budget
    itself on 2.5, the nearest level on Gemini 3 and later (which take no budget)."""
    major = gemini_major_version(model)
    if major is not None and major >= 3:
        effort = "low" if budget_tokens <= 4096 else "medium" if budget_tokens <= 16384 else "high"
        return thinking_for_effort(effort, model=model)
    # Google's ranges on 2.5 (a budget outside is a 400): Pro 128-32768, Flash-Lite 512-24576,
    # Flash 0-24576. Claude Code asks for up to max_tokens - 1 (31999), so the nearest is taken.
    low, high = (128, 32768) if "pro" in model else (512 if "lite" in model else 0, 24576)
    return {"thinkingBudget": min(max(budget_tokens, low), high), "includeThoughts": True}


@dataclass(frozen=True, slots=True)
class Usage:
    """Gemini usageMetadata in the terms clients count in."""

    input_tokens: int = 0
    cached_tokens: int = 0
    # Visible output plus thoughts: what the client is billed as output.
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0


def usage_of(response: Mapping[str, Any]) -> Usage | None:
    """Returns the usage of a pivot response or stream chunk, None when it has none."""
    metadata = response.get("usageMetadata") if isinstance(response, Mapping) else None
    if not isinstance(metadata, Mapping):
        return None

    def count(key: str) -> int:
        value = metadata.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    thoughts = count("thoughtsTokenCount")
    output = count("candidatesTokenCount") + thoughts
    prompt = count("promptTokenCount")
    return Usage(
        input_tokens=prompt,
        cached_tokens=count("cachedContentTokenCount"),
        output_tokens=output,
        reasoning_tokens=thoughts,
        total_tokens=count("totalTokenCount") or prompt + output,
    )


def signature_seal(signature: str, *, backend: str) -> str:
    """Returns an opaque, encrypted token carrying a Gemini thought signature and the backend
    that minted it: clients can neither read nor forge it."""
    return encrypt(orjson.dumps({"s": signature, "b": backend}).decode())


def signature_open(token: Any) -> tuple[str, str] | None:
    """Returns (signature, backend) from a token `signature_seal` made; None for anything else
    (a forged, foreign or corrupted token is treated as no signature at all)."""
    if not isinstance(token, str) or not token:
        return None
    try:
        document = orjson.loads(decrypt(token))
    except (SecretUnreadable, orjson.JSONDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    signature, backend = document.get("s"), document.get("b")
    if not isinstance(signature, str) or backend not in BACKENDS:
        return None
    return signature, str(backend)


def signed_part(part: dict[str, Any], token: Any) -> dict[str, Any]:
    """Returns `part` with the signature sealed in `token` put back (and its backend noted for
    the pipeline); `part` unchanged when the token carries none."""
    opened = signature_open(token)
    if opened is None:
        return part
    signature, backend = opened
    return {**part, "thoughtSignature": signature, SIGNATURE_BACKEND_KEY: backend}


def request_fit_for_model(request: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Drops what Google refuses for `model`'s family from a pivot request the codec built
    (changed in place and returned): non-zero presence/frequency penalties on 2.5 and later
    ("Penalty is not enabled"), and JSON mode together with function declarations on 2.x
    ("Function calling with a response mime type ... is unsupported") — there the tools win,
    since an agent's loop depends on them and the answer is still asked for in the prompt."""
    config = request.get("generationConfig")
    if not isinstance(config, dict):
        return request
    major = gemini_major_version(model)
    minor_25 = model.startswith("gemini-2.5")
    if (major is not None and major >= 3) or minor_25:
        config.pop("presencePenalty", None)
        config.pop("frequencyPenalty", None)
    has_functions = any(
        isinstance(tool, dict) and tool.get("functionDeclarations")
        for tool in request.get("tools") or []
    )
    if has_functions and major == 2 and config.get("responseMimeType") == "application/json":
        for key in ("responseMimeType", "responseSchema", "responseJsonSchema"):
            config.pop(key, None)
    if not config:
        request.pop("generationConfig")
    return request


def openai_body_fit_for_model(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The same rules for a chat body sent to Google's OpenAI-compatible endpoint: returns
    `body` itself when nothing must go, else a copy without it."""
    major = gemini_major_version(model)
    drop: set[str] = set()
    if (major is not None and major >= 3) or model.startswith("gemini-2.5"):
        drop |= {key for key in ("presence_penalty", "frequency_penalty") if key in body}
    format_ = body.get("response_format")
    if (
        major == 2
        and body.get("tools")
        and isinstance(format_, dict)
        and format_.get("type") in ("json_object", "json_schema")
    ):
        drop.add("response_format")
    if not drop:
        return body
    return {key: value for key, value in body.items() if key not in drop}
