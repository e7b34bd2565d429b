"""Tests for rotator.stored_responses: what `store: true` keeps, for whom and for how long."""

from datetime import timedelta

import pytest

from common import clock
from common.errors import BadRequest
from rotator.models import StoredResponse
from rotator.stored_responses import (
    conversation_items,
    stored_response_find,
    stored_response_save,
)

pytestmark = pytest.mark.django_db

HELLO = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}


def response(number: int) -> dict[str, object]:
    return {"id": f"resp_{number}", "object": "response", "output": [HELLO]}


def test_a_stored_answer_continues_its_conversation(alice) -> None:
    now = clock.now()
    first_input = [{"type": "message", "role": "user", "content": "Hello"}]
    stored_response_save(
        user_id=alice.user.id, response=response(1), input_items=first_input, now=now
    )
    items = conversation_items(
        body={"previous_response_id": "resp_1", "input": "And now?"},
        user_id=alice.user.id,
        now=now,
    )
    assert items == [
        *first_input,
        HELLO,
        {"type": "message", "role": "user", "content": "And now?"},
    ]


def test_another_users_answer_is_not_found(alice, bob) -> None:
    now = clock.now()
    stored_response_save(user_id=alice.user.id, response=response(1), input_items=[], now=now)
    assert stored_response_find(user_id=bob.user.id, response_id="resp_1", now=now) is None
    with pytest.raises(BadRequest) as refused:
        conversation_items(
            body={"previous_response_id": "resp_1", "input": "x"}, user_id=bob.user.id, now=now
        )
    assert refused.value.code == "previous_response_not_found"
    assert refused.value.param == "previous_response_id"


def test_two_users_may_hold_the_same_response_id(alice, bob) -> None:
    # Response ids follow request ids, which a client may choose.
    now = clock.now()
    stored_response_save(user_id=alice.user.id, response=response(1), input_items=[], now=now)
    stored_response_save(
        user_id=bob.user.id, response={**response(1), "model": "bob's"}, input_items=[], now=now
    )
    found = stored_response_find(user_id=alice.user.id, response_id="resp_1", now=now)
    assert found is not None
    assert "model" not in found.response


def test_answers_expire_after_the_ttl(alice, settings) -> None:
    settings.RESPONSES_STORE_TTL_SECONDS = 60
    now = clock.now()
    stored_response_save(user_id=alice.user.id, response=response(1), input_items=[], now=now)
    later = now + timedelta(seconds=61)
    assert stored_response_find(user_id=alice.user.id, response_id="resp_1", now=later) is None
    stored_response_save(user_id=alice.user.id, response=response(2), input_items=[], now=later)
    assert list(StoredResponse.objects.values_list("response_id", flat=True)) == ["resp_2"]


def test_each_user_keeps_only_the_newest_answers(alice, bob, settings) -> None:
    settings.RESPONSES_STORE_MAX_PER_USER = 2
    now = clock.now()
    stored_response_save(user_id=bob.user.id, response=response(0), input_items=[], now=now)
    for number in range(1, 4):
        stored_response_save(
            user_id=alice.user.id,
            response=response(number),
            input_items=[],
            now=now + timedelta(seconds=number),
        )
    kept = StoredResponse.objects.filter(user=alice.user).values_list("response_id", flat=True)
    assert sorted(kept) == ["resp_2", "resp_3"]
    assert StoredResponse.objects.filter(user=bob.user).count() == 1


def test_a_ttl_of_zero_stores_nothing(alice, settings) -> None:
    settings.RESPONSES_STORE_TTL_SECONDS = 0
    stored_response_save(
        user_id=alice.user.id, response=response(1), input_items=[], now=clock.now()
    )
    assert not StoredResponse.objects.exists()


def test_without_previous_response_id_the_input_is_the_items(alice) -> None:
    assert conversation_items(body={"input": "Hi"}, user_id=alice.user.id, now=clock.now()) == [
        {"type": "message", "role": "user", "content": "Hi"}
    ]


def test_keeping_an_answer_costs_a_bounded_number_of_queries(
    alice, django_assert_max_num_queries
) -> None:
    stored_response_save(
        user_id=alice.user.id, response=response(1), input_items=[], now=clock.now()
    )
    # Two statements, even when replacing an id: an upsert and one DELETE for both bounds
    # (it was up to six: a savepoint, a locked lookup, the update, then two trims). The
    # Responses API's bench row spent most of its time there.
    with django_assert_max_num_queries(2):
        stored_response_save(
            user_id=alice.user.id, response=response(1), input_items=[], now=clock.now()
        )
