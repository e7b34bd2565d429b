"""Rotator's own errors as HTTP responses, in the dialect of the route: the body comes from
the dialect's codec, the status and Retry-After from the error. Nothing else builds error JSON."""

import orjson
from django.http import HttpResponse

from common.errors import MethodNotAllowed, RotatorError
from rotator.codecs.registry import codec_of


def error_response(exc: RotatorError, *, dialect: str) -> HttpResponse:
    body = codec_of(dialect).error_body(exc)
    response = HttpResponse(orjson.dumps(body), status=exc.status, content_type="application/json")
    if exc.retry_after_seconds is not None:
        response["Retry-After"] = str(exc.retry_after_seconds)
    if isinstance(exc, MethodNotAllowed):
        response["Allow"] = ", ".join(exc.allow)
    return response


def openai_error_response(exc: RotatorError) -> HttpResponse:
    """The management API's errors, which are in OpenAI's shape."""
    return error_response(exc, dialect="openai_chat")
