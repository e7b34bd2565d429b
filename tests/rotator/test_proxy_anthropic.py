"""The Anthropic Messages surface (/v1/messages), driven by the official anthropic SDK."""

import base64
import json
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from stats.models import UsageCounter
from stats.usage import usage_flush
from tests.conftest import Persona
from tests.fake_gemini.replies import THOUGHT_TEXT
from tests.rotator.test_oauth import oauth_persona

MODEL = "gemini-2.5-flash"
HELLO = [{"role": "user", "content": "hello there friend"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
CLAUDE_CODE_REQUEST = Path(__file__).parent / "codecs" / "data" / "claude_code_request.json"


@pytest.fixture
def olga(db, fake_gemini) -> Persona:
    return oauth_persona("olga", fake_gemini, project_id="olga-project")


@pytest.fixture(params=["api_key", "oauth"])
def persona(request, alice) -> Persona:
    """Each test below runs on alice's pool of API keys and on olga's OAuth account."""
    if request.param == "api_key":
        return alice
    return request.getfixturevalue("olga")


@pytest.fixture
def claude(live, persona) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live, api_key=persona.key, max_retries=0)


def sse_names(response: httpx.Response) -> list[str]:
    return [
        line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")
    ]


def test_a_message_comes_back_from_the_pool(claude, persona, fake_gemini):
    message = claude.messages.create(model=MODEL, max_tokens=256, system="Be kind.", messages=HELLO)
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert message.content[0].type == "text" and message.content[0].text.startswith("This is")
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 5  # the fake counts words: system and message
    [upstream] = [r for r in fake_gemini.requests if r.model]
    if persona.credentials[0].kind == "gemini_api_key":
        # Translated to Gemini's native API: there is no OpenAI-compatible shortcut for it.
        assert upstream.dialect == "gemini" and upstream.secret in persona.upstream_keys
        sent = upstream.body
    else:
        assert upstream.dialect == "code_assist"
        sent = upstream.body["request"]
    assert sent["systemInstruction"] == {"parts": [{"text": "Be kind."}]}
    assert sent["generationConfig"] == {"maxOutputTokens": 256}
    usage_flush()
    counted = UsageCounter.objects.get()
    assert counted.successes == 1 and counted.total_tokens > 0


def test_a_streamed_message_has_the_exact_event_order(live, persona):
    with httpx.stream(
        "POST",
        f"{live}/v1/messages?beta=true",
        headers={"authorization": f"Bearer {persona.key}", "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "max_tokens": 256, "stream": True, "messages": HELLO},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        names = sse_names(response)
    assert names[:2] == ["message_start", "content_block_start"]
    assert set(names[2:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_the_sdk_streams_a_message(claude):
    with claude.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("This is fake reply")
    assert final.stop_reason == "end_turn" and final.usage.input_tokens == 3
    assert final.usage.output_tokens > 0


def test_a_tool_loop_goes_from_tool_use_to_tool_result_to_an_answer(claude, fake_gemini):
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = claude.messages.create(
        model=MODEL, max_tokens=256, tools=[WEATHER_TOOL], messages=[question]
    )
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    second = claude.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}],
            },
        ],
    )
    assert second.content[0].text == "Result from get_weather received."
    last = [r for r in fake_gemini.requests if r.model][-1].body
    contents = last.get("request", last)["contents"]
    assert contents[-1]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": "Sunny"}}}
    ]


def test_thinking_comes_back_as_a_thinking_block(claude):
    message = claude.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=HELLO,
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == THOUGHT_TEXT


def test_an_image_reaches_gemini_inline(claude, fake_gemini):
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    claude.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [{"type": "image", "source": image}, {"type": "text", "text": "What?"}],
            }
        ],
    )
    body = [r for r in fake_gemini.requests if r.model][-1].body
    parts = body.get("request", body)["contents"][0]["parts"]
    assert parts[0] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}


def test_reaching_max_tokens_says_so(claude):
    message = claude.messages.create(model=MODEL, max_tokens=2, messages=HELLO)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == "This is"


def test_tokens_are_counted(claude):
    counted = claude.messages.count_tokens(
        model=MODEL, system="Be kind.", messages=[{"role": "user", "content": "one two three"}]
    )
    assert counted.input_tokens >= 3


def test_bad_input_is_a_400_in_anthropics_shape(live, persona):
    claude = anthropic.Anthropic(base_url=live, auth_token=persona.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as missing:
        claude.post(
            "/v1/messages",
            body={"model": MODEL, "messages": HELLO},
            cast_to=httpx.Response,
        )
    assert missing.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "'max_tokens' is required."},
    }
    unknown = [{"role": "user", "content": [{"type": "hologram", "data": "x"}]}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model=MODEL, max_tokens=10, messages=unknown)
    assert "hologram" in refused.value.body["error"]["message"]


def test_a_wrong_key_is_an_authentication_error(live, alice):
    claude = anthropic.Anthropic(base_url=live, api_key="rk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        claude.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert refused.value.body["error"]["type"] == "authentication_error"


def test_an_exhausted_pool_is_a_429_with_retry_after(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "quota_day", model=MODEL)
    claude = anthropic.Anthropic(base_url=live, api_key=alice.key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    assert int(limited.value.response.headers["retry-after"]) > 0


def test_the_models_list_is_anthropics_for_anthropic_clients(live, persona):
    claude = anthropic.Anthropic(base_url=live, api_key=persona.key, max_retries=0)
    models = list(claude.models.list())
    assert models and all(model.type == "model" for model in models)
    assert MODEL in {model.id for model in models}
    assert claude.models.retrieve(MODEL).id == MODEL
    # OpenAI clients on the same route still get OpenAI's list.
    openai_client = openai.OpenAI(base_url=f"{live}/v1", api_key=persona.key, max_retries=0)
    assert MODEL in {model.id for model in openai_client.models.list()}


def test_a_claude_code_request_is_answered_and_its_stream_parsed(live, persona, fake_gemini):
    body = json.loads(CLAUDE_CODE_REQUEST.read_text())
    body["model"] = MODEL
    claude = anthropic.Anthropic(base_url=live, auth_token=persona.key, max_retries=0)
    core = {key: body.pop(key) for key in ("model", "max_tokens", "messages")}
    body.pop("stream")
    # The rest as Claude Code sends it, whichever fields this SDK version names.
    with claude.messages.stream(**core, extra_body=body) as stream:
        final = stream.get_final_message()
    assert final.content[-1].type == "text"
    assert final.content[-1].text == "Result from Glob received."
    sent = [r for r in fake_gemini.requests if r.model][-1].body
    sent = sent.get("request", sent)
    assert len(sent["tools"][0]["functionDeclarations"]) == 21
    assert not any("billing-header" in p["text"] for p in sent["systemInstruction"]["parts"])


def test_a_mixed_pool_serves_messages_from_both_kinds(live, db, fake_gemini):
    mixed = oauth_persona("mika", fake_gemini, api_keys=1, project_id="mika-project")
    claude = anthropic.Anthropic(base_url=live, api_key=mixed.key, max_retries=0)
    for _ in range(4):
        assert claude.messages.create(model=MODEL, max_tokens=64, messages=HELLO).content
    dialects = {r.dialect for r in fake_gemini.requests if r.model}
    assert dialects == {"gemini", "code_assist"}


def _weather_then_answer(claude: anthropic.Anthropic, *, stream: bool) -> anthropic.types.Message:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    request = {
        "model": "gemini-3-pro-preview",
        "max_tokens": 1024,
        "tools": [WEATHER_TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    if stream:
        with claude.messages.stream(**request, messages=[question]) as streamed:
            first = streamed.get_final_message()
    else:
        first = claude.messages.create(**request, messages=[question])
    [call] = [block for block in first.content if block.type == "tool_use"]
    claude.messages.create(
        **request,
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}],
            },
        ],
    )
    return first


@pytest.mark.parametrize("stream", [False, True])
def test_a_gemini_3_signature_comes_back_on_the_call_it_signed(claude, fake_gemini, stream):
    first = _weather_then_answer(claude, stream=stream)
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    assert first.content[0].thinking == THOUGHT_TEXT
    # The client holds a sealed token, never Google's signature itself.
    token = first.content[0].signature
    second = [r for r in fake_gemini.requests if r.model][-1].body
    model_turn = second.get("request", second)["contents"][1]["parts"]
    # Only the signature went back (the thought summary did not), on the call Gemini signed.
    [signed] = model_turn
    assert signed["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert base64.b64decode(signed["thoughtSignature"]).startswith(b"fake-thought-signature/")
    assert "rotatorSignatureBackend" not in signed
    assert token != signed["thoughtSignature"]


def test_a_signature_from_one_backend_is_not_sent_to_the_other(live, db, fake_gemini):
    mixed = oauth_persona("mika", fake_gemini, api_keys=1, project_id="mika-project")
    claude = anthropic.Anthropic(base_url=live, api_key=mixed.key, max_retries=0)
    _weather_then_answer(claude, stream=False)
    first, second = [r for r in fake_gemini.requests if r.model]
    # Round robin over one API key and one OAuth account: the turns went to both backends.
    assert {first.dialect, second.dialect} == {"gemini", "code_assist"}
    sent = second.body.get("request", second.body)
    [call] = sent["contents"][1]["parts"]
    # The other backend refuses a foreign signature; Google's skip value keeps the turn valid.
    assert call["thoughtSignature"] == "skip_thought_signature_validator"


def test_upstreams_own_400_reaches_the_client_in_anthropics_shape(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "bad_request")
    claude = anthropic.Anthropic(base_url=live, api_key=alice.key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "invalid_request_error"
    assert "fake_field" in refused.value.body["error"]["message"]


def test_a_stream_cut_upstream_ends_with_an_error_event_the_sdk_raises(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "cut_stream", after=2)
    claude = anthropic.Anthropic(base_url=live, api_key=alice.key, max_retries=0)
    received = []
    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        claude.messages.stream(model=MODEL, max_tokens=256, messages=HELLO) as stream,
    ):
        for event in stream:
            received.append(event.type)
    # The partial answer came through, then the error; nothing claims the message finished.
    assert received[0] == "message_start" and "message_stop" not in received
    assert failed.value.body["error"]["type"] == "api_error"
    assert failed.value.body["error"]["message"].startswith("The upstream stream")
