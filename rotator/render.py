"""The two error renderers: OpenAI-style for /v1, Google-style for /v1beta. Nothing else
builds error JSON."""

from collections.abc import Mapping

import orjson
from django.http import HttpResponse

from rotator.errors import MethodNotAllowed, RotatorError


def openai_error_response(exc: RotatorError) -> HttpResponse:
    body = {
        "error": {
            "message": exc.message,
            "type": exc.openai_type,
            "param": exc.param,
            "code": exc.code,
        }
    }
    return _response(exc, body)


def google_error_response(exc: RotatorError) -> HttpResponse:
    body = {"error": {"code": exc.status, "message": exc.message, "status": exc.google_status}}
    return _response(exc, body)


def _response(exc: RotatorError, body: Mapping[str, object]) -> HttpResponse:
    response = HttpResponse(orjson.dumps(body), status=exc.status, content_type="application/json")
    if exc.retry_after_seconds is not None:
        response["Retry-After"] = str(exc.retry_after_seconds)
    if isinstance(exc, MethodNotAllowed):
        response["Allow"] = ", ".join(exc.allow)
    return response


def error_response(exc: RotatorError, *, dialect: str) -> HttpResponse:
    if dialect == "gemini":
        return google_error_response(exc)
    return openai_error_response(exc)
