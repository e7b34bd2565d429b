"""The response writer's keep-alive timer (config.asgi._IdlePacer): a keep-alive only after
a quiet interval, none while bytes flow, and none after the answer's last message."""

import asyncio
from typing import Any

from config.asgi import _IdlePacer

START = {"type": "http.response.start", "status": 200, "headers": []}


def _part(body: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": True}


END = {"type": "http.response.body"}


class _Recorder:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.ended = False

    async def send(self, message: Any) -> None:
        assert not self.ended, f"{message} sent after the last message"
        if message["type"] == "http.response.body":
            self.bodies.append(message.get("body", b""))
            self.ended = not message.get("more_body", False)


def test_a_quiet_stream_gets_a_keep_alive_each_interval():
    async def scenario() -> list[bytes]:
        client = _Recorder()
        pacer = _IdlePacer(client.send, keepalive=lambda: b": ka\n\n", interval=0.05)
        await pacer.send(START)
        await pacer.send(_part(b"data: 1\n\n"))
        # Nothing from upstream for a while: keep-alives, one per quiet interval.
        deadline = asyncio.get_running_loop().time() + 10  # a bound under load, not a wait
        while client.bodies.count(b": ka\n\n") < 2:
            assert asyncio.get_running_loop().time() < deadline, "no keep-alives came"
            await asyncio.sleep(0.01)
        await pacer.send(_part(b"data: 2\n\n"))
        await pacer.send(END)
        return client.bodies

    bodies = asyncio.run(scenario())
    assert bodies[0] == b"data: 1\n\n"
    assert bodies[-2:] == [b"data: 2\n\n", b""]
    assert bodies[1:-2] == [b": ka\n\n"] * (len(bodies) - 3)


def test_a_busy_stream_gets_no_keep_alive():
    async def scenario() -> list[bytes]:
        client = _Recorder()
        pacer = _IdlePacer(client.send, keepalive=lambda: b": ka\n\n", interval=2.0)
        await pacer.send(START)
        for index in range(120):  # a part every 0.02 s for 2.4 s: never quiet for 2 s
            await pacer.send(_part(b"data: %d\n\n" % index))
            await asyncio.sleep(0.02)
        await pacer.send(END)
        return client.bodies

    assert b": ka\n\n" not in asyncio.run(scenario())


def test_no_keep_alive_follows_the_last_message():
    async def scenario() -> _Recorder:
        client = _Recorder()
        pacer = _IdlePacer(client.send, keepalive=lambda: b": ka\n\n", interval=0.02)
        await pacer.send(START)
        await asyncio.sleep(0.05)  # a keep-alive is due...
        # ...and the timer fires again, scheduling one, right before the end
        await asyncio.sleep(0.02)
        await pacer.send(END)
        await asyncio.sleep(0.1)  # anything still scheduled would be sent now
        return client

    client = asyncio.run(scenario())
    assert client.ended and client.bodies[-1] == b""


def test_an_empty_keep_alive_sends_nothing():
    # The Anthropic encoder has no keep-alive once its message has stopped.
    async def scenario() -> list[bytes]:
        client = _Recorder()
        pacer = _IdlePacer(client.send, keepalive=lambda: b"", interval=0.02)
        await pacer.send(START)
        await asyncio.sleep(0.1)
        await pacer.send(END)
        return client.bodies

    assert asyncio.run(scenario()) == [b""]
