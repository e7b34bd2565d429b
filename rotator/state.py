"""Shared rotation state (cursor, per-model marks, per-key rate windows): Redis or the database.

One interface, two implementations, chosen once from settings (REDIS_URL). Both are atomic
across server processes: Redis through one Lua script per pick, the database through a
transaction whose first statement locks the pool's row. The database keeps the durable copy
of marks either way (rotator.models.Mark); Redis holds the hot copy and is rebuilt from the
database whenever it has lost it (a restart), because a missing order version reads as stale.
"""

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from rotator.models import (
    AliasState,
    BreakerCount,
    FailureWindow,
    KeyRateWindow,
    Lease,
    Mark,
    PoolState,
)
from rotator.redis_multiplex import MultiplexedRedis
from rotator.selection import NonePicked, Picked, Strategy, credential_choose


@dataclass(frozen=True, slots=True)
class PickRequest:
    user_id: int
    version: int
    model: str
    strategy: Strategy
    now_ms: int
    excluded: tuple[int, ...]
    ordered_ids: Sequence[int]
    api_key_id: int
    # Per-key limits are counted on a request's first attempt only, so retries are free.
    count_rate: bool
    requests_per_minute: int | None
    requests_per_day: int | None
    minute: int
    day: str
    # The alias table's version the request's model was resolved with, when this process
    # has not confirmed it during the request: a pick on an older table than the shared one
    # is refused (AliasesStale) before it changes anything. None: no check.
    aliases_version: int | None = None


@dataclass(frozen=True, slots=True)
class Stale:
    """The caller's snapshot of the pool is older than the shared one: reload and ask again."""


@dataclass(frozen=True, slots=True)
class KeyLimited:
    window: str  # "minute" or "day"


@dataclass(frozen=True, slots=True)
class AliasesStale:
    """The request's model came from an alias table older than the shared one: resolve it
    again and ask again. Nothing was counted or advanced."""


PickOutcome = Picked | NonePicked | Stale | KeyLimited | AliasesStale


def now_ms_of(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def datetime_of_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


class StateBackend(Protocol):
    async def pick(self, request: PickRequest) -> PickOutcome: ...

    async def order_install(
        self,
        *,
        user_id: int,
        version: int,
        cursor: int,
        ordered_ids: Sequence[int],
        marks: Mapping[str, Mapping[int, int]],
    ) -> None: ...

    async def marks_put(
        self, *, user_id: int, credential_ids: Iterable[int], model: str, until_ms: int
    ) -> None: ...

    def marks_drop(self, *, user_id: int, credential_ids: Iterable[int] | None) -> None: ...

    async def pool_version(self, *, user_id: int) -> int | None: ...

    def pool_invalidate(self, *, user_id: int) -> None: ...

    async def aliases_version(self) -> int: ...

    def aliases_invalidate(self) -> None: ...

    def cursor_advance(self, *, user_id: int, by: int) -> int: ...

    def cursors_persist(self, *, user_ids: Iterable[int]) -> None:
        """Copies these pools' cursors to the database, where a restarted Redis finds them."""
        ...

    def failures_add(self, *, name: str, expires_at_ms: int) -> int:
        """Counts one failure under `name` (a window that ends at `expires_at_ms`); returns
        the window's count including this one. Synchronous: sign-ins fail off the hot path."""
        ...

    def failures_count(self, *, name: str) -> int: ...

    async def failure_count(
        self, *, credential_id: int, now_ms: int, window_ms: int, threshold: int
    ) -> bool:
        """Counts one transient failure of a credential, fleet-wide, in a window that starts
        with the first failure and lasts `window_ms`. Returns True for exactly one caller when
        the count reaches `threshold` (it then restarts): that caller opens the breaker."""
        ...

    async def failures_clear(self, *, credential_id: int) -> None: ...

    def lease_take(self, *, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Takes (or renews) the lease `name` for `holder` until now + ttl, unless another
        holder's lease has not ended yet. Returns whether `holder` holds it. Blocking."""
        ...

    def lease_release(self, *, name: str, holder: str) -> None: ...

    def ping(self) -> bool: ...


# --------------------------------------------------------------------------- database backend


class _MarksAhead(Mapping[int, int]):
    """The model's active marks, read window by window in ring order from the cursor.

    credential_choose asks about credentials in ring order and stops at the first free one,
    so a pick reads the marks of the positions it looks at, not the whole pool's: with
    10,000 credentials, 90% of them cooling down, that is one small query instead of 9,000
    rows per request. Windows grow fourfold, so even a pool with nothing free costs a few
    queries; they stay under SQLite's limit on query parameters.
    """

    _FIRST_WINDOW = 32
    _MAX_WINDOW = 900

    def __init__(self, *, request: PickRequest, start: int) -> None:
        self._request = request
        self._start = start
        self._now = datetime_of_ms(request.now_ms)
        self._until: dict[int, int] = {}
        self._read: set[int] = set()
        self._next_offset = 0
        self._window = self._FIRST_WINDOW

    def _read_next(self) -> bool:
        ordered = self._request.ordered_ids
        size = len(ordered)
        if self._next_offset >= size:
            return False
        end = min(size, self._next_offset + self._window)
        ids = [ordered[(self._start + offset) % size] for offset in range(self._next_offset, end)]
        self._next_offset = end
        self._window = min(self._window * 4, self._MAX_WINDOW)
        self._read.update(ids)
        for credential_id, until in Mark.objects.filter(
            credential_id__in=ids, model=self._request.model, until__gt=self._now
        ).values_list("credential_id", "until"):
            self._until[credential_id] = now_ms_of(until)
        return True

    def get(self, key: int, default: Any = None) -> Any:
        while key not in self._read and self._read_next():
            pass
        return self._until.get(key, default)

    def __getitem__(self, key: int) -> int:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return int(value)

    def _read_all(self) -> None:
        while self._read_next():
            pass

    def __iter__(self) -> Iterator[int]:
        self._read_all()
        return iter(self._until)

    def __len__(self) -> int:
        self._read_all()
        return len(self._until)


class DatabaseState:
    """State in the database: for the embedded default, or PostgreSQL without Redis."""

    async def pick(self, request: PickRequest) -> PickOutcome:
        from rotator.orm import orm_call

        return await orm_call(self.pick_sync)(request)

    def pick_sync(self, request: PickRequest) -> PickOutcome:
        increment = 1 if request.strategy is Strategy.ROUND_ROBIN else 0
        with transaction.atomic():
            # The UPDATE takes the pool row's lock until commit, which serialises concurrent
            # picks for one pool across processes (PostgreSQL) as the Lua script does in Redis.
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {PoolState._meta.db_table} SET cursor = cursor + %s "
                    "WHERE user_id = %s RETURNING cursor, version",
                    [increment, request.user_id],
                )
                row = cursor.fetchone()
            if row is None or row[1] != request.version:
                transaction.set_rollback(True)
                return Stale()
            if (
                request.aliases_version is not None
                and _aliases_version_read() != request.aliases_version
            ):
                transaction.set_rollback(True)
                return AliasesStale()
            cursor_before = row[0] - increment
            if request.count_rate:
                limited = self._rate_count(request)
                if limited is not None:
                    transaction.set_rollback(True)
                    return limited
            outcome = credential_choose(
                ordered_ids=request.ordered_ids,
                start=cursor_before,
                strategy=request.strategy,
                marked_until_ms=_MarksAhead(request=request, start=cursor_before),
                excluded=request.excluded,
                now_ms=request.now_ms,
            )
            if isinstance(outcome, Picked) and outcome.cursor_after is not None:
                PoolState.objects.filter(user_id=request.user_id).update(
                    cursor=outcome.cursor_after
                )
            return outcome

    def _rate_count(self, request: PickRequest) -> KeyLimited | None:
        now = datetime_of_ms(request.now_ms)
        windows = (
            ("minute", f"m:{request.minute}", request.requests_per_minute, timedelta(minutes=2)),
            ("day", f"d:{request.day}", request.requests_per_day, timedelta(days=2)),
        )
        for name, window, limit, keep in windows:
            if not limit:
                continue
            # Conditional increment: only while under the limit, so concurrent requests can
            # never push the count past it.
            updated = KeyRateWindow.objects.filter(
                api_key_id=request.api_key_id, window=window, count__lt=limit
            ).update(count=F("count") + 1)
            if updated:
                continue
            try:
                with transaction.atomic():
                    KeyRateWindow.objects.create(
                        api_key_id=request.api_key_id, window=window, count=1, expires_at=now + keep
                    )
            except IntegrityError:
                return KeyLimited(window=name)
        return None

    async def order_install(
        self,
        *,
        user_id: int,
        version: int,
        cursor: int,
        ordered_ids: Sequence[int],
        marks: Mapping[str, Mapping[int, int]],
    ) -> None:
        # The database backend reads order and marks from their tables on every pick.
        return None

    async def marks_put(
        self, *, user_id: int, credential_ids: Iterable[int], model: str, until_ms: int
    ) -> None:
        # Marks live in rotator.models.Mark, which pool writes for both backends.
        return None

    def marks_drop(self, *, user_id: int, credential_ids: Iterable[int] | None) -> None:
        return None

    async def pool_version(self, *, user_id: int) -> int | None:
        from rotator.orm import orm_call

        def version_read() -> int | None:
            row = PoolState.objects.filter(user_id=user_id).values_list("version").first()
            return None if row is None else int(row[0])

        return await orm_call(version_read)()

    def pool_invalidate(self, *, user_id: int) -> None:
        PoolState.objects.filter(user_id=user_id).update(version=F("version") + 1)

    async def aliases_version(self) -> int:
        from rotator.orm import orm_call

        return await orm_call(_aliases_version_read)()

    def aliases_invalidate(self) -> None:
        _aliases_version_bump()

    def cursor_advance(self, *, user_id: int, by: int) -> int:
        PoolState.objects.filter(user_id=user_id).update(cursor=F("cursor") + by)
        return int(PoolState.objects.values_list("cursor", flat=True).get(user_id=user_id))

    def cursors_persist(self, *, user_ids: Iterable[int]) -> None:
        return None  # the cursor lives in the database already

    def failures_add(self, *, name: str, expires_at_ms: int) -> int:
        # Conditional increment first: concurrent failures each count, none is lost.
        if not FailureWindow.objects.filter(name=name).update(count=F("count") + 1):
            try:
                with transaction.atomic():
                    FailureWindow.objects.create(
                        name=name, count=1, expires_at=datetime_of_ms(expires_at_ms)
                    )
            except IntegrityError:  # another process created it first
                FailureWindow.objects.filter(name=name).update(count=F("count") + 1)
            else:
                # A new window: windows of earlier minutes are garbage by now.
                FailureWindow.objects.filter(expires_at__lt=datetime_of_ms(expires_at_ms)).delete()
        return self.failures_count(name=name)

    def failures_count(self, *, name: str) -> int:
        row = FailureWindow.objects.filter(name=name).values_list("count", flat=True).first()
        return int(row or 0)

    async def failure_count(
        self, *, credential_id: int, now_ms: int, window_ms: int, threshold: int
    ) -> bool:
        from rotator.orm import orm_call

        return await orm_call(self.failure_count_sync)(
            credential_id=credential_id, now_ms=now_ms, window_ms=window_ms, threshold=threshold
        )

    def failure_count_sync(
        self, *, credential_id: int, now_ms: int, window_ms: int, threshold: int
    ) -> bool:
        now = datetime_of_ms(now_ms)
        until = datetime_of_ms(now_ms + window_ms)
        rows = BreakerCount.objects.filter(credential_id=credential_id)
        # Conditional updates: concurrent processes each add exactly one.
        counted = rows.filter(until__gt=now).update(count=F("count") + 1)
        if not counted:
            counted = rows.filter(until__lte=now).update(count=1, until=until)
        if not counted:
            try:
                with transaction.atomic():
                    BreakerCount.objects.create(credential_id=credential_id, count=1, until=until)
            except IntegrityError:  # another process started the window first
                rows.update(count=F("count") + 1)
        # Only the caller whose delete removes the full count opens the breaker.
        deleted, _ = rows.filter(count__gte=threshold).delete()
        return deleted > 0

    async def failures_clear(self, *, credential_id: int) -> None:
        from rotator.orm import orm_call

        def clear() -> None:
            BreakerCount.objects.filter(credential_id=credential_id).delete()

        await orm_call(clear)()

    def lease_take(self, *, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        now = datetime_of_ms(now_ms)
        until = datetime_of_ms(now_ms + ttl_ms)
        # Conditional update: only a lapsed lease (or our own) changes hands.
        taken = (
            Lease.objects.filter(name=name)
            .filter(Q(until__lte=now) | Q(holder=holder))
            .update(holder=holder, until=until)
        )
        if taken:
            return True
        try:
            with transaction.atomic():
                Lease.objects.create(name=name, holder=holder, until=until)
        except IntegrityError:  # held by another, and not lapsed
            return False
        return True

    def lease_release(self, *, name: str, holder: str) -> None:
        Lease.objects.filter(name=name, holder=holder).delete()

    def ping(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            row: tuple[int] | None = cursor.fetchone()
            return row == (1,)


def _aliases_version_read() -> int:
    row = AliasState.objects.filter(id=1).values_list("version", flat=True).first()
    return 0 if row is None else int(row)


def _aliases_version_bump() -> int:
    """Raises the durable alias version (creating its row) and returns the new value.

    Microseconds since the epoch, or one more than before if that is higher: a version never
    repeats even when the row is lost (a restored database), so no process keeps a stale
    table that happens to carry the same number.
    """
    now_us = int(time.time() * 1_000_000)
    raised = Greatest(F("version") + 1, Value(now_us))
    if not AliasState.objects.filter(id=1).update(version=raised):
        try:
            with transaction.atomic():
                AliasState.objects.create(id=1, version=now_us)
        except IntegrityError:  # another process created it first: raise theirs
            AliasState.objects.filter(id=1).update(version=raised)
    return _aliases_version_read()


# ------------------------------------------------------------------------------ Redis backend

# KEYS: 1 pool hash, 2 order hash, 3 marks zset (this model), 4 minute window, 5 day window,
#       6 the alias table's version
# ARGV: 1 version, 2 now_ms, 3 strategy, 4 rpm (0 = none), 5 rpd (0 = none), 6 count_rate,
#       7 the caller's alias table version ('' = no check), 8.. excluded credential ids
# Mirrors rotator.selection.credential_choose; tests/rotator/test_state.py holds them together.
# The alias check rides on the pick so that a request pays no round trip of its own for it;
# a lost version (a Redis restart) reads as changed, and the caller restores it.
_PICK_LUA = """
local ov = redis.call('HGET', KEYS[1], 'ov')
if ov ~= ARGV[1] then return {'stale'} end
if ARGV[7] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[7] then return {'aliases'} end
if ARGV[6] == '1' then
  local rpm = tonumber(ARGV[4])
  local rpd = tonumber(ARGV[5])
  local counted_minute = false
  if rpm > 0 then
    local m = redis.call('INCR', KEYS[4])
    if m == 1 then redis.call('EXPIRE', KEYS[4], 120) end
    if m > rpm then
      redis.call('DECR', KEYS[4])
      return {'limited', 'minute'}
    end
    counted_minute = true
  end
  if rpd > 0 then
    local d = redis.call('INCR', KEYS[5])
    if d == 1 then redis.call('EXPIRE', KEYS[5], 172800) end
    if d > rpd then
      redis.call('DECR', KEYS[5])
      if counted_minute then redis.call('DECR', KEYS[4]) end
      return {'limited', 'day'}
    end
  end
end
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n == 0 then return {'none', ''} end
local round_robin = ARGV[3] == 'round_robin'
local start
if round_robin then
  start = redis.call('HINCRBY', KEYS[1], 'cursor', 1) - 1
else
  start = tonumber(redis.call('HGET', KEYS[1], 'cursor') or '0')
end
local excluded = {}
for i = 8, #ARGV do excluded[ARGV[i]] = true end
local now = tonumber(ARGV[2])
local soonest = nil
for offset = 0, n - 1 do
  local id = redis.call('HGET', KEYS[2], tostring((start + offset) % n))
  if id and excluded[id] then
    local score = redis.call('ZSCORE', KEYS[3], id)
    local until_ms = score and tonumber(score)
    if until_ms and until_ms > now and ((not soonest) or until_ms < soonest) then
      soonest = until_ms
    end
  elseif id then
    local score = redis.call('ZSCORE', KEYS[3], id)
    local until_ms = score and tonumber(score)
    if (not until_ms) or until_ms <= now then
      if offset > 0 then
        if round_robin then
          redis.call('HSET', KEYS[1], 'cursor', start + offset + 1)
        else
          redis.call('HSET', KEYS[1], 'cursor', start + offset)
        end
      end
      return {'ok', id}
    end
    if (not soonest) or until_ms < soonest then soonest = until_ms end
  end
end
if soonest then return {'none', string.format('%d', soonest)} end
return {'none', ''}
"""

# KEYS: 1 pool hash, 2 order hash. ARGV: 1 version, 2 the durable cursor, 3.. ordered
# credential ids. Installs only over an older version, so a slow process cannot undo a newer
# install. The cursor is set only where Redis lost it (a restart): the pool then goes on
# near where it was (docs/reliability.md), instead of starting again at its first credential.
_INSTALL_LUA = """
local ov = tonumber(redis.call('HGET', KEYS[1], 'ov') or '-1')
if ov >= tonumber(ARGV[1]) then return 0 end
redis.call('HSETNX', KEYS[1], 'cursor', ARGV[2])
redis.call('DEL', KEYS[2])
local n = #ARGV - 2
local batch = {}
for i = 3, #ARGV do
  batch[#batch + 1] = tostring(i - 3)
  batch[#batch + 1] = ARGV[i]
  if #batch >= 2000 then
    redis.call('HSET', KEYS[2], unpack(batch))
    batch = {}
  end
end
if #batch > 0 then redis.call('HSET', KEYS[2], unpack(batch)) end
redis.call('HSET', KEYS[1], 'ov', ARGV[1], 'n', n)
return 1
"""


# KEYS: 1 the credential's breaker hash. ARGV: 1 now_ms, 2 window_ms, 3 threshold.
# The window's end is stored and compared with the caller's clock; the TTL only collects.
_FAILURE_LUA = """
local until_ms = tonumber(redis.call('HGET', KEYS[1], 'u') or '0')
local now = tonumber(ARGV[1])
local count
if until_ms <= now then
  redis.call('HSET', KEYS[1], 'n', 1, 'u', now + tonumber(ARGV[2]))
  count = 1
else
  count = redis.call('HINCRBY', KEYS[1], 'n', 1)
end
redis.call('PEXPIREAT', KEYS[1], now + tonumber(ARGV[2]) + 60000)
if count >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


# KEYS: 1 the lease hash. ARGV: 1 holder, 2 now_ms, 3 ttl_ms. The stored end decides.
_LEASE_TAKE_LUA = """
local held = redis.call('HMGET', KEYS[1], 'h', 'u')
local now = tonumber(ARGV[2])
if held[2] and tonumber(held[2]) > now and held[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'u', now + tonumber(ARGV[3]))
redis.call('PEXPIREAT', KEYS[1], now + tonumber(ARGV[3]) + 60000)
return 1
"""

_LEASE_RELEASE_LUA = """
if redis.call('HGET', KEYS[1], 'h') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def state_key(*parts: object) -> str:
    """Every Redis key Rotator uses is built here, under STATE_KEY_PREFIX."""
    return ":".join([settings.STATE_KEY_PREFIX, *(str(part) for part in parts)])


# KEYS: 1 a counter. ARGV: 1 a value. Sets the counter to the value only if that raises it;
# returns the counter.
_MAX_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
local value = tonumber(ARGV[1])
if value > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return value
end
return current
"""

# (-1 when unset: a durable version of 0, before any alias change, is stored too, so that
# readers stop falling back to the database.)

# Connections per process and loop to Redis, and how long a request waits for a free one.
_REDIS_CONNECTIONS = 64
_REDIS_WAIT_SECONDS = 10.0
# Marks live a little past their deadline so that "until" decides, never the TTL.
_MARK_TTL_SLACK_MS = 60_000


class RedisState:
    """State in Redis, shared by every server process."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._sync = redis.Redis.from_url(url)
        # The request path's own commands (scripts): one shared connection per loop.
        self._multiplexed = MultiplexedRedis(url)
        self._script_shas: dict[str, str] = {}

    @property
    def sync_client(self) -> redis.Redis:
        """The process's synchronous client (threads, commands, the usage flusher)."""
        return self._sync

    def client(self) -> aioredis.Redis:
        """The async client of the running loop (the request path)."""
        # redis.asyncio connections belong to the loop that made them; the server has one loop
        # per process, tests may have several.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A burst (a thousand streams opened at once) must wait its turn for a connection,
            # not fail: redis-py's default pool raises MaxConnectionsError past 100 in use.
            # A pick holds its connection for one round trip, so a few dozen serve any burst.
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url,
                max_connections=_REDIS_CONNECTIONS,
                timeout=_REDIS_WAIT_SECONDS,
                # After a Redis restart every pooled connection is dead: each is re-opened
                # once, at once, instead of failing one request apiece. A command whose reply
                # was lost may then run twice: usage writes carry a marker for that
                # (stats/usage_redis.py); a pick run twice advances the cursor one more.
                retry=Retry(NoBackoff(), 1),
            )
            client = aioredis.Redis(connection_pool=pool)
            self._clients[loop] = client
        return client

    async def pick(self, request: PickRequest) -> PickOutcome:
        keys = [
            state_key("pool", request.user_id),
            state_key("order", request.user_id),
            state_key("marks", request.user_id, request.model),
            state_key("rl", request.api_key_id, "m", request.minute),
            state_key("rl", request.api_key_id, "d", request.day),
            state_key("aliases", "version"),
        ]
        args: list[Any] = [
            request.version,
            request.now_ms,
            request.strategy.value,
            request.requests_per_minute or 0,
            request.requests_per_day or 0,
            1 if request.count_rate else 0,
            "" if request.aliases_version is None else request.aliases_version,
            *request.excluded,
        ]
        reply = await self.script_run(_PICK_LUA, keys=keys, args=args)
        kind = reply[0].decode()
        if kind == "ok":
            return Picked(credential_id=int(reply[1]), cursor_after=None)
        if kind == "none":
            return NonePicked(soonest_until_ms=int(reply[1]) if reply[1] else None)
        if kind == "limited":
            return KeyLimited(window=reply[1].decode())
        if kind == "aliases":
            return AliasesStale()
        return Stale()

    async def script_run(
        self, script: str, *, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        """Runs a Lua script of the request path (a pick, a usage write) by its SHA over the
        shared connection (rotator.redis_multiplex), loading it where Redis does not know it
        (a restart forgets scripts). Returns its reply as Redis sent it."""
        sha = self._script_shas.get(script)
        if sha is not None:
            try:
                return await self._multiplexed.execute("EVALSHA", sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                pass
        loaded = await self._multiplexed.execute("SCRIPT", "LOAD", script)
        sha = self._script_shas[script] = loaded.decode()
        return await self._multiplexed.execute("EVALSHA", sha, len(keys), *keys, *args)

    async def order_install(
        self,
        *,
        user_id: int,
        version: int,
        cursor: int,
        ordered_ids: Sequence[int],
        marks: Mapping[str, Mapping[int, int]],
    ) -> None:
        client = self.client()
        pipe = client.pipeline(transaction=False)
        # Marks first: from the durable copy, never shortening a hot one (GT).
        for model, until_by_id in marks.items():
            if until_by_id:
                key = state_key("marks", user_id, model)
                pipe.zadd(key, {str(i): until for i, until in until_by_id.items()}, gt=True)
                pipe.pexpireat(key, max(until_by_id.values()) + _MARK_TTL_SLACK_MS, gt=True)
                pipe.pexpireat(key, max(until_by_id.values()) + _MARK_TTL_SLACK_MS, nx=True)
        pipe.eval(
            _INSTALL_LUA,
            2,
            state_key("pool", user_id),
            state_key("order", user_id),
            version,
            cursor,
            *ordered_ids,
        )
        await pipe.execute()

    async def marks_put(
        self, *, user_id: int, credential_ids: Iterable[int], model: str, until_ms: int
    ) -> None:
        key = state_key("marks", user_id, model)
        pipe = self.client().pipeline(transaction=False)
        pipe.zadd(key, {str(i): until_ms for i in credential_ids})
        # TTL is garbage collection only: extend it, never shorten it.
        pipe.pexpireat(key, until_ms + _MARK_TTL_SLACK_MS, gt=True)
        pipe.pexpireat(key, until_ms + _MARK_TTL_SLACK_MS, nx=True)
        await pipe.execute()

    async def pool_version(self, *, user_id: int) -> int | None:
        # The installed order's version: missing after an invalidation or a Redis restart,
        # which reads as changed and makes the caller reload.
        value = await self.client().hget(state_key("pool", user_id), "ov")
        return None if value is None else int(value)

    def marks_drop(self, *, user_id: int, credential_ids: Iterable[int] | None) -> None:
        ids = None if credential_ids is None else [str(i) for i in credential_ids]
        for key in self._sync.scan_iter(match=state_key("marks", user_id, "*"), count=500):
            if ids is None:
                self._sync.delete(key)
            elif ids:
                self._sync.zrem(key, *ids)

    def pool_invalidate(self, *, user_id: int) -> None:
        PoolState.objects.filter(user_id=user_id).update(version=F("version") + 1)
        # Every process's next pick now reads as stale and reloads from the database. Only
        # after commit: a reload before it would read the old rows under the new version.
        transaction.on_commit(lambda: self._sync.hdel(state_key("pool", user_id), "ov"))

    async def aliases_version(self) -> int:
        client = self.client()
        value = await client.get(state_key("aliases", "version"))
        if value is not None:
            return int(value)
        # Lost (a Redis restart, or never set): the database holds the durable version.
        from rotator.orm import orm_call

        durable = await orm_call(_aliases_version_read)()
        return int(await client.eval(_MAX_LUA, 1, state_key("aliases", "version"), durable))

    def aliases_invalidate(self) -> None:
        version = _aliases_version_bump()
        # Only after commit, as for pools: a reload before it would read the old aliases under
        # the new version. Raised only (max): a reader that read the old durable version
        # before this change must not put it back.
        transaction.on_commit(
            lambda: self._sync.eval(_MAX_LUA, 1, state_key("aliases", "version"), version)
        )

    def cursor_advance(self, *, user_id: int, by: int) -> int:
        PoolState.objects.filter(user_id=user_id).update(cursor=F("cursor") + by)
        return int(self._sync.hincrby(state_key("pool", user_id), "cursor", by))

    def cursors_persist(self, *, user_ids: Iterable[int]) -> None:
        users = sorted(set(user_ids))
        if not users:
            return
        pipe = self._sync.pipeline(transaction=False)
        for user_id in users:
            pipe.hget(state_key("pool", user_id), "cursor")
        for user_id, value in zip(users, pipe.execute(), strict=True):
            if value is not None:
                # Raised only: a cursor only moves forward, and a slower copy must not undo a
                # newer one.
                PoolState.objects.filter(user_id=user_id).update(
                    cursor=Greatest(F("cursor"), Value(int(value)))
                )

    def failures_add(self, *, name: str, expires_at_ms: int) -> int:
        key = state_key("fail", name)
        pipe = self._sync.pipeline(transaction=False)
        pipe.incr(key)
        pipe.pexpireat(key, expires_at_ms + _MARK_TTL_SLACK_MS)
        count, _ = pipe.execute()
        return int(count)

    def failures_count(self, *, name: str) -> int:
        value = self._sync.get(state_key("fail", name))
        return int(value or 0)

    async def failure_count(
        self, *, credential_id: int, now_ms: int, window_ms: int, threshold: int
    ) -> bool:
        reply = await self.client().eval(
            _FAILURE_LUA, 1, state_key("breaker", credential_id), now_ms, window_ms, threshold
        )
        return int(reply) == 1

    async def failures_clear(self, *, credential_id: int) -> None:
        await self.client().delete(state_key("breaker", credential_id))

    def lease_take(self, *, name: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        key = state_key("lease", name)
        reply = self._sync.eval(_LEASE_TAKE_LUA, 1, key, holder, now_ms, ttl_ms)
        return int(reply) == 1

    def lease_release(self, *, name: str, holder: str) -> None:
        self._sync.eval(_LEASE_RELEASE_LUA, 1, state_key("lease", name), holder)

    def ping(self) -> bool:
        return self._sync.ping() is True

    def close(self) -> None:
        self._sync.close()
        self._multiplexed.close()


@cache
def state_backend() -> StateBackend:
    """The backend chosen by settings, one per process."""
    if settings.REDIS_URL:
        return RedisState(settings.REDIS_URL)
    return DatabaseState()
