"""Responses API answers kept with `store: true`, for `previous_response_id` and GET by id."""

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection
from django.db.models import Q, Subquery
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse

from common import clock
from common.errors import BadRequest, NotFound
from rotator.models import StoredResponse
from rotator.orm import orm_call

logger = logging.getLogger("rotator.request")

# The events that end a stream with an answer worth keeping (a failed one is not kept).
_TERMINAL_EVENTS = (b"event: response.completed\n", b"event: response.incomplete\n")


@dataclass(frozen=True, slots=True)
class KeptResponse:
    """One kept answer, as written and as read back: StoredResponse's columns without a model
    instance (building one cost the worker more than the rest of keeping the answer; the
    write is SQL of its own, see stored_responses_write)."""

    user_id: int
    response_id: str
    created_at: datetime
    expires_at: datetime
    # The conversation the answer ends: its input items, then its output.
    items: list[Any]
    response: dict[str, Any]


def stored_response_row(
    *, user_id: int, response: dict[str, Any], input_items: list[Any], now: datetime
) -> KeptResponse:
    """The unsaved row that keeps `response` and the conversation it ends (`input_items`, then
    its output) for RESPONSES_STORE_TTL_SECONDS from `now`."""
    output = response.get("output")
    return KeptResponse(
        user_id=user_id,
        response_id=str(response["id"]),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.RESPONSES_STORE_TTL_SECONDS),
        items=[*input_items, *(output if isinstance(output, list) else [])],
        response=response,
    )


def stored_response_save(
    *,
    user_id: int,
    response: dict[str, Any],
    input_items: list[Any],
    now: datetime,
) -> None:
    """Keeps `response` at once (see stored_responses_write). Does nothing when the TTL is 0."""
    if settings.RESPONSES_STORE_TTL_SECONDS <= 0:
        return
    row = stored_response_row(user_id=user_id, response=response, input_items=input_items, now=now)
    stored_responses_write([row], now=now)


# Rows per INSERT: SQLite before 3.32 takes at most 999 parameters in a statement (6 a row).
_ROWS_PER_STATEMENT = 150


def stored_responses_write(rows: list[KeptResponse], *, now: datetime) -> None:
    """Writes `rows`, each replacing the row its user stored under that id before (response
    ids follow request ids, which clients may choose), in one statement per 150 rows. Every
    RESPONSES_STORE_TRIM_EVERY-th row of a user in this process also trims that user's
    answers (stored_responses_trim).

    Why SQL and not Model.save: the Responses API's bench rows are bound by the worker's CPU,
    and keeping answers was their largest cost. Model.save spent 220 us of CPU a row (field
    preparation, the SQL compiler, the stdlib json encoder) where one row of this spends
    110 us, and many rows far less each; an upsert through bulk_create wraps itself in BEGIN
    and COMMIT, three round trips. INSERT ... ON CONFLICT DO UPDATE is the same text on
    PostgreSQL and SQLite; the JSON columns take text (jsonb casts it) that orjson encodes."""
    latest = {(row.user_id, row.response_id): row for row in rows}  # one row per id
    ordered = list(latest.values())
    for start in range(0, len(ordered), _ROWS_PER_STATEMENT):
        _stored_responses_upsert(ordered[start : start + _ROWS_PER_STATEMENT])
    for user_id in _trims_due([row.user_id for row in rows]):
        stored_responses_trim(user_id=user_id, now=now)


_COLUMNS = ("user_id", "response_id", "created_at", "expires_at", "items", "response")


@cache
def _upsert_sql(vendor: str, rows: int) -> str:
    """The INSERT ... ON CONFLICT for `rows` rows (the text depends on nothing else)."""
    quote = connection.ops.quote_name
    placeholders = f"({', '.join(['%s'] * len(_COLUMNS))})"
    return (
        f"INSERT INTO {quote(StoredResponse._meta.db_table)} ({', '.join(map(quote, _COLUMNS))}) "
        f"VALUES {', '.join([placeholders] * rows)} "
        f"ON CONFLICT ({quote('user_id')}, {quote('response_id')}) DO UPDATE SET "
        + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in _COLUMNS[2:])
    )


def _stored_responses_upsert(rows: list[KeptResponse]) -> None:
    date_field = StoredResponse._meta.get_field("created_at")
    sql = _upsert_sql(connection.vendor, len(rows))
    params: list[Any] = []
    for row in rows:
        params += [
            row.user_id,
            row.response_id,
            date_field.get_db_prep_value(row.created_at, connection),
            date_field.get_db_prep_value(row.expires_at, connection),
            orjson.dumps(row.items).decode(),
            orjson.dumps(row.response).decode(),
        ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# Saves per user since this process last trimmed that user's answers (see _trim_due).
_saves_untrimmed: dict[int, int] = {}
_saves_untrimmed_lock = threading.Lock()


def _trims_due(user_ids: list[int]) -> list[int]:
    """Counts one save per entry of `user_ids`; returns the users who reached their
    RESPONSES_STORE_TRIM_EVERY-th save since their last trim.

    Why not trim on every save: finding the answers beyond the newest N walks N index
    entries, so a trim costs O(N) (3.8 ms at N = 1000 on PostgreSQL), which made the Responses
    API's bench row a third of chat's. Every 100th save makes it 1/100 of that; the price is a
    softer bound: a user holds at most MAX_PER_USER + TRIM_EVERY - 1 answers per process
    between trims, and reads never see an expired one (stored_response_find filters on it)."""
    every = settings.RESPONSES_STORE_TRIM_EVERY
    due = []
    with _saves_untrimmed_lock:
        for user_id in user_ids:
            saves = _saves_untrimmed.get(user_id, 0) + 1
            if saves >= every:
                due.append(user_id)
                saves = 0
            _saves_untrimmed[user_id] = saves
    return list(dict.fromkeys(due))


def stored_responses_trim_counter_reset() -> None:
    """Forgets how many saves each user made since the last trim (a process starting afresh;
    tests that count to a trim)."""
    with _saves_untrimmed_lock:
        _saves_untrimmed.clear()


def stored_responses_trim(*, user_id: int, now: datetime) -> int:
    """Deletes the user's expired answers and those beyond the newest
    RESPONSES_STORE_MAX_PER_USER, in one statement; returns how many went. Two trims at once
    may both keep one answer over the bound for a moment: accepted, the next trims it."""
    mine = StoredResponse.objects.filter(user_id=user_id)
    beyond = mine.order_by("-created_at", "-id").values("id")[
        settings.RESPONSES_STORE_MAX_PER_USER :
    ]
    deleted, _ = mine.filter(Q(expires_at__lte=now) | Q(id__in=Subquery(beyond))).delete()
    return deleted


def stored_responses_expired_delete(*, now: datetime) -> int:
    """Deletes every user's expired answers (the hourly beat task: a user who stopped saving
    never reaches a trim); returns how many went."""
    deleted, _ = StoredResponse.objects.filter(expires_at__lte=now).delete()
    return deleted


def stored_response_find(*, user_id: int, response_id: str, now: datetime) -> KeptResponse | None:
    """Returns the user's unexpired stored answer with this id; None for anyone else's."""
    found = (
        StoredResponse.objects.filter(user_id=user_id, response_id=response_id, expires_at__gt=now)
        .values_list(*_COLUMNS)
        .first()
    )
    return None if found is None else KeptResponse(*found)


async def conversation_continue(*, body: Mapping[str, Any], user_id: int) -> list[Any]:
    """Returns the input items for a request (see conversation_items); looks up a stored
    answer (stored_response_lookup) only when the request continues one."""
    previous = body.get("previous_response_id")
    if previous is None:
        return _input_items(body.get("input"))
    stored = (
        await stored_response_lookup(user_id=user_id, response_id=previous)
        if isinstance(previous, str)
        else None
    )
    return _conversation(body, stored)


def conversation_items(*, body: Mapping[str, Any], user_id: int, now: datetime) -> list[Any]:
    """Returns the input items for a request: the stored conversation of its
    `previous_response_id` (if any), then its own input. Raises BadRequest
    (previous_response_not_found) for an id the user has not stored."""
    previous = body.get("previous_response_id")
    stored = (
        stored_response_find(user_id=user_id, response_id=previous, now=now)
        if isinstance(previous, str)
        else None
    )
    return _conversation(body, stored)


def _conversation(body: Mapping[str, Any], stored: KeptResponse | None) -> list[Any]:
    own = _input_items(body.get("input"))
    previous = body.get("previous_response_id")
    if previous is None:
        return own
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
    stored = await stored_response_lookup(user_id=user_id, response_id=response_id)
    if stored is None:
        raise NotFound(
            f"Response with id '{response_id}' not found.", param="response_id", code="not_found"
        )
    response: dict[str, Any] = stored.response
    return response


async def stored_response_lookup(*, user_id: int, response_id: str) -> KeptResponse | None:
    """Returns the user's unexpired stored answer with this id: one this process has yet to
    write, else the database's. With writes delayed (RESPONSES_STORE_WRITE_DELAY_MS), a miss
    waits once for other processes' delayed writes to land and looks again: a client whose
    next request reaches another worker still finds the answer it was just sent."""
    for attempt in range(2):
        now = clock.now()
        pending = _write_behind.find(user_id=user_id, response_id=response_id, now=now)
        if pending is not None:
            return pending
        found = await orm_call(stored_response_find)(
            user_id=user_id, response_id=response_id, now=now
        )
        if found is not None or attempt or settings.RESPONSES_STORE_WRITE_DELAY_MS <= 0:
            return found
        await asyncio.sleep(_other_writers_wait_seconds())
    return None


def _other_writers_wait_seconds() -> float:
    # Another process writes a kept answer after the delay, plus the time its INSERT takes:
    # twice the delay and 100 ms more leaves room for a busy database.
    return 2 * settings.RESPONSES_STORE_WRITE_DELAY_MS / 1000 + 0.1


async def stored_response_keep(
    response: HttpResponseBase, *, user_id: int, input_items: list[Any]
) -> HttpResponseBase:
    """Returns `response` arranged so that its answer is kept (written within
    RESPONSES_STORE_WRITE_DELAY_MS, see _WriteBehind): at once for a JSON answer; for a stream,
    just before the terminal event is relayed, so a client that reads `response.completed` and
    then asks for the id finds it."""
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
    now = clock.now()
    row = stored_response_row(user_id=user_id, response=response, input_items=input_items, now=now)
    if settings.RESPONSES_STORE_WRITE_DELAY_MS > 0:
        _write_behind.add(row)
        return
    try:
        await orm_call(stored_responses_write)([row], now=now)
    except DatabaseError as exc:
        logger.error("response %s not stored: %s", row.response_id, type(exc).__name__)


class _WriteBehind:
    """Kept answers waiting up to RESPONSES_STORE_WRITE_DELAY_MS to be written together.

    Why: one INSERT per answer, with its hop to an ORM thread, cost the worker about 1 ms of
    CPU per answer under load (several times what it costs alone, with cold caches and the
    GIL shared), which held the Responses API's stream row to 60% of chat's. Written in
    batches, the cost is shared. Until written, an answer is found here
    (stored_response_lookup), so this process's next request sees it; other processes see it
    once written. A process killed outright loses the answers of its last delay; a graceful
    stop writes them (stored_responses_flush, on lifespan shutdown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: dict[tuple[int, str], KeptResponse] = {}
        # Taken for a write that has not committed yet: still found here meanwhile.
        self._writing: dict[tuple[int, str], KeptResponse] = {}
        self._timers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._flushes: set[asyncio.Task[None]] = set()
        # Held while a batch is written (tests wait on it before emptying tables).
        self.write_lock = threading.Lock()
        # Raised by drop(): a batch taken before is not written.
        self._generation = 0

    def add(self, row: KeptResponse) -> None:
        """Queues `row`; the first row queued on a loop starts that loop's timer, and a full
        statement's worth is written at once."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._queued[(row.user_id, row.response_id)] = row
            full = len(self._queued) >= _ROWS_PER_STATEMENT
        timer = self._timers.get(loop)
        if full:
            flush = loop.create_task(self.flush())
            self._flushes.add(flush)  # a task nobody holds may be collected before it ends
            flush.add_done_callback(self._flushes.discard)
        elif timer is None or timer.done():
            self._timers[loop] = loop.create_task(self._flush_later(loop))

    def find(self, *, user_id: int, response_id: str, now: datetime) -> KeptResponse | None:
        key = (user_id, response_id)
        with self._lock:
            row = self._queued.get(key) or self._writing.get(key)
        return row if row is not None and row.expires_at > now else None

    def drop(self) -> None:
        """Forgets the queued answers (tests, before emptying the tables)."""
        with self._lock:
            self._queued.clear()
            self._writing.clear()
            self._generation += 1

    async def _flush_later(self, loop: asyncio.AbstractEventLoop) -> None:
        await asyncio.sleep(settings.RESPONSES_STORE_WRITE_DELAY_MS / 1000)
        # Answers kept while this batch is written start the next timer.
        self._timers.pop(loop, None)
        await self.flush()

    async def flush(self) -> None:
        """Writes every queued answer now."""
        with self._lock:
            batch, self._queued = self._queued, {}
            self._writing.update(batch)
            generation = self._generation
        if not batch:
            return
        try:
            await orm_call(self._write)(list(batch.values()), generation=generation)
        except DatabaseError as exc:
            logger.error("%d response(s) not stored: %s", len(batch), type(exc).__name__)
        finally:
            with self._lock:
                for key, row in batch.items():
                    if self._writing.get(key) is row:
                        del self._writing[key]

    def _write(self, rows: list[KeptResponse], *, generation: int) -> None:
        with self.write_lock:
            if generation != self._generation:
                return
            try:
                stored_responses_write(rows, now=clock.now())
            except IntegrityError:
                if len(rows) == 1:
                    raise
                # One row the database refuses (its user deleted meanwhile) must not cost
                # the others theirs: each alone, and only the refused ones are lost.
                refused = 0
                for row in rows:
                    try:
                        stored_responses_write([row], now=clock.now())
                    except IntegrityError:
                        refused += 1
                if refused:
                    logger.error("%d response(s) not stored: IntegrityError", refused)


_write_behind = _WriteBehind()


async def stored_responses_flush() -> None:
    """Writes the answers this process still holds (a graceful stop; tests)."""
    await _write_behind.flush()


def stored_responses_pending_drop() -> None:
    """Forgets the answers this process has yet to write and waits out a write in progress
    (tests, before the tables are emptied: a write racing the truncation deadlocks)."""
    _write_behind.drop()
    with _write_behind.write_lock:
        pass
