"""Counts in Redis reach the database exactly once, whichever process moves them and however
a flusher fails (stats/usage_redis.py). Runs against the machine's Redis on both profiles,
under a key prefix of its own."""

import asyncio
import contextlib
import uuid
from datetime import date

import pytest
from django.conf import settings as django_settings
from django.test import override_settings

from common import clock
from common.events import UsageEvent
from rotator.state import RedisState
from stats.models import UsageBatchApplied, UsageCounter
from stats.usage import _redis_batch_write
from stats.usage_redis import ORPHAN_SECONDS, RedisUsage

REDIS_URL = django_settings.REDIS_URL or "redis://127.0.0.1:6379/0"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def counter():
    prefix = f"test-usage-{uuid.uuid4().hex[:8]}"
    with override_settings(STATE_KEY_PREFIX=prefix):
        state = RedisState(REDIS_URL)
        kept: list[UsageEvent] = []
        yield RedisUsage(state, fallback=lambda event, at: kept.append(event)), kept
        for key in state.sync_client.scan_iter(match=f"{prefix}:*"):
            state.sync_client.delete(key)
        state.close()
        clock.clock_restore()


def _event(persona, **fields) -> UsageEvent:
    values = {
        "day": date(2026, 12, 2),
        "user_id": persona.user.id,
        "api_key_id": persona.api_key.id,
        "credential_id": persona.credentials[0].id,
        "credential_label": "first",
        "model": "gemini-2.5-flash",
        "success": True,
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
    }
    return UsageEvent(**{**values, **fields})


def _count(counter: RedisUsage, events: list[UsageEvent]) -> None:
    async def record() -> None:
        loop = asyncio.get_running_loop()
        for event in events:
            counter.usage_add(event, at=clock.now(), loop=loop)
        await counter.settled()
        await counter._state.client().aclose()

    asyncio.run(record())


def _requests() -> int:
    return sum(UsageCounter.objects.values_list("requests", flat=True))


def _failing_write(batch) -> None:
    raise RuntimeError("the database went away mid-flush")


def test_a_batch_whose_write_failed_is_retried_by_its_process_at_the_next_flush(counter, alice):
    usage, kept = counter
    other = RedisUsage(usage._state, fallback=lambda event, at: None)  # another worker
    _count(usage, [_event(alice), _event(alice, success=False, total_tokens=0)])
    with pytest.raises(RuntimeError):
        usage.batches_apply(_failing_write)
    assert _requests() == 0
    # Too young for another worker to adopt: its own flusher may still be writing it...
    assert other.batches_apply(_redis_batch_write) == 0
    # ...and its own flusher, which knows it failed, does not wait ORPHAN_SECONDS for it.
    assert usage.batches_apply(_redis_batch_write) == 1
    clock.clock_travel(seconds=ORPHAN_SECONDS + 1)
    assert other.batches_apply(_redis_batch_write) == 0
    assert usage.batches_apply(_redis_batch_write) == 0
    [row] = UsageCounter.objects.all()
    assert (row.requests, row.successes, row.failures, row.total_tokens) == (2, 1, 1, 7)
    assert kept == []


def test_a_batch_left_by_a_worker_that_died_is_adopted_once_by_another(counter, alice):
    usage, _ = counter
    other = RedisUsage(usage._state, fallback=lambda event, at: None)
    _count(usage, [_event(alice)] * 2)
    with pytest.raises(RuntimeError):
        usage.batches_apply(_failing_write)  # and then the worker is gone
    assert other.batches_apply(_redis_batch_write) == 0
    clock.clock_travel(seconds=ORPHAN_SECONDS + 1)
    assert other.batches_apply(_redis_batch_write) == 1
    assert other.batches_apply(_redis_batch_write) == 0
    assert _requests() == 2


def test_a_batch_a_dead_flusher_committed_but_never_deleted_is_not_added_again(counter, alice):
    usage, _ = counter
    _count(usage, [_event(alice)] * 3)
    # A flusher took the live counts as its batch, committed them with the batch's id, and
    # was killed before it could delete the batch from Redis.
    redis = usage._state.sync_client
    live, batches = usage._live, usage._batches
    redis.rename(live, usage._batch_key("dead-flusher"))
    redis.zadd(batches, {"dead-flusher": int(clock.now().timestamp() * 1000)})
    UsageBatchApplied.objects.create(batch="dead-flusher", applied_at=clock.now())
    UsageCounter.objects.create(
        bucket="committed-by-the-dead-flusher", day=date(2026, 12, 2), user=alice.user,
        model="gemini-2.5-flash", requests=3,
    )  # fmt: skip
    clock.clock_travel(seconds=ORPHAN_SECONDS + 1)
    assert usage.batches_apply(_redis_batch_write) == 0
    assert _requests() == 3
    assert not redis.exists(usage._batch_key("dead-flusher"))
    assert redis.zcard(batches) == 0


def _gathering(usage: RedisUsage, events: list[UsageEvent]):
    """The counts one write would carry, gathered as the request path gathers them (its own
    write is called off before it starts)."""

    async def gather():
        loop = asyncio.get_running_loop()
        for event in events:
            usage.usage_add(event, at=clock.now(), loop=loop)
        state = usage._loops.pop(loop)
        assert state.writer is not None
        state.writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.writer
        return state.gathering

    return asyncio.run(gather())


def _send(usage: RedisUsage, gathering) -> None:
    async def send() -> None:
        await usage._send(gathering)
        await usage._state.client().aclose()

    asyncio.run(send())


def test_a_write_sent_twice_is_added_once(counter, alice):
    """redis-py sends a command again after a broken connection, which may have carried it."""
    usage, _ = counter
    write = _gathering(usage, [_event(alice)] * 2)
    _send(usage, write)
    _send(usage, write)
    assert usage.batches_apply(_redis_batch_write) == 1
    assert _requests() == 2


def test_a_failed_write_is_counted_from_the_process_only_if_it_never_landed(counter, alice):
    """A write whose reply was lost may have landed: the flush asks Redis before counting it
    again from the process (before, every failed write fell back to the process's buffer and
    one that had landed was counted twice)."""
    usage, kept = counter
    landed = _gathering(usage, [_event(alice)] * 3)
    _send(usage, landed)
    lost = _gathering(usage, [_event(alice, success=False)])
    usage._keep_here(landed)
    usage._keep_here(lost)
    assert kept == []  # nothing counted from the process before Redis is asked
    assert usage.unsure_resolve() == 1
    assert kept == [event for event, _ in lost.events]
    assert usage.batches_apply(_redis_batch_write) == 1
    assert _requests() == 3
