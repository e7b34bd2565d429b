"""What the view layer alone costs per request: DRF through adrf against a plain async view.

Both answer the same small JSON through the same Django request object; no network, no
database. Run: `python -m bench.view_layer`. The result is recorded in docs/performance.md
("Why the proxy views are plain async views").
"""

import asyncio
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

import orjson  # noqa: E402
from adrf.views import APIView  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import AsyncRequestFactory  # noqa: E402
from rest_framework.permissions import AllowAny  # noqa: E402
from rest_framework.renderers import JSONRenderer  # noqa: E402
from rest_framework.response import Response  # noqa: E402

BODY = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0}]}


async def plain(request: HttpRequest) -> HttpResponse:
    payload = orjson.loads(request.body)
    return HttpResponse(
        orjson.dumps({**BODY, "model": payload["model"]}), content_type="application/json"
    )


class DrfView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    throttle_classes: list[type] = []

    async def post(self, request):  # type: ignore[no-untyped-def]
        return Response({**BODY, "model": request.data["model"]})


async def measure(view, requests: int) -> float:  # type: ignore[no-untyped-def]
    factory = AsyncRequestFactory()
    body = orjson.dumps(
        {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    )
    for _ in range(200):  # warm up
        await view(factory.post("/v1/chat/completions", body, content_type="application/json"))
    started = time.process_time()
    for _ in range(requests):
        response = await view(
            factory.post("/v1/chat/completions", body, content_type="application/json")
        )
        if hasattr(response, "render"):
            response.render()
    return (time.process_time() - started) / requests * 1e6


def main() -> None:
    drf = DrfView.as_view()
    rows = []
    for _ in range(3):
        rows.append((asyncio.run(measure(plain, 5000)), asyncio.run(measure(drf, 5000))))
    plain_us = sorted(r[0] for r in rows)[1]
    drf_us = sorted(r[1] for r in rows)[1]
    print("| view layer | CPU µs per request (median of 3 × 5,000) |")
    print("|---|---|")
    print(f"| plain `async def` view | {plain_us:.0f} |")
    print(f"| DRF `APIView` through adrf (no auth, no throttle) | {drf_us:.0f} |")
    print(f"| difference | {drf_us - plain_us:.0f} µs ({drf_us / plain_us:.1f}×) |")


if __name__ == "__main__":
    main()
