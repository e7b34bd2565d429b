"""The fake's model catalogue, in the shapes Google's `models.list` endpoints return."""

from typing import Any

_GENERATE = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]


def _model(
    name: str,
    display: str,
    description: str,
    *,
    version: str,
    methods: list[str],
    input_limit: int,
    output_limit: int,
    thinking: bool = False,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"models/{name}",
        "version": version,
        "displayName": display,
        "description": description,
        "inputTokenLimit": input_limit,
        "outputTokenLimit": output_limit,
        "supportedGenerationMethods": methods,
    }
    if "generateContent" in methods:
        entry.update(temperature=1, topP=0.95, topK=64, maxTemperature=2)
    if thinking:
        entry["thinking"] = True
    return entry


# Limits follow Google's published numbers at the time of writing; nothing in Rotator may rely
# on them, they only have to look real.
MODELS: dict[str, dict[str, Any]] = {
    m["name"].removeprefix("models/"): m
    for m in (
        _model(
            "gemini-2.5-flash",
            "Gemini 2.5 Flash",
            "Stable version of Gemini 2.5 Flash.",
            version="001",
            methods=_GENERATE,
            input_limit=1_048_576,
            output_limit=65_536,
            thinking=True,
        ),
        _model(
            "gemini-2.5-pro",
            "Gemini 2.5 Pro",
            "Stable release of Gemini 2.5 Pro.",
            version="2.5",
            methods=_GENERATE,
            input_limit=1_048_576,
            output_limit=65_536,
            thinking=True,
        ),
        _model(
            "gemini-2.5-flash-lite",
            "Gemini 2.5 Flash-Lite",
            "Stable version of Gemini 2.5 Flash-Lite.",
            version="001",
            methods=_GENERATE,
            input_limit=1_048_576,
            output_limit=65_536,
            thinking=True,
        ),
        _model(
            "gemini-3-pro-preview",
            "Gemini 3 Pro Preview",
            "Gemini 3 Pro Preview.",
            version="3-pro-preview-11-2025",
            methods=_GENERATE,
            input_limit=1_048_576,
            output_limit=65_536,
            thinking=True,
        ),
        _model(
            "gemini-3-flash-preview",
            "Gemini 3 Flash Preview",
            "Gemini 3 Flash Preview.",
            version="3-flash-preview-12-2025",
            methods=_GENERATE,
            input_limit=1_048_576,
            output_limit=65_536,
            thinking=True,
        ),
        _model(
            "gemini-3.1-pro-preview",
            "Gemini 3.1 Pro Preview",
            "Gemini 3.1 Pro Preview.",
            version="3.1-pro-preview-02-2026",
            methods=_GENERATE,
            input_limit=1_048_576,
            output_limit=65_536,
            thinking=True,
        ),
        _model(
            "gemini-3.5-flash",
            "Gemini 3.5 Flash",
            "Stable version of Gemini 3.5 Flash.",
            version="001",
            methods=_GENERATE,
            input_limit=1_048_576,
            output_limit=65_536,
            thinking=True,
        ),
        _model(
            "gemini-embedding-001",
            "Gemini Embedding 001",
            "Obtain a distributed representation of a text.",
            version="001",
            methods=["embedContent"],
            input_limit=2048,
            output_limit=1,
        ),
        _model(
            "text-embedding-004",
            "Text Embedding 004",
            "Obtain a distributed representation of a text.",
            version="004",
            methods=["embedContent"],
            input_limit=2048,
            output_limit=1,
        ),
    )
}

GENERATIVE_MODELS = [
    name for name, m in MODELS.items() if "generateContent" in m["supportedGenerationMethods"]
]

# batchEmbedContents and streamGenerateContent are not listed in supportedGenerationMethods by
# Google either; they are allowed wherever their single-shot sibling is.
_METHOD_FAMILY = {
    "streamGenerateContent": "generateContent",
    "batchEmbedContents": "embedContent",
}


def model_strip(raw: str | None) -> str | None:
    """Return a model name without its `models/` prefix (Google accepts both spellings)."""
    if raw is None:
        return None
    return raw.removeprefix("models/")


def model_supports(model: str | None, method: str) -> bool:
    """Return whether `model` exists and serves `method`.

    countTokens is answered for every known model, as Google does for embedding models too.
    """
    entry = MODELS.get(model or "")
    if entry is None:
        return False
    if method == "countTokens":
        return True
    return _METHOD_FAMILY.get(method, method) in entry["supportedGenerationMethods"]


def openai_model(name: str) -> dict[str, Any]:
    """Return one entry of the OpenAI-compatible `/models` list (Google keeps the prefix)."""
    return {"id": f"models/{name}", "object": "model", "created": 0, "owned_by": "google"}
