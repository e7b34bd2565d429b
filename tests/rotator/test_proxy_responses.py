"""The Responses API (`/v1/responses`), driven by the official openai SDK and raw HTTP, on an
API-key pool, an OAuth pool and a mixed one."""

import json
from collections import Counter

import httpx
import openai
import pytest

from rotator.codecs import shared
from stats.models import UsageCounter
from stats.usage import usage_flush
from tests.conftest import persona_create
from tests.rotator.codecs.test_openai_responses import CODEX_REQUEST
from tests.rotator.test_oauth import oauth_persona

MODEL = "gemini-2.5-flash"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def client(live: str, persona) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live}/v1", api_key=persona.key, max_retries=0)


@pytest.fixture
def olga(db, fake_gemini):
    return oauth_persona("olga", fake_gemini, project_id="olga-project")


@pytest.fixture(params=["api_key", "oauth"])
def persona(request, alice, fake_gemini):
    """Each test below runs on alice's API-key pool and on olga's Gemini CLI account."""
    if request.param == "api_key":
        return alice
    return oauth_persona("olga", fake_gemini, project_id="olga-project")


def generate_bodies(fake_gemini) -> list[dict]:
    """The GenerateContentRequests Google received, whichever backend served them."""
    bodies = []
    for recorded in fake_gemini.requests:
        if recorded.dialect == "gemini" and recorded.model:
            bodies.append(recorded.body)
        elif recorded.dialect == "code_assist" and recorded.model:
            bodies.append(recorded.body["request"])
    return bodies


def test_a_response_comes_back_from_the_pool(live, persona, fake_gemini):
    response = client(live, persona).responses.create(
        model=MODEL, instructions="Be brief.", input="hello there friend"
    )
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.output_text.startswith("This is fake reply number")
    assert response.usage is not None
    assert response.usage.input_tokens == 5  # "Be brief." and the three words of the input
    assert response.usage.output_tokens > 0
    [sent] = generate_bodies(fake_gemini)
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "hello there friend"}]}]


def test_a_streamed_response_arrives_as_typed_events(live, persona):
    with client(live, persona).responses.stream(model=MODEL, input="tell me a story") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") > 1
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == deltas
    assert final.id == events[0].response.id
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_a_function_tool_loop_answers_by_function_name(live, persona, fake_gemini):
    sdk = client(live, persona)
    question = [{"role": "user", "content": "what is the weather in Paris"}]
    first = sdk.responses.create(model=MODEL, input=question, tools=[WEATHER], store=False)
    [call] = first.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    second = sdk.responses.create(
        model=MODEL,
        tools=[WEATHER],
        store=False,
        input=[
            *question,
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'},
        ],
    )
    assert second.output_text == "Result from get_weather received."
    last_turn = generate_bodies(fake_gemini)[-1]["contents"][-1]
    assert last_turn == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "name": "get_weather",
                    "response": {"output": '{"temp_c": 21}'},
                }
            }
        ],
    }


def test_json_schema_output_asks_gemini_for_json(live, persona, fake_gemini):
    response = client(live, persona).responses.create(
        model=MODEL,
        input="answer in JSON",
        text={
            "format": {
                "type": "json_schema",
                "name": "answer",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"answer": {"type": "string"}},
                    "required": ["answer"],
                    "additionalProperties": False,
                },
            }
        },
    )
    assert json.loads(response.output_text) == {"answer": "fake"}
    config = generate_bodies(fake_gemini)[-1]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"] == {"answer": {"type": "string"}}


def test_reasoning_items_are_carried_across_turns_without_a_store(live, persona, fake_gemini):
    sdk = client(live, persona)
    first = sdk.responses.create(
        model=MODEL,
        input="think first",
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        store=False,
    )
    reasoning, message = first.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "thinking..."
    assert first.usage is not None and first.usage.output_tokens_details.reasoning_tokens == 1
    second = sdk.responses.create(
        model=MODEL,
        store=False,
        input=[
            {"role": "user", "content": "think first"},
            *[item.model_dump(exclude_none=True) for item in first.output],
            {"role": "user", "content": "and then?"},
        ],
    )
    assert second.status == "completed"
    sent = generate_bodies(fake_gemini)[-1]["contents"]
    assert [turn["role"] for turn in sent] == ["user", "model", "user"]
    assert sent[1]["parts"] == [{"text": message.content[0].text}]
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(first.id)  # store: false keeps nothing


def test_a_sealed_signature_returns_to_its_call_where_the_backend_accepts_it(
    live, persona, fake_gemini
):
    # What an earlier answer from an API-key credential handed the client.
    token = shared.signature_seal("c2lnbmVk", backend="gemini_api")
    client(live, persona).responses.create(
        model=MODEL,
        tools=[WEATHER],
        store=False,
        input=[
            {"role": "user", "content": "what is the weather in Paris"},
            {"type": "reasoning", "summary": [], "encrypted_content": token},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "21C"},
        ],
    )
    [call_part] = generate_bodies(fake_gemini)[-1]["contents"][1]["parts"]
    assert shared.SIGNATURE_BACKEND_KEY not in call_part
    if persona.credentials[0].kind == "gemini_api_key":
        assert call_part["thoughtSignature"] == "c2lnbmVk"
    else:
        # Code Assist does not accept the Gemini API's signatures.
        assert "thoughtSignature" not in call_part


def test_previous_response_id_continues_a_stored_response(live, persona, fake_gemini):
    sdk = client(live, persona)
    first = sdk.responses.create(model=MODEL, input="first question")
    second = sdk.responses.create(
        model=MODEL, previous_response_id=first.id, input="second question"
    )
    assert second.previous_response_id == first.id
    sent = generate_bodies(fake_gemini)[-1]["contents"]
    assert sent == [
        {"role": "user", "parts": [{"text": "first question"}]},
        {"role": "model", "parts": [{"text": first.output_text}]},
        {"role": "user", "parts": [{"text": "second question"}]},
    ]
    retrieved = sdk.responses.retrieve(second.id)
    assert retrieved.id == second.id
    assert retrieved.output_text == second.output_text


def test_a_streamed_stored_response_can_be_retrieved_at_once(live, persona):
    sdk = client(live, persona)
    with sdk.responses.stream(model=MODEL, input="tell me a story") as stream:
        final = stream.get_final_response()
    assert sdk.responses.retrieve(final.id).output_text == final.output_text


def test_another_users_response_id_is_refused(live, alice, bob):
    mine = client(live, alice).responses.create(model=MODEL, input="private words")
    theirs = client(live, bob)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(mine.id)
    with pytest.raises(openai.BadRequestError) as refused:
        theirs.responses.create(model=MODEL, previous_response_id=mine.id, input="tell me")
    assert refused.value.code == "previous_response_not_found"
    assert refused.value.param == "previous_response_id"


def test_errors_come_in_openai_shape_with_the_right_status(live, alice, charlie):
    sdk = client(live, alice)
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.responses.create(model=MODEL, input="hi", tools=[{"type": "file_search"}])
    assert bad.value.param == "tools[0].type"
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve("resp_unknown")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live}/v1", api_key="rk-wrong", max_retries=0).responses.create(
            model=MODEL, input="hi"
        )
    with pytest.raises(openai.APIStatusError) as empty:
        client(live, charlie).responses.create(model=MODEL, input="hi")
    assert empty.value.status_code == 503


def test_a_model_the_key_may_not_use_is_a_403(live, db):
    dora = persona_create("dora", credentials=1, allowed_models=["gemini-2.5-pro"])
    with pytest.raises(openai.PermissionDeniedError):
        client(live, dora).responses.create(model=MODEL, input="hi")


def test_an_exhausted_pool_is_a_429_with_retry_after(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "rate_limit_minute", retry_delay="20s")
    with pytest.raises(openai.RateLimitError) as limited:
        client(live, alice).responses.create(model=MODEL, input="hi")
    assert int(limited.value.response.headers["Retry-After"]) > 0


def test_a_stream_cut_by_upstream_ends_with_response_failed(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "cut_stream", after=1)
    with httpx.stream(
        "POST",
        f"{live}/v1/responses",
        headers={"Authorization": f"Bearer {alice.key}"},
        json={"model": MODEL, "input": "tell me a long story", "stream": True},
        timeout=30,
    ) as answer:
        frames = answer.read().decode().split("\n\n")
    events = [json.loads(f.partition("data: ")[2]) for f in frames if f.startswith("event: ")]
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["message"]


def test_a_recorded_codex_request_is_answered_and_its_stream_parses(live, alice, fake_gemini):
    # Codex posts {base_url}/responses; here without /v1, which is served the same.
    with httpx.stream(
        "POST",
        f"{live}/responses",
        headers={
            "Authorization": f"Bearer {alice.key}",
            "Accept": "text/event-stream",
            "originator": "codex_cli_rs",
            "session_id": CODEX_REQUEST["prompt_cache_key"],
        },
        json={**CODEX_REQUEST, "model": MODEL, "tools": CODEX_REQUEST["tools"][:3]},
        timeout=30,
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        raw = answer.read().decode()
    frames = [frame for frame in raw.split("\n\n") if frame]
    events = []
    for frame in frames:
        name, data = frame.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    assert events[-1]["type"] == "response.completed"
    assert isinstance(events[-1]["response"]["id"], str)
    usage = events[-1]["response"]["usage"]
    assert all(isinstance(usage[key], int) for key in ("input_tokens", "output_tokens"))
    [sent] = generate_bodies(fake_gemini)
    names = [d["name"] for d in sent["tools"][0]["functionDeclarations"]]
    assert names == ["shell", "update_plan", "apply_patch"]
    # The conversation's last turn answered the custom apply_patch call by its name.
    assert sent["contents"][-1]["parts"][0]["functionResponse"]["name"] == "apply_patch"


def test_requests_are_counted_for_the_key_and_model(live, alice):
    client(live, alice).responses.create(model=MODEL, input="count me")
    usage_flush()
    counted = UsageCounter.objects.get()
    assert counted.successes == 1
    assert counted.model == MODEL
    assert counted.total_tokens > 0


def test_a_mixed_pool_serves_responses_from_both_kinds(live, db, fake_gemini):
    mixed = oauth_persona("mika", fake_gemini, api_keys=2, project_id="mika-project")
    sdk = client(live, mixed)
    for _ in range(6):
        assert sdk.responses.create(model=MODEL, input="hello", store=False).output_text
    with sdk.responses.stream(model=MODEL, input="hello", store=False) as stream:
        assert stream.get_final_response().status == "completed"
    kinds = Counter(r.dialect for r in fake_gemini.requests if r.model)
    assert kinds["gemini"] > 0 and kinds["code_assist"] > 0
    assert kinds["openai"] == 0  # no shortcut: Google's OpenAI endpoint has no Responses API
