"""WhiteNoise under ASGI: static files answered with an async iterator.

WhiteNoise (6.x) answers with a file iterator that Django's ASGI handler can only consume by
buffering it in a thread, warning "StreamingHttpResponse must consume synchronous iterators"
for every file; the test suite makes that warning an error to catch buffered proxy streams.
Static files are small local reads, so reading them in the event loop is fine.
"""

from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

from django.http import HttpRequest, StreamingHttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


async def _chunks(sync_chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in sync_chunks:
        yield chunk


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]  # whitenoise is untyped
    @staticmethod
    def serve(static_file: Any, request: HttpRequest) -> StreamingHttpResponse:
        response: StreamingHttpResponse = WhiteNoiseMiddleware.serve(static_file, request)
        # WhiteNoise's content is always the file's synchronous chunks.
        response.streaming_content = _chunks(cast(Iterable[bytes], response.streaming_content))
        return response
