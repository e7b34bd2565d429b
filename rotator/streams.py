"""Upstream server-sent events in, client bytes out: re-framing and usage capture.

Upstream is always asked for SSE (`alt=sse`); each relay turns one upstream event's JSON
payload into the bytes the client's dialect expects, and keeps the usage it saw so counters
stay right even for streams the client cut short.
"""

from collections.abc import AsyncIterator
from typing import Any

import orjson

from rotator.translate import ChatStreamTranslator

SSE_DONE = b"[DONE]"


async def sse_payload_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Yields, for each upstream read, the data payloads of the events it completed.

    Events that arrive together leave together: the relay writes them to the client in one
    piece instead of one write per event (a fast upstream sends a whole 20-event answer in
    one or two reads), and no event ever waits for a later one.
    """
    pending = b""
    async for chunk in chunks:
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        pending += chunk
        batch = []
        while True:
            end = pending.find(b"\n\n")
            if end < 0:
                break
            event, pending = pending[:end], pending[end + 2 :]
            data = [
                line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
            ]
            if data:
                batch.append(b"\n".join(data))
        if batch:
            yield batch
    tail = pending.strip()
    if tail.startswith(b"data:"):
        yield [tail[5:].lstrip(b" ")]


async def sse_payloads(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yields each event's data payload as soon as the event is complete."""
    async for batch in sse_payload_batches(chunks):
        for payload in batch:
            yield payload


def gemini_usage(document: Any) -> tuple[int, int, int] | None:
    """(prompt, completion, total) from a native response's usageMetadata."""
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
    if not isinstance(document, dict):
        return None
    usage = document.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return prompt, completion, int(usage.get("total_tokens") or (prompt + completion))


def _gemini_has_content(document: Any) -> bool:
    candidates = document.get("candidates") if isinstance(document, dict) else None
    if not candidates:
        # A prompt blocked for safety is an answer, not an empty one.
        feedback = document.get("promptFeedback") if isinstance(document, dict) else None
        return bool(isinstance(feedback, dict) and feedback.get("blockReason"))
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        if candidate.get("finishReason") not in (None, "STOP", "FINISH_REASON_UNSPECIFIED"):
            return True
        parts = (candidate.get("content") or {}).get("parts") or []
        for part in parts:
            if isinstance(part, dict) and (part.get("text") or len(part) > 1 or "text" not in part):
                return True
    return False


def _openai_has_content(document: Any) -> bool:
    choices = document.get("choices") if isinstance(document, dict) else None
    if not choices:
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason") not in (None, "stop"):
            return True
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
            return True
    return False


class Relay:
    """Turns upstream event payloads into client bytes. Subclasses per dialect and kind."""

    usage: tuple[int, int, int] | None = None

    def start(self) -> bytes:
        return b""

    def feed(self, payload: bytes) -> tuple[bytes, bool]:
        """Returns (bytes for the client, whether this event carried content)."""
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""

    def error(self, *, message: str, status: str, code: int) -> bytes:
        raise NotImplementedError


class GeminiSseRelay(Relay):
    """Native SSE to native SSE (API keys), or Code Assist SSE unwrapped (`unwrap`)."""

    def __init__(self, *, unwrap: bool) -> None:
        self.unwrap = unwrap
        self._seen_content = False

    def _document(self, payload: bytes) -> tuple[bytes, Any]:
        if self.unwrap or b"usageMetadata" in payload or not self._seen_content:
            document = orjson.loads(payload)
            if self.unwrap and isinstance(document, dict) and "response" in document:
                document = document["response"]
                payload = orjson.dumps(document)
            return payload, document
        return payload, None

    def feed(self, payload: bytes) -> tuple[bytes, bool]:
        payload, document = self._document(payload)
        has_content = True
        if document is not None:
            usage = gemini_usage(document)
            if usage:
                self.usage = usage
            if not self._seen_content:
                has_content = _gemini_has_content(document)
                self._seen_content = has_content
        return self._frame(payload), has_content

    def _frame(self, payload: bytes) -> bytes:
        return b"data: " + payload + b"\r\n\r\n"

    def error(self, *, message: str, status: str, code: int) -> bytes:
        return self._frame(
            orjson.dumps({"error": {"code": code, "message": message, "status": status}})
        )


class GeminiArrayRelay(GeminiSseRelay):
    """Native SSE to Google's JSON-array stream (streamGenerateContent without alt=sse)."""

    _first = True

    def start(self) -> bytes:
        return b"["

    def _frame(self, payload: bytes) -> bytes:
        if self._first:
            self._first = False
            return payload
        return b",\r\n" + payload

    def finish(self) -> bytes:
        return b"]"

    def error(self, *, message: str, status: str, code: int) -> bytes:
        body = orjson.dumps({"error": {"code": code, "message": message, "status": status}})
        return self._frame(body) + b"]"


class OpenAiSseRelay(Relay):
    """Google's OpenAI-compatible SSE to the client (API keys). Rotator always asks upstream
    for the usage chunk; it is hidden from clients that did not ask for it."""

    def __init__(self, *, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self._seen_content = False

    def feed(self, payload: bytes) -> tuple[bytes, bool]:
        if payload == SSE_DONE:
            return b"data: [DONE]\n\n", True
        has_content = True
        if b'"usage"' in payload or not self._seen_content:
            document = orjson.loads(payload)
            usage = openai_usage(document)
            if usage:
                self.usage = usage
                if not self.client_wants_usage and not document.get("choices"):
                    return b"", True
            if not self._seen_content:
                has_content = _openai_has_content(document)
                self._seen_content = has_content
        return b"data: " + payload + b"\n\n", has_content

    def error(self, *, message: str, status: str, code: int) -> bytes:
        body = {
            "error": {"message": message, "type": "server_error", "param": None, "code": status}
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"


class TranslatedChatRelay(Relay):
    """Code Assist SSE (native, wrapped) to OpenAI chat chunks (OAuth credentials)."""

    def __init__(self, *, translator: ChatStreamTranslator) -> None:
        self.translator = translator
        self._seen_content = False

    def feed(self, payload: bytes) -> tuple[bytes, bool]:
        document = orjson.loads(payload)
        if isinstance(document, dict) and "response" in document:
            document = document["response"]
        has_content = self._seen_content or _gemini_has_content(document)
        self._seen_content = has_content
        usage = gemini_usage(document)
        if usage:
            self.usage = usage
        chunks = self.translator.feed(document)
        return b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks), has_content

    def finish(self) -> bytes:
        chunks = self.translator.finish()
        out = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks)
        return out + b"data: [DONE]\n\n"

    def error(self, *, message: str, status: str, code: int) -> bytes:
        body = {
            "error": {"message": message, "type": "server_error", "param": None, "code": status}
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"
