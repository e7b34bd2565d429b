"""Token counts (prompt, completion, total) as Rotator's counters keep them, read from either
answer shape upstream produces."""

from typing import Any


def gemini_usage(document: Any) -> tuple[int, int, int] | None:
    """(prompt, completion, total) from a native response's usageMetadata; completion counts
    thoughts too."""
    if not isinstance(document, dict):
        return None
    usage = document.get("usageMetadata")
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("promptTokenCount") or 0)
    completion = int(usage.get("candidatesTokenCount") or 0) + int(
        usage.get("thoughtsTokenCount") or 0
    )
    total = int(usage.get("totalTokenCount") or (prompt + completion))
    return prompt, completion, total


def openai_usage(document: Any) -> tuple[int, int, int] | None:
    """(prompt, completion, total) from an OpenAI answer's usage."""
    if not isinstance(document, dict):
        return None
    usage = document.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return prompt, completion, int(usage.get("total_tokens") or (prompt + completion))
