"""Responses API answers kept with `store: true`, for `previous_response_id` and GET by id."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from rotator.errors import BadRequest
from rotator.models import StoredResponse


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
    StoredResponse.objects.update_or_create(
        user_id=user_id,
        response_id=str(response["id"]),
        defaults={
            "created_at": now,
            "expires_at": now + timedelta(seconds=ttl_seconds),
            "items": [*input_items, *(output if isinstance(output, list) else [])],
            "response": dict(response),
        },
    )
    mine = StoredResponse.objects.filter(user_id=user_id)
    mine.filter(expires_at__lte=now).delete()
    # Two saves at once may both keep one answer over the bound for a moment: accepted, the
    # next save trims it.
    surplus = list(
        mine.order_by("-created_at", "-id").values_list("id", flat=True)[
            settings.RESPONSES_STORE_MAX_PER_USER :
        ]
    )
    if surplus:
        StoredResponse.objects.filter(id__in=surplus).delete()


def stored_response_find(*, user_id: int, response_id: str, now: datetime) -> StoredResponse | None:
    """Returns the user's unexpired stored answer with this id; None for anyone else's."""
    return StoredResponse.objects.filter(
        user_id=user_id, response_id=response_id, expires_at__gt=now
    ).first()


def conversation_continue(*, body: Mapping[str, Any], user_id: int, now: datetime) -> list[Any]:
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
