"""ORM calls from the async proxy path run on a small fixed pool of threads.

Django would run them in a thread of each request's own (asgiref's ThreadSensitiveContext),
and every such thread opens its own database connection: under load that is one connection
per request in flight, and PostgreSQL's default 100 ran out in the load test. A fixed pool
keeps at most ORM_THREADS persistent connections per process, reused across requests.
Calls that also wait on the network (an OAuth refresh holds a row lock across its HTTP call)
get their own small pool, so they never starve the quick ones.
"""

import asyncio
import contextvars
import select
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial, wraps
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import close_old_connections, connection

P = ParamSpec("P")
R = TypeVar("R")


@cache
def _executor(name: str, size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"orm-{name}")


_query_lock = threading.Lock()
_query_total = 0


def _query_counted(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
) -> Any:
    global _query_total
    with _query_lock:
        _query_total += 1
    return execute(sql, params, many, context)


def queries_made() -> int:
    """How many SQL statements the proxy path has run in this process: the check that the
    warm path stays off the database (tests), and a gauge for operators."""
    return _query_total


def _connection_known_good() -> bool:
    """True when this thread's database connection can be used without Django's health
    check: it is open, saw no error and is younger than CONN_MAX_AGE, and (PostgreSQL) its
    socket has nothing to read while idle: a server that closed it, say on a restart, leaves
    the socket readable (its farewell and EOF). SQLite has no server to end it."""
    raw = connection.connection
    if raw is None or connection.errors_occurred:
        return False
    if connection.close_at is not None and time.monotonic() >= connection.close_at:
        return False
    if connection.vendor == "sqlite":
        return True
    if connection.vendor != "postgresql":
        return False
    try:
        readable, _, _ = select.select([raw.fileno()], [], [], 0)
    except (OSError, ValueError):  # closed under us
        return False
    return not readable


def _connection_prepare() -> None:
    """What Django does around each request: drop a connection that is broken or older than
    CONN_MAX_AGE (then health-check the next one with `SELECT 1`), so a database restart
    heals instead of failing forever. Skipped for a connection known good: on every ORM call
    that health check was a second round trip, and storing a Responses API answer spent as
    much CPU on it as on the INSERT itself."""
    if not _connection_known_good():
        close_old_connections()


def _fresh(fn: Callable[P, R]) -> Callable[P, R]:
    @wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        _connection_prepare()
        with connection.execute_wrapper(_query_counted):
            return fn(*args, **kwargs)

    return call


def _on_threads(fn: Callable[P, R], executor: ThreadPoolExecutor) -> Callable[P, Awaitable[R]]:
    fresh = _fresh(fn)

    @wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        # The caller's context variables go along, as with asgiref's sync_to_async; its other
        # work (a new wrapper per call, restoring changed variables afterwards, thread-sensitive
        # bookkeeping) is not needed on a fixed pool and cost 50 us a call.
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, partial(context.run, fresh, *args, **kwargs))

    return call


def orm_call(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`fn` as a coroutine function running on the shared ORM threads."""
    return _on_threads(fn, _executor("quick", settings.ORM_THREADS))


def orm_call_slow(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`fn` on the threads for calls that also wait on the network."""
    return _on_threads(fn, _executor("slow", settings.ORM_SLOW_THREADS))
