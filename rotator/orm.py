"""ORM calls from the async proxy path run on a small fixed pool of threads.

Django would run them in a thread of each request's own (asgiref's ThreadSensitiveContext),
and every such thread opens its own database connection: under load that is one connection
per request in flight, and PostgreSQL's default 100 ran out in the load test. A fixed pool
keeps at most ORM_THREADS persistent connections per process, reused across requests.
Calls that also wait on the network (an OAuth refresh holds a row lock across its HTTP call)
get their own small pool, so they never starve the quick ones.
"""

import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, wraps
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
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


def _fresh(fn: Callable[P, R]) -> Callable[P, R]:
    @wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        # What Django does around each request: drop a connection that is broken or older
        # than CONN_MAX_AGE, so a database restart heals instead of failing forever.
        close_old_connections()
        with connection.execute_wrapper(_query_counted):
            return fn(*args, **kwargs)

    return call


def orm_call(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`fn` as a coroutine function running on the shared ORM threads."""
    executor = _executor("quick", settings.ORM_THREADS)
    return sync_to_async(_fresh(fn), thread_sensitive=False, executor=executor)


def orm_call_slow(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`fn` on the threads for calls that also wait on the network."""
    executor = _executor("slow", settings.ORM_SLOW_THREADS)
    return sync_to_async(_fresh(fn), thread_sensitive=False, executor=executor)
