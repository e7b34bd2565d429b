"""Client calls the live-server tests make again and again."""

from typing import Any

import httpx

CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}


def chat_post(live: str, key: str, *, timeout: Any = 30) -> httpx.Response:
    """A plain chat completion, as a user's program sends it."""
    return httpx.post(
        f"{live}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def chat_stream_left_after_first_event(live: str, key: str) -> None:
    """Opens a streamed chat, reads up to its first data event and hangs up."""
    with (
        httpx.Client(base_url=live, timeout=30) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={**CHAT, "messages": [{"role": "user", "content": "go on"}], "stream": True},
            headers={"authorization": f"Bearer {key}"},
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:"):
                return
