"""Streams that wait on upstream stay open behind proxies that cut idle connections: the
client stream carries its dialect's keep-alive meanwhile (issue 12)."""

import httpx
import openai
import pytest

from tests.conftest import persona_create

CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "think hard"}]}


@pytest.fixture
def paced(settings):
    settings.STREAM_KEEPALIVE_SECONDS = 0.2


def _stream(http: httpx.Client, key: str) -> list[str]:
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"authorization": f"Bearer {key}"},
    ) as response:
        assert response.status_code == 200
        return [line for line in response.iter_lines() if line]


def test_a_model_thinking_before_its_first_byte_gets_keep_alives_then_its_answer(
    live, db, http, fake_gemini, paced
):
    persona = persona_create("kira", credentials=1)
    fake_gemini.behave(persona.upstream_keys[0], "slow_first_byte", seconds=1.0)
    lines = _stream(http, persona.key)
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    assert lines[:first_data] and all(line.startswith(":") for line in lines[:first_data])
    assert lines[-1] == "data: [DONE]"


def test_a_slow_stream_gets_keep_alives_between_its_chunks(live, db, http, fake_gemini, paced):
    persona = persona_create("kent", credentials=1)
    fake_gemini.behave(persona.upstream_keys[0], "ok", chunks=3, chunk_delay=0.7)
    lines = _stream(http, persona.key)
    data = [i for i, line in enumerate(lines) if line.startswith("data:")]
    between = [line for line in lines[data[0] : data[-1]] if line.startswith(":")]
    assert between, "a comment while upstream was silent"


def test_the_openai_sdk_reads_a_kept_alive_stream_as_usual(live, db, fake_gemini, paced):
    persona = persona_create("kyle", credentials=1)
    fake_gemini.behave(persona.upstream_keys[0], "slow_first_byte", seconds=0.8)
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=persona.key, max_retries=0)
    chunks = list(client.chat.completions.create(**CHAT, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_failure_after_keep_alives_ends_the_stream_with_an_error_event(
    live, db, http, fake_gemini, paced, settings
):
    persona = persona_create("kurt", credentials=1)
    # Upstream says nothing until our read timeout: the 200 and keep-alives are out by then,
    # so the failure comes as the dialect's error event (and the SDK raises on it).
    # The timeout leaves the 0.2 s keep-alive ten periods to go out, even on a loaded machine.
    settings.UPSTREAM_READ_TIMEOUT_SECONDS = 2.0
    fake_gemini.behave(persona.upstream_keys[0], "timeout", seconds=30)
    lines = _stream(http, persona.key)
    assert lines[0].startswith(":")
    assert lines[-1].startswith("data:") and '"error"' in lines[-1]
    assert "data: [DONE]" not in lines
