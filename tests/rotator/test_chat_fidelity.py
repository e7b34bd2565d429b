"""Chat completions that agents and older clients rely on, on every credential kind (issue 12):
a lone system message, the deprecated `functions`, errors inside a 200 stream, and streams
that end without a finish reason."""

import json

import openai
import pytest

from tests.conftest import persona_create
from tests.rotator.test_oauth import oauth_persona, refresh_tokens

MODEL = "gemini-2.5-flash"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(params=["api_key", "oauth"])
def pool(request, db, fake_gemini):
    if request.param == "api_key":
        persona = persona_create("fay", credentials=1)
        persona.secrets = persona.upstream_keys
    else:
        persona = oauth_persona("otis", fake_gemini, project_id="p")
        persona.secrets = refresh_tokens(persona)
    return persona


def _client(live, persona) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live}/v1", api_key=persona.key, max_retries=0)


def test_a_conversation_of_only_a_system_message_is_answered(live, pool):
    answer = _client(live, pool).chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "Say hello."}]
    )
    assert answer.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True])
def test_the_deprecated_functions_get_a_function_call_answer(live, pool, stream):
    client = _client(live, pool)
    kwargs = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "functions": [WEATHER],
    }
    if not stream:
        choice = client.chat.completions.create(**kwargs).choices[0]
        assert choice.finish_reason == "function_call"
        assert choice.message.function_call.name == "get_weather"
        assert json.loads(choice.message.function_call.arguments)["city"]
        assert not choice.message.tool_calls
        return
    chunks = list(client.chat.completions.create(**kwargs, stream=True))
    calls = [c.choices[0].delta.function_call for c in chunks if c.choices]
    assert [call.name for call in calls if call] == ["get_weather"]
    assert chunks[-1].choices[0].finish_reason == "function_call"


def test_an_error_inside_a_200_stream_raises_in_the_sdk(live, pool, fake_gemini):
    # Whether the error reaches Rotator with the content (the stream is then retried, and
    # this one-credential pool answers 502) or after it (an error event ends the stream), the
    # client never sees a normal end.
    fake_gemini.behave(pool.secrets[0], "stream_error", after=2, status=503)
    with pytest.raises(openai.APIError, match="high demand"):
        stream = _client(live, pool).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        for _ in stream:
            pass


def test_a_stream_without_a_finish_reason_is_not_a_normal_stop(live, db, fake_gemini):
    persona = oauth_persona("nina", fake_gemini, project_id="p")
    fake_gemini.behave(refresh_tokens(persona)[0], "no_finish")
    stream = _client(live, persona).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError, match="without a finish reason"):
        for chunk in stream:
            seen += [c.finish_reason for c in chunk.choices]
    assert "stop" not in seen
