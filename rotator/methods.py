"""Which HTTP methods a proxy route answers: HEAD wherever GET, and an `Allow` on every 405."""

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase

from common.errors import MethodNotAllowed
from rotator.render import error_response


def methods_allowed(methods: tuple[str, ...]) -> tuple[str, ...]:
    """`methods` with HEAD wherever GET is, as HTTP expects, and OPTIONS (CORS preflight)."""
    extra = ("HEAD",) if "GET" in methods and "HEAD" not in methods else ()
    return (*methods, *extra, "OPTIONS")


def method_check(request: HttpRequest, *, methods: tuple[str, ...]) -> bool:
    """Returns True for a HEAD, which the view then serves as a GET (and `head_strip` drops
    the body); raises MethodNotAllowed, carrying the Allow list, for a method not in
    `methods`."""
    allowed = methods_allowed(methods)
    if request.method not in allowed:
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed here; use {', '.join(methods)}.",
            code="method_not_allowed",
            allow=allowed,
        )
    if request.method == "HEAD":
        request.method = "GET"
        return True
    return False


def head_strip(response: HttpResponseBase) -> HttpResponseBase:
    """The answer to a HEAD: the GET's headers, its length included, and no body."""
    if isinstance(response, HttpResponse):
        response["Content-Length"] = str(len(response.content))
        response.content = b""
    return response


View = Callable[..., Awaitable[HttpResponseBase]]


def read_only(view: View) -> View:
    """For views outside proxy_endpoint (/healthz): GET and HEAD only, 405 with Allow else."""

    @wraps(view)
    async def endpoint(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        try:
            head = method_check(request, methods=("GET",))
        except MethodNotAllowed as exc:
            return error_response(exc, dialect="openai_chat")
        response = await view(request, **kwargs)
        return head_strip(response) if head else response

    endpoint.csrf_exempt = True  # type: ignore[attr-defined]
    return endpoint
