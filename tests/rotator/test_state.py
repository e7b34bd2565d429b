"""Both state backends agree: the database's conditional updates and the Redis Lua script
implement the same selection, rate windows and staleness rules."""

import asyncio
import time
import uuid

import pytest
from django.conf import settings as django_settings

from rotator.models import PoolState
from rotator.selection import NonePicked, Picked, Strategy
from rotator.state import (
    AliasesStale,
    DatabaseState,
    KeyLimited,
    PickRequest,
    RedisState,
    Stale,
    state_key,
)

REDIS_URL = django_settings.REDIS_URL or "redis://127.0.0.1:6379/0"


def now_ms() -> int:
    """Real epoch milliseconds: Redis expires keys by its own clock (garbage collection only)."""
    return int(time.time() * 1000)


@pytest.fixture(params=["database", "redis"])
def backend(request, alice):
    if request.param == "database":
        return DatabaseState()
    return RedisState(REDIS_URL)


def run(coroutine):
    return asyncio.run(coroutine)


def pick_request(alice, backend, **overrides) -> PickRequest:
    state = PoolState.objects.get(user=alice.user)
    ids = tuple(c.id for c in alice.credentials)
    arguments = {
        "user_id": alice.user.id,
        "version": state.version,
        "model": "m",
        "strategy": Strategy.ROUND_ROBIN,
        "now_ms": now_ms(),
        "excluded": (),
        "ordered_ids": ids,
        "api_key_id": alice.api_key.id,
        "count_rate": False,
        "requests_per_minute": None,
        "requests_per_day": None,
        "minute": 1,
        "day": "2026-01-01",
    }
    arguments.update(overrides)
    return PickRequest(**arguments)


async def _install(backend, alice, marks=None):
    state = await PoolState.objects.aget(user=alice.user)
    await backend.order_install(
        user_id=alice.user.id,
        version=state.version,
        cursor=state.cursor,
        ordered_ids=[c.id for c in alice.credentials],
        marks=marks or {},
    )


def _prepare(backend, alice, marks=None):
    PoolState.objects.get_or_create(user=alice.user)
    run(_install(backend, alice, marks))


pytestmark = pytest.mark.django_db(transaction=True)


def test_round_robin_cycles_through_the_pool_in_order(backend, alice):
    _prepare(backend, alice)
    picked = [run(backend.pick(pick_request(alice, backend))).credential_id for _ in range(6)]
    ids = [c.id for c in alice.credentials]
    assert picked == ids + ids


def test_marked_credentials_are_skipped_and_the_soonest_return_reported(backend, alice):
    first, second, third = (c.id for c in alice.credentials)
    soon = now_ms() + 60_000
    marks = {"m": {first: soon, second: soon + 1_000}}
    _prepare(backend, alice, marks)
    if isinstance(backend, DatabaseState):
        from rotator.models import Mark
        from rotator.state import datetime_of_ms

        for credential_id, until in marks["m"].items():
            Mark.objects.create(
                credential_id=credential_id,
                model="m",
                reason="rate_limited",
                until=datetime_of_ms(until),
            )
    assert run(backend.pick(pick_request(alice, backend))).credential_id == third
    outcome = run(backend.pick(pick_request(alice, backend, excluded=(third,))))
    assert outcome == NonePicked(soonest_until_ms=soon)


def test_a_per_minute_window_refuses_past_the_limit_and_counts_only_first_attempts(backend, alice):
    _prepare(backend, alice)
    request = pick_request(alice, backend, count_rate=True, requests_per_minute=2)
    assert isinstance(run(backend.pick(request)), Picked)
    assert isinstance(run(backend.pick(request)), Picked)
    retry = pick_request(alice, backend, count_rate=False, requests_per_minute=2)
    assert isinstance(run(backend.pick(retry)), Picked), "retries are free"
    assert run(backend.pick(request)) == KeyLimited(window="minute")
    next_minute = pick_request(alice, backend, count_rate=True, requests_per_minute=2, minute=2)
    assert isinstance(run(backend.pick(next_minute)), Picked)


def test_an_old_snapshot_version_reads_as_stale(backend, alice):
    _prepare(backend, alice)
    request = pick_request(alice, backend)
    backend.pool_invalidate(user_id=alice.user.id)
    assert run(backend.pick(request)) == Stale()


def test_a_pick_on_an_older_alias_table_is_refused_before_it_counts_or_advances(backend, alice):
    _prepare(backend, alice)
    current = run(backend.aliases_version())
    first = run(backend.pick(pick_request(alice, backend, aliases_version=current)))
    assert isinstance(first, Picked)
    backend.aliases_invalidate()  # an alias changed in another process
    limited = {"count_rate": True, "requests_per_minute": 1, "minute": 7}
    stale = pick_request(alice, backend, aliases_version=current, **limited)
    assert run(backend.pick(stale)) == AliasesStale()
    # Neither the cursor nor the key's minute window moved: the next pick is the second
    # credential, and the window still has its one request.
    fresh = pick_request(alice, backend, aliases_version=run(backend.aliases_version()), **limited)
    after = run(backend.pick(fresh))
    assert after == Picked(credential_id=alice.credentials[1].id, cursor_after=None)
    assert run(backend.pick(fresh)) == KeyLimited(window="minute")
    assert isinstance(run(backend.pick(pick_request(alice, backend))), Picked), "no check asked"


def test_concurrent_picks_never_hand_out_the_same_cursor_twice(backend, alice):
    _prepare(backend, alice)
    request = pick_request(alice, backend)

    async def many():
        return await asyncio.gather(*(backend.pick(request) for _ in range(30)))

    picked = [outcome.credential_id for outcome in run(many())]
    assert sorted(picked.count(c.id) for c in alice.credentials) == [10, 10, 10]


def test_redis_keys_live_under_the_configured_prefix(settings):
    settings.STATE_KEY_PREFIX = f"p-{uuid.uuid4().hex[:6]}"
    assert state_key("pool", 7) == f"{settings.STATE_KEY_PREFIX}:pool:7"


def test_the_breaker_opens_once_at_the_threshold_and_a_lapsed_window_starts_anew(backend, alice):
    credential_id = alice.credentials[0].id
    start = now_ms()

    def failure(at_ms: int) -> bool:
        return run(
            backend.failure_count(
                credential_id=credential_id, now_ms=at_ms, window_ms=60_000, threshold=3
            )
        )

    assert [failure(start), failure(start + 1)] == [False, False]
    assert failure(start + 70_000) is False  # the window lapsed: this is the first again
    assert [failure(start + 70_001), failure(start + 70_002)] == [False, True]
    assert failure(start + 70_003) is False  # opening restarts the count
    run(backend.failures_clear(credential_id=credential_id))
    assert [failure(start + 70_004), failure(start + 70_005)] == [False, False]


def test_a_lease_has_one_holder_until_it_ends_or_is_released(backend, alice):
    name = f"test-{uuid.uuid4().hex}"
    start = now_ms()
    assert backend.lease_take(name=name, holder="a", now_ms=start, ttl_ms=5_000)
    assert not backend.lease_take(name=name, holder="b", now_ms=start + 1, ttl_ms=5_000)
    assert backend.lease_take(name=name, holder="a", now_ms=start + 2, ttl_ms=5_000)
    assert backend.lease_take(name=name, holder="b", now_ms=start + 5_003, ttl_ms=5_000)
    backend.lease_release(name=name, holder="a")  # not a's any more: nothing happens
    assert not backend.lease_take(name=name, holder="a", now_ms=start + 5_004, ttl_ms=5_000)
    backend.lease_release(name=name, holder="b")
    assert backend.lease_take(name=name, holder="a", now_ms=start + 5_005, ttl_ms=5_000)
