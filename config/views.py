"""The landing page at `/`: what this server is, where to go, and the base URL per client."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe


def origin_of(request: HttpRequest) -> str:
    """This server as the visitor reached it (`scheme://host[:port]`), for base URLs.

    get_host() has already refused a Host header that is not a host name, and the template
    escapes what is left: the page repeats the address, never raw input.
    """
    return f"{request.scheme}://{request.get_host()}"


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "landing.html", {"origin": origin_of(request)})
