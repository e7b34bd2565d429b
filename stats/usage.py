"""Usage counting, flushed to the database every USAGE_FLUSH_SECONDS.

On the production profile (REDIS_URL set) the request path counts into Redis
(stats/usage_redis.py): a killed worker loses nothing it answered, and any process's flush
moves every worker's counts to the database. On the embedded default, and wherever Redis
cannot be reached, counts wait in an in-process buffer. Why a buffer there: a database write
per request would cost more than forwarding it. Bound: a server process that is killed
outright loses at most the counts of its last flush interval (1 s by default); a graceful stop
(SIGTERM, the ASGI lifespan shutdown) flushes first and loses nothing. Each flush is one
INSERT ... ON CONFLICT DO UPDATE that adds to the stored numbers, so any number of processes
flushing at once never lose or double an increment.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import close_old_connections, connection, transaction
from django.db.models import Case, F, Value, When
from redis.exceptions import RedisError

from accounts.models import ApiKey, Credential
from common.events import UsageEvent
from stats.models import UsageCounter

logger = logging.getLogger("stats.usage")

_FIELDS = UsageCounter.COUNT_FIELDS


_BucketKey = tuple[date, int, int | None, int | None, str, str]


class UsageBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[_BucketKey, list[int]] = {}
        self._labels: dict[int, str] = {}
        self._credential_requests: dict[int, int] = {}
        self._credential_used: dict[int, datetime] = {}
        self._key_used: dict[int, datetime] = {}

    def add(self, event: UsageEvent, *, at: datetime) -> None:
        bucket = (
            event.day,
            event.user_id,
            event.api_key_id,
            event.credential_id,
            event.model,
            event.requested_model or event.model,
        )
        with self._lock:
            counts = self._counts.get(bucket)
            if counts is None:
                counts = self._counts[bucket] = [0] * len(_FIELDS)
            counts[0] += 1
            counts[1] += event.success
            counts[2] += not event.success
            counts[3] += event.rate_limited
            counts[4] += event.prompt_tokens
            counts[5] += event.completion_tokens
            counts[6] += event.total_tokens
            if event.credential_id is not None:
                self._labels[event.credential_id] = event.credential_label
                self._credential_requests[event.credential_id] = (
                    self._credential_requests.get(event.credential_id, 0) + 1
                )
                self._credential_used[event.credential_id] = at
            if event.api_key_id is not None:
                self._key_used[event.api_key_id] = at

    def take(self) -> "UsageBatch":
        with self._lock:
            batch = UsageBatch(
                counts=self._counts,
                labels=self._labels,
                credential_requests=self._credential_requests,
                credential_used=self._credential_used,
                key_used=self._key_used,
            )
            self._counts = {}
            self._labels = {}
            self._credential_requests = {}
            self._credential_used = {}
            self._key_used = {}
        return batch

    def give_back(self, batch: "UsageBatch") -> None:
        """Re-adds a batch whose write failed, so a database blip loses nothing."""
        with self._lock:
            for bucket, counts in batch.counts.items():
                mine = self._counts.setdefault(bucket, [0] * len(_FIELDS))
                for index, value in enumerate(counts):
                    mine[index] += value
            self._labels.update(batch.labels)
            for credential_id, value in batch.credential_requests.items():
                self._credential_requests[credential_id] = (
                    self._credential_requests.get(credential_id, 0) + value
                )
            for credential_id, at in batch.credential_used.items():
                self._credential_used.setdefault(credential_id, at)
            for key_id, at in batch.key_used.items():
                self._key_used.setdefault(key_id, at)


@dataclass(frozen=True, slots=True)
class UsageBatch:
    counts: dict[_BucketKey, list[int]]
    labels: dict[int, str]
    credential_requests: dict[int, int]
    credential_used: dict[int, datetime]
    key_used: dict[int, datetime]

    def __bool__(self) -> bool:
        return bool(self.counts or self.key_used)


_buffer = UsageBuffer()
# One writer thread per process: flushes never overlap, and the ORM connection it uses is its own.
_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-flush")
_flusher: asyncio.Task[None] | None = None
_flush_lock = threading.Lock()


def _buffer_add(event: UsageEvent, at: datetime) -> None:
    _buffer.add(event, at=at)


@cache
def _redis_usage() -> Any:
    """The Redis counter of the production profile, or None on the embedded default."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return None
    from rotator.state import RedisState, state_backend
    from stats.usage_redis import RedisUsage

    state = state_backend()
    assert isinstance(state, RedisState)
    return RedisUsage(state, fallback=_buffer_add)


def usage_record(event: UsageEvent, *, at: datetime) -> None:
    """Counts one attempt (no I/O here): into the Redis write that `usage_settled` waits for,
    or into this process's buffer; and makes sure a flusher runs."""
    global _flusher
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _buffer.add(event, at=at)  # sync callers (commands, tests) flush explicitly
        return
    counter = _redis_usage()
    if counter is not None:
        counter.usage_add(event, at=at, loop=loop)
    else:
        _buffer.add(event, at=at)
    if _flusher is None or _flusher.done():
        _flusher = loop.create_task(_flush_periodically())


async def usage_settled() -> None:
    """Returns once every count recorded so far in this loop is where a killed process cannot
    lose it (Redis), or in the buffer where Redis failed. The response path awaits it before
    an answer's last byte, so what a client saw answered is counted."""
    counter = _redis_usage()
    if counter is not None:
        await counter.settled()


async def _flush_periodically() -> None:
    from django.conf import settings

    loop = asyncio.get_running_loop()
    failing_since: float | None = None
    while True:
        await asyncio.sleep(settings.USAGE_FLUSH_SECONDS)
        try:
            await loop.run_in_executor(_writer, _flush_in_writer)
        except Exception as exc:  # a failed flush keeps its counts (give_back) and tries again
            # One traceback per outage, not one every USAGE_FLUSH_SECONDS while it lasts.
            if failing_since is None:
                failing_since = time.monotonic()
                logger.exception("usage flush failed; counts kept for the next flush")
            else:
                logger.debug("usage flush still failing: %s", type(exc).__name__)
        else:
            if failing_since is not None:
                logger.warning(
                    "usage flush works again after %.1f s; kept counts written",
                    time.monotonic() - failing_since,
                )
                failing_since = None


def _flush_in_writer() -> int:
    close_old_connections()
    return usage_flush()


def usage_flush() -> int:
    """Writes this process's buffered counts to the database. Returns the rows touched.

    Raises the database's error after putting the counts back in the buffer.
    """
    with _flush_lock:
        written = 0
        counter = _redis_usage()
        if counter is not None:
            with suppress(RedisError):  # still down: they wait, and batches_apply says so
                counter.unsure_resolve()
        batch = _buffer.take()
        if batch:
            try:
                _batch_write(batch)
            except Exception:
                _buffer.give_back(batch)
                raise
            written = len(batch.counts)
        if counter is not None:
            written += counter.batches_apply(_redis_batch_write)
        return written


async def usage_flush_async() -> int:
    await usage_settled()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_writer, _flush_in_writer)


def _redis_batch_write(batch: UsageBatch) -> None:
    """Adds one batch taken from Redis to the database, and keeps the cursors of the pools it
    counted where a restarted Redis finds them."""
    from rotator.state import state_backend

    _batch_write(batch)
    state_backend().cursors_persist(user_ids={key[1] for key in batch.counts})


def _batch_write(batch: UsageBatch) -> None:
    table = UsageCounter._meta.db_table
    columns = ", ".join(_FIELDS)
    values = ", ".join(["%s"] * (8 + len(_FIELDS)))
    additions = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in _FIELDS)
    # Both PostgreSQL and SQLite (3.24+) add to the stored row atomically here.
    sql = (
        f"INSERT INTO {table} (bucket, day, user_id, api_key_id, credential_id, "
        f"credential_label, model, requested_model, {columns}) VALUES ({values}) "
        f"ON CONFLICT (bucket) DO UPDATE SET {additions}"
    )
    rows: list[list[Any]] = []
    for key, counts in batch.counts.items():
        day, user_id, api_key_id, credential_id, model, requested = key
        bucket = f"{day.isoformat()}|{api_key_id or 0}|{credential_id or 0}|{model}"
        if requested != model:
            # Only aliased rows carry the requested name: other buckets keep the key they had.
            bucket += f"|{requested}"
        label = batch.labels.get(credential_id, "") if credential_id else ""
        rows.append(
            [bucket, day, user_id, api_key_id, credential_id, label, model, requested, *counts]
        )
    # Every flush locks rows in one order (buckets, then credentials, then keys, each sorted):
    # two workers flushing at once then wait for each other instead of deadlocking (they did,
    # on PostgreSQL under load, in dict order).
    rows.sort(key=lambda row: str(row[0]))
    with transaction.atomic():
        existing_credentials = set(
            Credential.objects.filter(id__in=batch.credential_requests).values_list("id", flat=True)
        )
        existing_keys = set(
            ApiKey.objects.filter(id__in=batch.key_used).values_list("id", flat=True)
        )
        users = {int(row[2]) for row in rows}
        existing_users = set(
            get_user_model().objects.filter(id__in=users).values_list("id", flat=True)
        )
        # Counts of a user deleted since they were buffered have nowhere to go.
        rows = [row for row in rows if row[2] in existing_users]
        for row in rows:
            # Keep history of deleted credentials and keys, without the dangling reference.
            if row[3] is not None and row[3] not in existing_keys:
                row[3] = None
            if row[4] is not None and row[4] not in existing_credentials:
                row[4] = None
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        _credential_totals_write(batch, existing_credentials)
        for key_id, at in sorted(batch.key_used.items()):
            ApiKey.objects.filter(id=key_id).update(last_used_at=at)


def _credential_totals_write(batch: UsageBatch, existing: Iterable[int]) -> None:
    for credential_id in sorted(existing):
        added = batch.credential_requests[credential_id]
        Credential.objects.filter(id=credential_id).update(
            requests_total=F("requests_total") + added,
            # A rotation that lands between take() and here resets the counter first; these
            # few requests then count after it. Accepted: it is an operator's gauge.
            requests_since_rotation=F("requests_since_rotation") + added,
            last_used_at=Case(
                When(last_used_at__gt=batch.credential_used[credential_id], then=F("last_used_at")),
                default=Value(batch.credential_used[credential_id]),
            ),
        )
