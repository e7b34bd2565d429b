"""One async view that forwards chat completions with one shared client, and its URL."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path
from httpx_aiohttp import HttpxAiohttpClient

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = HttpxAiohttpClient(
            timeout=httpx.Timeout(300.0, connect=10.0),
            limits=httpx.Limits(max_connections=4096),
            trust_env=False,
        )
        _clients[loop] = client
    return client


async def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    body = request.body
    # Parsed only to know whether to stream, as any forwarder must.
    stream = bool(orjson.loads(body).get("stream"))
    headers = {
        "authorization": f"Bearer {settings.UPSTREAM_KEY}",
        "content-type": "application/json",
    }
    url = f"{settings.UPSTREAM_OPENAI_URL}/chat/completions"
    client = _client()
    if not stream:
        answer = await client.post(url, content=body, headers=headers)
        return HttpResponse(
            answer.content,
            status=answer.status_code,
            content_type=answer.headers.get("content-type"),
        )
    upstream = await client.send(
        client.build_request("POST", url, content=body, headers=headers), stream=True
    )

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()

    return StreamingHttpResponse(
        relay(), status=upstream.status_code, content_type="text/event-stream"
    )


chat_completions.csrf_exempt = True  # type: ignore[attr-defined]

urlpatterns = [path("v1/chat/completions", chat_completions)]
