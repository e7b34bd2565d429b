"""The values that pass between the loop and the adapters."""

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from rotator.classify import Verdict
from rotator.context import RequestContext
from rotator.pool import CredentialView


@dataclass(slots=True)
class UpstreamCall:
    """What to ask upstream, in a form every adapter can send."""

    # Gemini's method: generateContent, streamGenerateContent, countTokens, embedContent,
    # batchEmbedContents.
    method: str
    model: str
    # The native request body, built on first use (an API-key shortcut may never need it),
    # with the stored thought signatures of Rotator's call ids put back.
    pivot_body: Callable[[], Awaitable[dict[str, Any]]]
    # The OpenAI-compatible shortcut: the client's own body for Google's OpenAI endpoint at
    # this path ("chat/completions", "embeddings"), or None when the call must be translated.
    openai_path: str | None = None
    openai_body: bytes = b""
    openai_document: dict[str, Any] | None = None
    stream: bool = False
    client_wants_usage: bool = False


@dataclass(slots=True)
class Failure:
    verdict: Verdict
    status: int | None
    body: bytes = b""


@dataclass(slots=True)
class Answer:
    """A complete upstream success."""

    # The pivot response (unwrapped), for the codec to encode; None for a shortcut answer.
    document: dict[str, Any] | None
    usage: tuple[int, int, int] | None
    # Bytes already in the client's dialect (the OpenAI-compatible shortcut).
    client_body: bytes | None = None
    # The backend that produced it (signatures are kept with it).
    backend: str = ""


class StreamEncoder(Protocol):
    content_type: str

    def feed(self, chunk: Any) -> bytes: ...

    def finish(self) -> bytes: ...

    def failure(self, error: Any) -> bytes: ...

    def keepalive(self) -> bytes: ...


@dataclass(slots=True)
class StreamStart:
    """An upstream stream that has produced content; nothing has reached the client yet."""

    response: httpx.Response
    # Decoded events still to relay, grouped as upstream delivered them.
    batches: AsyncGenerator[list[Any], None]
    # Events that arrived up to and including the first one with content.
    head: list[Any]
    usage_of: Callable[[Any], tuple[int, int, int] | None]
    # Set by the shortcut adapter (its events are already in the client's dialect); the
    # pipeline gives pivot streams the codec's encoder.
    encoder: StreamEncoder | None = None
    # The backend that produced the events (signatures are sealed with it).
    backend: str = ""


class Adapter(Protocol):
    backend: str

    async def send(
        self, ctx: RequestContext, credential: CredentialView, call: UpstreamCall
    ) -> Failure | Answer | StreamStart: ...
