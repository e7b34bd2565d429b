"""What every codec module provides, and the two values that travel through the pipeline.

A codec module (``rotator/codecs/<dialect>.py``) exposes, with these names:

    NAME: str                                   # recorded in usage, logs and metrics
    def request_to_pivot(body: Mapping[str, Any]) -> PivotRequest
        # raises CodecError(message, param=...) for a body the dialect or Gemini refuses
    def response_from_pivot(response: Mapping[str, Any], *, meta: ReplyMeta) -> dict[str, Any]
    class StreamEncoder:                        # one per streamed answer
        content_type: str                       # "text/event-stream"
        def __init__(self, *, meta: ReplyMeta) -> None
        def feed(self, chunk: Mapping[str, Any]) -> bytes   # one pivot stream chunk
        def finish(self) -> bytes               # upstream ended normally
        def failure(self, error: RotatorError) -> bytes     # upstream failed mid-stream
        def keepalive(self) -> bytes            # what the dialect allows while upstream is idle
    def error_body(error: RotatorError) -> dict[str, Any]

Pivot responses and chunks are Gemini GenerateContentResponse objects, already unwrapped from
Code Assist's ``{"response": ...}`` envelope, whichever credential served them.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class PivotRequest:
    """A client request in Gemini terms."""

    # The Gemini model id to call, without "models/".
    model: str
    # GenerateContentRequest: contents, systemInstruction, tools, toolConfig, generationConfig,
    # safetySettings. Parts may carry sealed signatures' backend (rotator.codecs.shared).
    body: dict[str, Any]
    stream: bool = False
    # Codec-private facts the encoders need back (custom tool names, the client's model name).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class ReplyMeta:
    """What an encoder knows about the answer besides the pivot itself."""

    request_id: str
    # The model name the client asked for (shown back to it).
    model: str
    # Unix seconds when Rotator received the request.
    created: int
    # "gemini_api" or "code_assist": the backend that produced the answer; signatures are
    # sealed with it because the two backends do not accept each other's.
    backend: str
    state: Mapping[str, Any] = field(default_factory=dict)


class CodecError(ValueError):
    """The client's request cannot be expressed for Gemini; Rotator answers 400 naming `param`."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
