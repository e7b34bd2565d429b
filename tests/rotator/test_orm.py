"""Tests for rotator.orm: the threads ORM calls run on, and their database connections."""

import asyncio
import time

import pytest
from django.db import connection, connections

from rotator.models import StoredResponse
from rotator.orm import orm_call

pytestmark = pytest.mark.django_db(transaction=True)


def _rows() -> int:
    return StoredResponse.objects.count()


def _connections_end() -> int:
    """Ends every other connection to the test database as a server restart would; returns
    how many (PostgreSQL; SQLite has no server to end them, so none)."""
    if connection.vendor != "postgresql":
        return 0
    others = "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity {others}")
        (ended,) = cursor.fetchone()
        for _ in range(500):  # until they are gone, as after a restart: up to 10 s
            cursor.execute(f"SELECT count(*) FROM pg_stat_activity {others}")
            if cursor.fetchone()[0] == 0:
                break
            time.sleep(0.02)
    return int(ended)


def test_a_warm_connection_is_used_without_a_health_check_round_trip(monkeypatch) -> None:
    # Django's health check (CONN_HEALTH_CHECKS) was a `SELECT 1` before every ORM call:
    # keeping a Responses API answer spent as much CPU on it as on its INSERT.
    checks: list[str] = []
    wrapper = type(connections["default"])
    usable = wrapper.is_usable

    def counted(self: object) -> bool:
        checks.append("SELECT 1")
        return bool(usable(self))

    async def scenario() -> list[int]:
        await asyncio.gather(*(orm_call(_rows)() for _ in range(8)))  # every thread warm
        monkeypatch.setattr(wrapper, "is_usable", counted)
        return list(await asyncio.gather(*(orm_call(_rows)() for _ in range(20))))

    assert asyncio.run(scenario()) == [0] * 20
    assert checks == []


def test_a_connection_the_server_ended_heals_on_the_next_call() -> None:
    async def scenario() -> list[int]:
        await asyncio.gather(*(orm_call(_rows)() for _ in range(8)))
        ended = await asyncio.to_thread(_connections_end)
        if connection.vendor == "postgresql":
            assert ended >= 1  # the ORM threads' connections, ended under them
        return list(await asyncio.gather(*(orm_call(_rows)() for _ in range(8))))

    assert asyncio.run(scenario()) == [0] * 8
