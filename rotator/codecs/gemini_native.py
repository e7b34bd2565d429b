"""Google's own dialect (generateContent and friends) as a codec: the pivot is this dialect,
so requests and answers pass as they are; only stream framing and errors are its own."""

from collections.abc import Mapping
from typing import Any

import orjson

from common.errors import RotatorError
from rotator.codecs.base import PivotRequest, ReplyMeta

NAME = "gemini_native"


def request_to_pivot(body: Mapping[str, Any]) -> PivotRequest:
    # The model and the stream flag come from the URL, which the view reads.
    return PivotRequest(model="", body=dict(body))


def response_from_pivot(response: Mapping[str, Any], *, meta: ReplyMeta) -> dict[str, Any]:
    return dict(response)


class StreamEncoder:
    """SSE (`alt=sse`) or Google's JSON-array stream, as the client asked (meta.state["sse"])."""

    def __init__(self, *, meta: ReplyMeta) -> None:
        self.sse = bool(meta.state.get("sse", True))
        self.content_type = "text/event-stream" if self.sse else "application/json"
        self._first = True

    def _frame(self, payload: bytes) -> bytes:
        if self.sse:
            return b"data: " + payload + b"\r\n\r\n"
        if self._first:
            self._first = False
            return b"[" + payload
        return b",\r\n" + payload

    def feed(self, chunk: Mapping[str, Any]) -> bytes:
        return self._frame(orjson.dumps(chunk))

    def finish(self) -> bytes:
        if self.sse:
            return b""
        return b"[]" if self._first else b"]"

    def failure(self, error: RotatorError) -> bytes:
        framed = self._frame(orjson.dumps(error_body(error)))
        return framed if self.sse else framed + b"]"

    def keepalive(self) -> bytes:
        # An SSE comment; the JSON-array stream allows whitespace between elements.
        return b": keep-alive\n\n" if self.sse else b"\n"


def error_body(error: RotatorError) -> dict[str, Any]:
    return {
        "error": {"code": error.status, "message": error.message, "status": error.google_status}
    }
