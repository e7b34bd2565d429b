"""ASGI entry point: `config.asgi:application`.

Two Django handlers behind one path router: the proxy routes run without middleware (every
Django middleware costs a thread hop per request under ASGI), everything else gets the full
browser chain. The router also answers the ASGI lifespan, which Django does not, to flush
usage counters on a graceful stop.
"""

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.boot import settings_load_or_exit

settings_load_or_exit()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402

browser_application = get_asgi_application()


class ProxyASGIHandler(ASGIHandler):
    """Django's ASGI handler with an empty middleware chain."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)


proxy_application = ProxyASGIHandler()


async def _lifespan(receive: Any, send: Any) -> None:
    from rotator.upstream import upstream_clients_close
    from stats.usage import usage_flush_async

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await usage_flush_async()
                await upstream_clients_close()
            finally:
                await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    from django.conf import settings

    if scope["type"] == "http" and scope["path"].startswith(settings.PROXY_PATH_PREFIXES):
        await proxy_application(scope, receive, send)
    else:
        await browser_application(scope, receive, send)
