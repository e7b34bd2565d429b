"""rotator.redis_multiplex: many requests' commands over one Redis connection, each answered
with its own reply, through errors, cancellations and a connection Redis drops."""

import asyncio
import uuid

import pytest
import redis
from django.conf import settings as django_settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from rotator.redis_multiplex import MultiplexedRedis

REDIS_URL = django_settings.REDIS_URL or "redis://127.0.0.1:6379/0"


def _key() -> str:
    return f"multiplex-test:{uuid.uuid4().hex}"


def _client_ids(name: str) -> list[int]:
    listed = redis.Redis.from_url(REDIS_URL).client_list()
    return [int(c["id"]) for c in listed if c.get("name") == name]


def test_concurrent_commands_each_get_their_own_reply_over_one_connection():
    multiplexed = MultiplexedRedis(REDIS_URL)
    key = _key()

    async def many() -> list[object]:
        await multiplexed.execute("CLIENT", "SETNAME", key)
        echoes = [multiplexed.execute("ECHO", f"reply-{i}") for i in range(300)]
        counts = [multiplexed.execute("INCR", key) for _ in range(300)]
        replies = await asyncio.gather(*echoes, *counts)
        assert len(_client_ids(key)) == 1, "one connection served them all"
        return replies

    replies = asyncio.run(many())
    assert replies[:300] == [f"reply-{i}".encode() for i in range(300)]
    assert sorted(replies[300:]) == list(range(1, 301))
    redis.Redis.from_url(REDIS_URL).delete(key)


def test_a_refused_command_raises_redis_pys_error_and_the_connection_goes_on():
    multiplexed = MultiplexedRedis(REDIS_URL)
    key = _key()

    async def run() -> None:
        await multiplexed.execute("SET", key, "text")
        with pytest.raises(ResponseError, match="not an integer"):
            await multiplexed.execute("INCR", key)
        with pytest.raises(NoScriptError):
            await multiplexed.execute("EVALSHA", "0" * 40, 0)
        assert await multiplexed.execute("GET", key) == b"text"
        assert await multiplexed.execute("GET", _key()) is None

    asyncio.run(run())
    redis.Redis.from_url(REDIS_URL).delete(key)


def test_a_cancelled_caller_does_not_shift_the_others_replies():
    multiplexed = MultiplexedRedis(REDIS_URL)

    async def run() -> None:
        # BLPOP holds this connection for 0.3 s: the two commands behind it wait their turn.
        blocked = asyncio.ensure_future(multiplexed.execute("BLPOP", _key(), "0.3"))
        await asyncio.sleep(0.05)
        cancelled = asyncio.ensure_future(multiplexed.execute("ECHO", "for the cancelled"))
        kept = asyncio.ensure_future(multiplexed.execute("ECHO", "for the one that waited"))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        assert await blocked is None
        assert await kept == b"for the one that waited"
        assert await multiplexed.execute("ECHO", "after") == b"after"

    asyncio.run(run())


def test_a_connection_redis_drops_is_opened_again_for_the_next_command():
    multiplexed = MultiplexedRedis(REDIS_URL)
    name = _key()

    async def run() -> None:
        await multiplexed.execute("CLIENT", "SETNAME", name)
        (first,) = _client_ids(name)
        redis.Redis.from_url(REDIS_URL).client_kill_filter(_id=str(first))
        # Sent on the dropped connection, it fails there and is sent again on a new one.
        assert await multiplexed.execute("ECHO", "again") == b"again"
        assert _client_ids(name) == [], "the new connection is another client"

    asyncio.run(run())


def test_an_unreachable_redis_is_a_connection_error():
    multiplexed = MultiplexedRedis("redis://127.0.0.1:1/0")

    async def run() -> None:
        with pytest.raises(RedisConnectionError):
            await multiplexed.execute("PING")

    asyncio.run(run())


def test_the_database_number_in_the_url_is_selected():
    base = REDIS_URL.rsplit("/", 1)[0]
    multiplexed = MultiplexedRedis(f"{base}/5")
    key = _key()

    async def run() -> None:
        await multiplexed.execute("SET", key, "in five")

    asyncio.run(run())
    five = redis.Redis.from_url(f"{base}/5")
    assert five.get(key) == b"in five"
    five.delete(key)
