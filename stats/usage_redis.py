"""Usage counts in Redis, on the production profile: counted on the request path, moved to the
database by whichever process flushes next, each batch exactly once.

Why: a per-process buffer loses its counts when the process is killed outright. Here a
request's counts are in Redis before its answer's last byte goes out (`usage_settled`, awaited
by the response path), so a killed worker loses nothing it answered. Concurrent requests share
one round trip: while one write is in flight, the next batch gathers.

Moving counts to the database: a flush renames the live hash to a batch of its own (atomic, so
each count lands in exactly one batch), then writes the batch's counts and its id
(`UsageBatchApplied`) in one transaction, then deletes the batch from Redis. A flusher that
dies between its commit and the delete leaves the batch behind; any process adopts batches
older than ORPHAN_SECONDS, and the id already in the database says "added already".

What Redis itself loses: counts not yet flushed (at most USAGE_FLUSH_SECONDS of them) when
Redis restarts without persistence (docs/reliability.md). While Redis cannot be reached, counts
go to the process's buffer and are flushed from there.
"""

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import cast

import orjson
from django.db import IntegrityError, transaction
from redis.exceptions import RedisError

from common import clock
from common.events import UsageEvent
from rotator.state import RedisState, state_key
from stats.models import UsageBatchApplied
from stats.usage import UsageBatch

logger = logging.getLogger("stats.usage")

# A batch nobody finished applying this long after it was taken is adopted by the next flush.
ORPHAN_SECONDS = 10.0
# How long Redis remembers that a write landed; a write whose fate is unknown for longer is
# counted from the process (it may then be counted twice).
MARKER_SECONDS = 3600
# Writes of unknown fate kept per process while Redis cannot be asked; beyond, the oldest are
# counted from the process without asking.
UNSURE_MAX = 10_000

# KEYS: 1 the live hash, 2 this write's marker. ARGV: 1 n, then n (field, amount) to add;
# then m, then m (field, value) to raise to value; then (field, value) pairs to set.
# The marker makes a write idempotent: a write sent again (redis-py retries once on a broken
# connection, which may have carried it already) adds nothing the second time, and a process
# whose write failed can ask whether it landed.
_ADD_LUA = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[#ARGV]) then return 0 end
local i = 2
for _ = 1, tonumber(ARGV[1]) do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local raise = tonumber(ARGV[i])
i = i + 1
for _ = 1, raise do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > current then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  i = i + 2
end
while i < #ARGV - 1 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return 1
"""

# KEYS: 1 the live hash, 2 the new batch's hash, 3 the batches zset. ARGV: 1 batch id, 2 now.
_TAKE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""


@dataclass
class _Gathering:
    """The counts of requests answered since the last write went out, and who waits on them."""

    future: "asyncio.Future[None]"
    events: list[tuple[UsageEvent, datetime]] = field(default_factory=list)
    write_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    adds: dict[str, int] = field(default_factory=dict)
    raises: dict[str, int] = field(default_factory=dict)
    sets: dict[str, str] = field(default_factory=dict)


@dataclass
class _LoopState:
    gathering: _Gathering
    in_flight: _Gathering | None = None
    writer: "asyncio.Task[None] | None" = None


def _bucket_field(event: UsageEvent) -> str:
    return orjson.dumps(
        [
            event.day.isoformat(),
            event.user_id,
            event.api_key_id,
            event.credential_id,
            event.model,
            event.requested_model or event.model,
        ]
    ).decode()


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class RedisUsage:
    """Counts into one Redis hash; `fallback` takes what Redis refused."""

    def __init__(
        self, state: RedisState, *, fallback: Callable[[UsageEvent, datetime], None]
    ) -> None:
        self._state = state
        self._fallback = fallback
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        # Writes that failed without saying whether Redis applied them (write id, events):
        # the next flush asks Redis and counts here only those that did not land.
        self._unsure: list[tuple[str, list[tuple[UsageEvent, datetime]]]] = []
        self._unsure_lock = threading.Lock()
        # Batches this process took and could not apply yet (the database refused): retried at
        # its next flush, not left for adoption ORPHAN_SECONDS later.
        self._pending: list[str] = []

    @property
    def _live(self) -> str:
        return state_key("usage", "live")

    def _marker(self, write_id: str) -> str:
        return state_key("usage", "w", write_id)

    @property
    def _batches(self) -> str:
        return state_key("usage", "batches")

    def _batch_key(self, batch_id: str) -> str:
        return state_key("usage", "batch", batch_id)

    # -------------------------------------------------------------- the request path

    def usage_add(
        self, event: UsageEvent, *, at: datetime, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Adds one event to the counts the next write sends, starting that write if none is
        in flight. No I/O here: `settled` waits for the write."""
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState(gathering=_Gathering(loop.create_future()))
        gathering = state.gathering
        gathering.events.append((event, at))
        bucket = _bucket_field(event)
        adds = gathering.adds
        for index, amount in (
            (0, 1),
            (1 if event.success else 2, 1),
            (3, int(event.rate_limited)),
            (4, event.prompt_tokens),
            (5, event.completion_tokens),
            (6, event.total_tokens),
        ):
            if amount:
                name = f"{bucket}#{index}"
                adds[name] = adds.get(name, 0) + amount
        when = _ms(at)
        if event.credential_id is not None:
            gathering.sets[f"L#{event.credential_id}"] = event.credential_label
            name = f"U#{event.credential_id}"
            gathering.raises[name] = max(gathering.raises.get(name, 0), when)
        if event.api_key_id is not None:
            name = f"K#{event.api_key_id}"
            gathering.raises[name] = max(gathering.raises.get(name, 0), when)
        if state.writer is None:
            state.writer = loop.create_task(self._write_while_gathering(state, loop))

    async def settled(self) -> None:
        """Returns once every count added in this loop so far is in Redis (or, if Redis failed,
        in the process's buffer)."""
        state = self._loops.get(asyncio.get_running_loop())
        if state is None:
            return
        if state.gathering.events:
            waiting = state.gathering.future
        elif state.in_flight is not None:
            waiting = state.in_flight.future
        else:
            return
        # Shielded: a client that goes away must not cancel the write other requests wait on.
        await asyncio.shield(waiting)

    async def _write_while_gathering(
        self, state: _LoopState, loop: asyncio.AbstractEventLoop
    ) -> None:
        # One write at a time per loop, so batches reach Redis in the order they were counted
        # and `settled` on the newest one covers every earlier one.
        try:
            while state.gathering.events:
                batch = state.in_flight = state.gathering
                state.gathering = _Gathering(loop.create_future())
                try:
                    await self._send(batch)
                except (RedisError, OSError) as exc:
                    logger.warning(
                        "usage counts kept in this process (Redis: %s)", type(exc).__name__
                    )
                    self._keep_here(batch)
                except BaseException:  # cancelled at shutdown: the flush takes them from here
                    self._keep_here(batch)
                    raise
                finally:
                    if not batch.future.done():
                        batch.future.set_result(None)
                    state.in_flight = None
        finally:
            state.writer = None

    def _keep_here(self, batch: _Gathering) -> None:
        """Keeps a failed write's events until Redis can say whether it landed."""
        overflow: list[tuple[str, list[tuple[UsageEvent, datetime]]]] = []
        with self._unsure_lock:
            self._unsure.append((batch.write_id, batch.events))
            if len(self._unsure) > UNSURE_MAX:
                overflow = self._unsure[: len(self._unsure) - UNSURE_MAX]
                del self._unsure[: len(overflow)]
        for _, events in overflow:
            for event, at in events:
                self._fallback(event, at)

    def unsure_resolve(self) -> int:
        """Asks Redis about every write whose fate was unknown: those that landed are counted
        there already; the others go to the process buffer. Returns the writes moved to the
        buffer. Raises RedisError (keeping them all) while Redis cannot be asked."""
        with self._unsure_lock:
            unsure, self._unsure = self._unsure, []
        if not unsure:
            return 0
        try:
            client = self._state.sync_client
            pipe = client.pipeline(transaction=False)
            for write_id, _ in unsure:
                pipe.exists(self._marker(write_id))
            landed = pipe.execute()
        except BaseException:
            with self._unsure_lock:
                self._unsure[:0] = unsure
            raise
        moved = 0
        for (_, events), found in zip(unsure, landed, strict=True):
            if not found:
                moved += 1
                for event, at in events:
                    self._fallback(event, at)
        return moved

    async def _send(self, batch: _Gathering) -> None:
        args: list[str | int] = [len(batch.adds)]
        for name, amount in batch.adds.items():
            args += (name, amount)
        args.append(len(batch.raises))
        for name, value in batch.raises.items():
            args += (name, value)
        for name, text in batch.sets.items():
            args += (name, text)
        args.append(MARKER_SECONDS)
        keys = (self._live, self._marker(batch.write_id))
        await self._state.script_run(_ADD_LUA, keys=keys, args=args)

    # -------------------------------------------------------------- moving to the database

    def batches_apply(self, write: Callable[[UsageBatch], None]) -> int:
        """Takes the live counts as a new batch and applies it, with every batch left behind
        by a flusher that failed or died, each exactly once (`write` adds one batch's counts to
        the database inside the transaction this opens). Returns the batches applied."""
        client = self._state.sync_client
        now_ms = _ms(clock.now())
        batch_id = uuid.uuid4().hex
        taken = client.eval(
            _TAKE_LUA, 3, self._live, self._batch_key(batch_id), self._batches, batch_id, now_ms
        )
        if int(taken):
            self._pending.append(batch_id)
        left = client.zrangebyscore(self._batches, "-inf", now_ms - ORPHAN_SECONDS * 1000)
        ids = list(
            dict.fromkeys([*self._pending, *(raw.decode() for raw in cast(list[bytes], left))])
        )
        applied = 0
        for one in ids:
            raw_fields = cast(dict[bytes, bytes], client.hgetall(self._batch_key(one)))
            if raw_fields:
                batch = usage_batch_parse(raw_fields)
                try:
                    with transaction.atomic():
                        UsageBatchApplied.objects.create(batch=one, applied_at=clock.now())
                        write(batch)
                    applied += 1
                except IntegrityError:
                    pass  # another process applied it (and may not have lived to delete it)
            client.delete(self._batch_key(one))
            client.zrem(self._batches, one)
            if one in self._pending:
                self._pending.remove(one)
        return applied


def usage_batch_parse(raw: dict[bytes, bytes]) -> UsageBatch:
    """One batch read back from Redis, as the database writer (stats.usage) takes it."""
    counts: dict[tuple[date, int, int | None, int | None, str, str], list[int]] = {}
    labels: dict[int, str] = {}
    credential_requests: dict[int, int] = {}
    credential_used: dict[int, datetime] = {}
    key_used: dict[int, datetime] = {}
    for name_bytes, value in raw.items():
        name = name_bytes.decode()
        head, _, tail = name.rpartition("#")
        if head.startswith("["):
            day, user_id, key_id, credential_id, model, requested = orjson.loads(head)
            key = (date.fromisoformat(day), user_id, key_id, credential_id, model, requested)
            row = counts.setdefault(key, [0] * 7)
            row[int(tail)] += int(value)
            if tail == "0" and credential_id is not None:
                credential_requests[credential_id] = credential_requests.get(
                    credential_id, 0
                ) + int(value)
        elif head == "L":
            labels[int(tail)] = value.decode()
        elif head == "U":
            credential_used[int(tail)] = datetime.fromtimestamp(int(value) / 1000, UTC)
        elif head == "K":
            key_used[int(tail)] = datetime.fromtimestamp(int(value) / 1000, UTC)
    return UsageBatch(
        counts=counts,
        labels=labels,
        credential_requests=credential_requests,
        credential_used=credential_used,
        key_used=key_used,
    )
