"""The OpenAI Chat Completions dialect as a codec of the pipeline."""

import time
from collections.abc import Mapping
from typing import Any

import orjson

from rotator import translate
from rotator.codecs.base import PivotRequest, ReplyMeta
from rotator.errors import RotatorError

NAME = "openai_chat"


def request_to_pivot(body: Mapping[str, Any]) -> PivotRequest:
    """Returns the pivot of a chat completion request; raises CodecError naming the field."""
    translated = translate.chat_request_to_gemini(body)
    return PivotRequest(
        model=translated.model,
        body=translated.request,
        stream=translated.stream,
        state={"include_usage": translated.include_usage},
    )


def response_from_pivot(response: Mapping[str, Any], *, meta: ReplyMeta) -> dict[str, Any]:
    return translate.gemini_response_to_chat(
        response,
        model=meta.model,
        completion_id=f"chatcmpl-{meta.request_id}",
        created=meta.created,
    )


def _event(chunk: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class StreamEncoder:
    content_type = "text/event-stream"

    def __init__(self, *, meta: ReplyMeta) -> None:
        self.translator = translate.ChatStreamTranslator(
            model=meta.model,
            completion_id=f"chatcmpl-{meta.request_id}",
            created=meta.created or int(time.time()),
            include_usage=bool(meta.state.get("include_usage")),
        )

    def feed(self, chunk: Mapping[str, Any]) -> bytes:
        return b"".join(_event(item) for item in self.translator.feed(chunk))

    def finish(self) -> bytes:
        return b"".join(_event(item) for item in self.translator.finish()) + b"data: [DONE]\n\n"

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
