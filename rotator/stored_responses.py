"""Responses API answers kept with `store: true`, for `previous_response_id` and GET by id."""

import logging
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q, Subquery
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse

from common import clock
from common.errors import BadRequest, NotFound
from rotator.models import StoredResponse
from rotator.orm import orm_call

logger = logging.getLogger("rotator.request")

# The events that end a stream with an answer worth keeping (a failed one is not kept).
_TERMINAL_EVENTS = (b"event: response.completed\n", b"event: response.incomplete\n")


def stored_response_save(
    *,
    user_id: int,
    response: Mapping[str, Any],
    input_items: list[Any],
    now: datetime,
) -> None:
    """Keeps `response` (and the conversation it ends: `input_items`, then its output) for
    RESPONSES_STORE_TTL_SECONDS; drops the user's expired answers and those beyond the newest
    RESPONSES_STORE_MAX_PER_USER. Does nothing when the TTL is 0."""
    ttl_seconds = settings.RESPONSES_STORE_TTL_SECONDS
    if ttl_seconds <= 0:
        return
    output = response.get("output")
    fields = {
        "created_at": now,
        "expires_at": now + timedelta(seconds=ttl_seconds),
        "items": [*input_items, *(output if isinstance(output, list) else [])],
        "response": dict(response),
    }
    # One statement, whether the id is new (every answer's is) or stored again.
    StoredResponse.objects.bulk_create(
        [StoredResponse(user_id=user_id, response_id=str(response["id"]), **fields)],
        update_conflicts=True,
        unique_fields=["user", "response_id"],
        update_fields=list(fields),
    )
    # One DELETE for both bounds: the user's expired answers and those beyond the newest
    # RESPONSES_STORE_MAX_PER_USER. (Was four queries per save: the Responses API's bench row
    # spent most of its time here.) Two saves at once may both keep one answer over the bound
    # for a moment: accepted, the next save trims it.
    mine = StoredResponse.objects.filter(user_id=user_id)
    beyond = mine.order_by("-created_at", "-id").values("id")[
        settings.RESPONSES_STORE_MAX_PER_USER :
    ]
    mine.filter(Q(expires_at__lte=now) | Q(id__in=Subquery(beyond))).delete()


def stored_response_find(*, user_id: int, response_id: str, now: datetime) -> StoredResponse | None:
    """Returns the user's unexpired stored answer with this id; None for anyone else's."""
    return StoredResponse.objects.filter(
        user_id=user_id, response_id=response_id, expires_at__gt=now
    ).first()


async def conversation_continue(*, body: Mapping[str, Any], user_id: int) -> list[Any]:
    """Returns the input items for a request (see conversation_items); reads the database
    only when the request continues a stored response."""
    if body.get("previous_response_id") is None:
        return _input_items(body.get("input"))
    items: list[Any] = await orm_call(conversation_items)(
        body=body, user_id=user_id, now=clock.now()
    )
    return items


def conversation_items(*, body: Mapping[str, Any], user_id: int, now: datetime) -> list[Any]:
    """Returns the input items for a request: the stored conversation of its
    `previous_response_id` (if any), then its own input. Raises BadRequest
    (previous_response_not_found) for an id the user has not stored."""
    own = _input_items(body.get("input"))
    previous = body.get("previous_response_id")
    if previous is None:
        return own
    stored = (
        stored_response_find(user_id=user_id, response_id=previous, now=now)
        if isinstance(previous, str)
        else None
    )
    if stored is None:
        raise BadRequest(
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return [*stored.items, *own]


def _input_items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        return value
    raise BadRequest("'input' must be a string or an array of items.", param="input")


async def stored_response_get(*, user_id: int, response_id: str) -> dict[str, Any]:
    """Returns the Response object the user stored under this id; raises NotFound for an
    unknown, expired or someone else's id (the same answer for all three)."""
    stored = await orm_call(stored_response_find)(
        user_id=user_id, response_id=response_id, now=clock.now()
    )
    if stored is None:
        raise NotFound(
            f"Response with id '{response_id}' not found.", param="response_id", code="not_found"
        )
    response: dict[str, Any] = stored.response
    return response


async def stored_response_keep(
    response: HttpResponseBase, *, user_id: int, input_items: list[Any]
) -> HttpResponseBase:
    """Returns `response` arranged so that its answer is stored (see stored_response_save):
    at once for a JSON answer; for a stream, just before the terminal event is relayed, so a
    client that reads `response.completed` and then asks for the id finds it."""
    if settings.RESPONSES_STORE_TTL_SECONDS <= 0 or response.status_code != 200:
        return response
    if isinstance(response, StreamingHttpResponse):
        response.streaming_content = _stream_kept(
            response.streaming_content,  # type: ignore[arg-type]
            user_id=user_id,
            input_items=input_items,
        )
    elif isinstance(response, HttpResponse):
        await _save_quietly(
            user_id=user_id, response=orjson.loads(response.content), input_items=input_items
        )
    return response


async def _stream_kept(
    content: AsyncIterator[bytes], *, user_id: int, input_items: list[Any]
) -> AsyncIterator[bytes]:
    async for chunk in content:
        final = _terminal_response(chunk)
        if final is not None:
            await _save_quietly(user_id=user_id, response=final, input_items=input_items)
        yield chunk


def _terminal_response(chunk: bytes) -> dict[str, Any] | None:
    """The Response object of a terminal event in `chunk` (the relay writes whole events)."""
    for marker in _TERMINAL_EVENTS:
        at = chunk.rfind(marker)
        if at == 0 or (at > 0 and chunk[at - 2 : at] == b"\n\n"):
            data = chunk[at + len(marker) :].partition(b"\n")[0].removeprefix(b"data: ")
            response: dict[str, Any] = orjson.loads(data)["response"]
            return response
    return None


async def _save_quietly(*, user_id: int, response: dict[str, Any], input_items: list[Any]) -> None:
    # The answer itself succeeded: failing to keep it must not fail it; a later
    # previous_response_id then gets an honest 400.
    try:
        await orm_call(stored_response_save)(
            user_id=user_id, response=response, input_items=input_items, now=clock.now()
        )
    except DatabaseError as exc:
        logger.error("response %s not stored: %s", response.get("id"), type(exc).__name__)
