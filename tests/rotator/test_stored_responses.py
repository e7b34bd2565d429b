"""Tests for rotator.stored_responses: what `store: true` keeps, for whom and for how long."""

import asyncio
import threading
from collections.abc import Awaitable
from datetime import timedelta

import orjson
import pytest
from django.db import connection
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext

from common import clock
from common.errors import BadRequest
from rotator.models import StoredResponse
from rotator.orm import orm_call, queries_made
from rotator.stored_responses import (
    KeptResponse,
    conversation_items,
    stored_response_find,
    stored_response_keep,
    stored_response_lookup,
    stored_response_save,
    stored_responses_flush,
    stored_responses_pending_drop,
    stored_responses_trim_counter_reset,
)
from rotator.tasks import stored_responses_expire_task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _nothing_held_from_other_tests() -> None:
    stored_responses_pending_drop()


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


def test_storing_an_id_again_replaces_it(alice) -> None:
    now = clock.now()
    stored_response_save(user_id=alice.user.id, response=response(1), input_items=[], now=now)
    stored_response_save(
        user_id=alice.user.id, response={**response(1), "model": "again"}, input_items=[], now=now
    )
    found = stored_response_find(user_id=alice.user.id, response_id="resp_1", now=now)
    assert found is not None
    assert found.response["model"] == "again"
    assert StoredResponse.objects.count() == 1


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
    settings.RESPONSES_STORE_TRIM_EVERY = 1
    now = clock.now()
    stored_response_save(user_id=alice.user.id, response=response(1), input_items=[], now=now)
    later = now + timedelta(seconds=61)
    assert stored_response_find(user_id=alice.user.id, response_id="resp_1", now=later) is None
    stored_response_save(user_id=alice.user.id, response=response(2), input_items=[], now=later)
    assert list(StoredResponse.objects.values_list("response_id", flat=True)) == ["resp_2"]


def test_each_user_keeps_only_the_newest_answers(alice, bob, settings) -> None:
    settings.RESPONSES_STORE_MAX_PER_USER = 2
    settings.RESPONSES_STORE_TRIM_EVERY = 1
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


# Autocommit, as on the request path (a test transaction would add savepoints).
@pytest.mark.django_db(transaction=True)
def test_keeping_an_answer_costs_one_statement_between_trims(alice, settings) -> None:
    settings.RESPONSES_STORE_TRIM_EVERY = 3
    stored_responses_trim_counter_reset()
    # A new id is one INSERT, the same id again too (an upsert); the third save also trims
    # (one DELETE for both bounds). Trimming on every save walked the cap's
    # worth of index entries each time: the Responses API's bench row spent most of its time
    # there. (SQLite logs the trim's BEGIN and COMMIT, PostgreSQL does not: not counted.)
    for number, statements in ((1, ["INSERT"]), (1, ["INSERT"]),
                               (2, ["INSERT", "DELETE"]), (3, ["INSERT"])):  # fmt: skip
        with CaptureQueriesContext(connection) as captured:
            stored_response_save(
                user_id=alice.user.id, response=response(number), input_items=[], now=clock.now()
            )
        verbs = [query["sql"].split(" ", 1)[0] for query in captured.captured_queries]
        assert [verb for verb in verbs if verb not in ("BEGIN", "COMMIT")] == statements


def test_between_trims_a_user_holds_at_most_the_cap_plus_the_cadence(alice, settings) -> None:
    settings.RESPONSES_STORE_MAX_PER_USER = 2
    settings.RESPONSES_STORE_TRIM_EVERY = 3
    stored_responses_trim_counter_reset()
    now = clock.now()
    held = []
    for number in range(1, 10):
        stored_response_save(
            user_id=alice.user.id,
            response=response(number),
            input_items=[],
            now=now + timedelta(seconds=number),
        )
        held.append(StoredResponse.objects.filter(user=alice.user).count())
    # Trims after saves 3, 6 and 9 leave the newest two; never more than 2 + 3 - 1 between.
    assert held == [1, 2, 2, 3, 4, 2, 3, 4, 2]
    kept = StoredResponse.objects.filter(user=alice.user).values_list("response_id", flat=True)
    assert sorted(kept) == ["resp_8", "resp_9"]


def test_an_expired_answer_is_never_found_before_its_trim(alice, settings) -> None:
    settings.RESPONSES_STORE_TTL_SECONDS = 60
    settings.RESPONSES_STORE_TRIM_EVERY = 100
    now = clock.now()
    stored_response_save(user_id=alice.user.id, response=response(1), input_items=[], now=now)
    assert StoredResponse.objects.count() == 1
    later = now + timedelta(seconds=61)
    assert stored_response_find(user_id=alice.user.id, response_id="resp_1", now=later) is None
    with pytest.raises(BadRequest):
        conversation_items(
            body={"previous_response_id": "resp_1", "input": "x"}, user_id=alice.user.id, now=later
        )


def test_the_hourly_task_deletes_every_users_expired_answers(alice, bob, settings) -> None:
    settings.RESPONSES_STORE_TTL_SECONDS = 60
    settings.RESPONSES_STORE_TRIM_EVERY = 100
    old = clock.now() - timedelta(seconds=120)
    stored_response_save(user_id=alice.user.id, response=response(1), input_items=[], now=old)
    stored_response_save(user_id=bob.user.id, response=response(2), input_items=[], now=old)
    stored_response_save(user_id=bob.user.id, response=response(3), input_items=[], now=clock.now())
    assert stored_responses_expire_task() == "deleted 2 expired stored response(s)"
    assert list(StoredResponse.objects.values_list("response_id", flat=True)) == ["resp_3"]
    assert "rotator.tasks.stored_responses_expire_task" in {
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }


# --------------------------------------------------------------------- delayed writes


def keep(user_id: int, number: int) -> Awaitable[object]:
    """Keeps response(number) as the view does for a JSON answer."""
    answer = HttpResponse(orjson.dumps(response(number)), content_type="application/json")
    return stored_response_keep(answer, user_id=user_id, input_items=[])


def stored_ids() -> list[str]:
    return sorted(StoredResponse.objects.values_list("response_id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_answers_kept_within_one_delay_are_found_at_once_and_written_in_one_statement(
    alice, settings
) -> None:
    settings.RESPONSES_STORE_WRITE_DELAY_MS = 60_000  # only the flush below writes
    stored_responses_trim_counter_reset()

    async def scenario() -> int:
        for number in (1, 2, 3):
            await keep(alice.user.id, number)
        # Not written yet, and found all the same: the client's next request needs it.
        assert await orm_call(stored_ids)() == []
        for number in (1, 2, 3):
            found = await stored_response_lookup(
                user_id=alice.user.id, response_id=f"resp_{number}"
            )
            assert found is not None and found.response["id"] == f"resp_{number}"
        before = queries_made()
        await stored_responses_flush()
        return queries_made() - before

    assert asyncio.run(scenario()) == 1
    assert stored_ids() == ["resp_1", "resp_2", "resp_3"]


@pytest.mark.django_db(transaction=True)
def test_a_kept_answer_is_written_once_its_delay_has_passed(alice, settings) -> None:
    settings.RESPONSES_STORE_WRITE_DELAY_MS = 20

    async def scenario() -> None:
        await keep(alice.user.id, 1)
        for _ in range(500):  # the timer's write, however slow the machine: up to 10 s
            if await orm_call(stored_ids)():
                return
            await asyncio.sleep(0.02)

    asyncio.run(scenario())
    assert stored_ids() == ["resp_1"]


@pytest.mark.django_db(transaction=True)
def test_a_lookup_that_misses_waits_once_for_another_processes_delayed_write(
    alice, settings
) -> None:
    # Another worker answered resp_1 and writes it after its delay; this worker's lookup
    # must wait for it rather than refuse the client's previous_response_id.
    settings.RESPONSES_STORE_WRITE_DELAY_MS = 1000  # the lookup looks again after 2.1 s
    started = threading.Event()

    def other_process_writes() -> None:
        started.wait(timeout=10)
        stored_response_save(
            user_id=alice.user.id, response=response(1), input_items=[], now=clock.now()
        )

    writer = threading.Thread(target=other_process_writes)
    writer.start()

    async def scenario() -> tuple[object, object]:
        started.set()
        found = await stored_response_lookup(user_id=alice.user.id, response_id="resp_1")
        missing = await stored_response_lookup(user_id=alice.user.id, response_id="resp_2")
        return found, missing

    found, missing = asyncio.run(scenario())
    writer.join()
    assert isinstance(found, KeptResponse) and found.response_id == "resp_1"
    assert missing is None


@pytest.mark.django_db(transaction=True)
def test_without_a_delay_the_answer_is_written_before_it_is_returned(alice, settings) -> None:
    settings.RESPONSES_STORE_WRITE_DELAY_MS = 0

    async def scenario() -> None:
        await keep(alice.user.id, 1)

    asyncio.run(scenario())
    assert stored_ids() == ["resp_1"]


@pytest.mark.django_db(transaction=True)
def test_a_graceful_stop_writes_the_answers_still_held(alice, settings) -> None:
    from config.asgi import _lifespan

    settings.RESPONSES_STORE_WRITE_DELAY_MS = 60_000
    sent: list[dict[str, str]] = []

    async def receive() -> dict[str, str]:
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, str]) -> None:
        sent.append(message)

    async def scenario() -> None:
        await keep(alice.user.id, 1)
        await _lifespan(receive, send)

    asyncio.run(scenario())
    assert sent == [{"type": "lifespan.shutdown.complete"}]
    assert stored_ids() == ["resp_1"]


@pytest.mark.django_db(transaction=True)
def test_a_write_the_database_refuses_is_logged_and_forgotten(alice, settings, caplog) -> None:
    settings.RESPONSES_STORE_WRITE_DELAY_MS = 60_000
    gone_user = alice.user.id + 1000  # no such user: the foreign key refuses the row

    async def scenario() -> object:
        await keep(gone_user, 1)
        await keep(alice.user.id, 2)  # in the same batch, and kept
        await stored_responses_flush()  # does not raise: the answer was already sent
        settings.RESPONSES_STORE_WRITE_DELAY_MS = 0  # a miss need not wait for other writers
        return await stored_response_lookup(user_id=gone_user, response_id="resp_1")

    assert asyncio.run(scenario()) is None
    assert "1 response(s) not stored: IntegrityError" in caplog.text
    assert stored_ids() == ["resp_2"]
