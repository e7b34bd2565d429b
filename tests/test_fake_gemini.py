"""Tests of the fake Gemini upstream itself, over real HTTP; no Django needed."""

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_gemini import FakeGemini

KEY = "AIzaFakeKeyForFakeTests0000000000000000"
FLASH = "gemini-2.5-flash"
PRO = "gemini-2.5-pro"
HELLO = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}
WEATHER_TOOL = {"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]}
REFRESH = "1//0fake-refresh-token"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    """Replace tests/conftest.py's Django-bound autouse fixture: the fake needs no Django."""
    yield


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeGemini) -> FakeGemini:
    server.reset()
    server.stream_chunks = 3
    server.chunk_delay_seconds = 0.0
    return server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def generate(
    fake: FakeGemini,
    client: httpx.Client,
    body: dict[str, Any] | None = None,
    *,
    key: str = KEY,
    model: str = FLASH,
    method: str = "generateContent",
    query: str = "",
) -> httpx.Response:
    return client.post(
        f"{fake.gemini_url}/models/{model}:{method}{query}",
        headers={"x-goog-api-key": key},
        json=HELLO if body is None else body,
    )


def chat(
    fake: FakeGemini, client: httpx.Client, body: dict[str, Any] | None = None, *, key: str = KEY
) -> httpx.Response:
    payload = {"model": FLASH, "messages": [{"role": "user", "content": "hello there"}]}
    return client.post(
        f"{fake.openai_url}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={**payload, **(body or {})},
    )


def sse_events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line]


def access_token(fake: FakeGemini, client: httpx.Client, refresh_token: str = REFRESH) -> str:
    response = client.post(
        fake.oauth_token_url,
        data={
            "client_id": "client-id",
            "client_secret": "client-secret",
            "refresh_token": refresh_token,
            "grant_type": "refresh_token",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def code_assist(
    fake: FakeGemini, client: httpx.Client, method: str, token: str, body: dict[str, Any]
) -> httpx.Response:
    return client.post(
        f"{fake.code_assist_url}:{method}",
        headers={"Authorization": f"Bearer {token}"},
        json=body,
    )


# -- native API --------------------------------------------------------------------------------


def test_it_generates_with_word_count_usage(fake: FakeGemini, client: httpx.Client) -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "one two three"}, {"text": "four"}]}],
    }
    response = generate(fake, client, body)
    assert response.status_code == 200
    data = response.json()
    candidate = data["candidates"][0]
    assert candidate["content"]["role"] == "model"
    assert candidate["finishReason"] == "STOP"
    text = candidate["content"]["parts"][0]["text"]
    assert text == "This is fake reply number 1."
    assert KEY not in response.text
    usage = data["usageMetadata"]
    assert usage["promptTokenCount"] == 6
    assert usage["candidatesTokenCount"] == len(text.split())
    assert usage["totalTokenCount"] == 6 + len(text.split())
    assert data["modelVersion"] == FLASH
    assert data["responseId"]


def test_it_accepts_the_key_as_a_query_parameter_and_records_it(
    fake: FakeGemini, client: httpx.Client
) -> None:
    response = client.post(f"{fake.gemini_url}/models/{FLASH}:generateContent?key=k-q", json=HELLO)
    assert response.status_code == 200
    [record] = fake.requests_for("k-q")
    assert (record.dialect, record.model, record.stream) == ("gemini", FLASH, False)
    assert record.body == HELLO
    assert record.finished_at is not None and record.finished_at >= record.started_at


def test_it_refuses_requests_without_a_credential(fake: FakeGemini, client: httpx.Client) -> None:
    response = client.post(f"{fake.gemini_url}/models/{FLASH}:generateContent", json=HELLO)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert error["message"].startswith("Method doesn't allow unregistered callers")
    response = client.post(f"{fake.openai_url}/chat/completions", json={"model": FLASH})
    assert response.status_code == 403
    assert response.json()[0]["error"]["status"] == "PERMISSION_DENIED"


def test_it_lists_and_gets_models(fake: FakeGemini, client: httpx.Client) -> None:
    headers = {"x-goog-api-key": KEY}
    models = client.get(f"{fake.gemini_url}/models", headers=headers).json()["models"]
    names = {m["name"] for m in models}
    assert {f"models/{FLASH}", "models/gemini-embedding-001", "models/text-embedding-004"} <= names
    embedding = next(m for m in models if m["name"] == "models/gemini-embedding-001")
    assert embedding["supportedGenerationMethods"] == ["embedContent"]
    one = client.get(f"{fake.gemini_url}/models/{PRO}", headers=headers).json()
    assert one["name"] == f"models/{PRO}" and one["inputTokenLimit"] > 0
    missing = client.get(f"{fake.gemini_url}/models/gemini-9", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"


def test_it_answers_unknown_models_with_googles_404(fake: FakeGemini, client: httpx.Client) -> None:
    response = generate(fake, client, model="gemini-9")
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith(
        "models/gemini-9 is not found for API version v1beta, or is not supported for "
        "generateContent"
    )
    embedding_model = generate(fake, client, model="text-embedding-004")
    assert embedding_model.status_code == 404


def test_it_rejects_a_request_without_contents_or_json(
    fake: FakeGemini, client: httpx.Client
) -> None:
    assert generate(fake, client, {"contents": []}).status_code == 400
    response = client.post(
        f"{fake.gemini_url}/models/{FLASH}:generateContent",
        headers={"x-goog-api-key": KEY},
        content=b"{not json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid JSON payload received.")


def test_it_calls_the_declared_function_when_asked_about_weather(
    fake: FakeGemini, client: httpx.Client
) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}],
        "tools": [WEATHER_TOOL],
    }
    candidate = generate(fake, client, body).json()["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    ]
    body["contents"] += [
        {"role": "model", "parts": candidate["content"]["parts"]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 20}}}],
        },
    ]
    text = generate(fake, client, body).json()["candidates"][0]["content"]["parts"][0]["text"]
    assert text == "Result from get_weather received."


def test_it_answers_json_mode_with_json_and_can_show_thoughts(
    fake: FakeGemini, client: httpx.Client
) -> None:
    body = {**HELLO, "generationConfig": {"responseMimeType": "application/json"}}
    text = generate(fake, client, body).json()["candidates"][0]["content"]["parts"][0]["text"]
    assert json.loads(text) == {"answer": "fake"}
    body = {**HELLO, "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    data = generate(fake, client, body).json()
    parts = data["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "thinking...", "thought": True}
    assert "thought" not in parts[1]
    usage = data["usageMetadata"]
    assert usage["thoughtsTokenCount"] == 1
    assert usage["totalTokenCount"] == 2 + usage["candidatesTokenCount"] + 1


def test_it_stops_at_max_output_tokens(fake: FakeGemini, client: httpx.Client) -> None:
    body = {**HELLO, "generationConfig": {"maxOutputTokens": 2}}
    candidate = generate(fake, client, body).json()["candidates"][0]
    assert candidate["finishReason"] == "MAX_TOKENS"
    assert candidate["content"]["parts"][0]["text"] == "This is"


def test_it_streams_sse_chunks_with_the_configured_delay(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.stream_chunks = 4
    fake.chunk_delay_seconds = 0.1
    started = time.monotonic()
    response = generate(fake, client, method="streamGenerateContent", query="?alt=sse")
    elapsed = time.monotonic() - started
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(e) for e in sse_events(response.text)]
    assert len(events) == 4
    assert elapsed >= 0.3
    assert all("finishReason" not in e["candidates"][0] for e in events[:-1])
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    text = "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events)
    assert text.startswith("This is fake reply number 1.")
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == len(text.split())
    assert len({e["responseId"] for e in events}) == 1
    assert fake.requests[-1].stream


def test_it_streams_a_json_array_without_alt(fake: FakeGemini, client: httpx.Client) -> None:
    response = generate(fake, client, method="streamGenerateContent")
    assert response.headers["content-type"].startswith("application/json")
    assert "\n,\r\n" in response.text
    chunks = json.loads(response.text)
    assert isinstance(chunks, list) and len(chunks) == 3
    assert chunks[-1]["usageMetadata"]["promptTokenCount"] == 2


def test_it_counts_tokens_and_embeds_deterministically(
    fake: FakeGemini, client: httpx.Client
) -> None:
    count = generate(fake, client, method="countTokens")
    assert count.json()["totalTokens"] == 2
    body = {"content": {"parts": [{"text": "embed me"}]}}
    first = generate(fake, client, body, model="gemini-embedding-001", method="embedContent")
    again = generate(fake, client, body, model="gemini-embedding-001", method="embedContent")
    values = first.json()["embedding"]["values"]
    assert len(values) == 768 and values == again.json()["embedding"]["values"]
    body = {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
            {"content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8},
        ]
    }
    batch = generate(fake, client, body, model="text-embedding-004", method="batchEmbedContents")
    embeddings = batch.json()["embeddings"]
    assert [len(e["values"]) for e in embeddings] == [768, 8]


# -- OpenAI-compatible endpoint ---------------------------------------------------------------


def test_it_completes_openai_chat(fake: FakeGemini, client: httpx.Client) -> None:
    data = chat(fake, client).json()
    assert data["object"] == "chat.completion" and data["model"] == FLASH
    assert data["id"] and isinstance(data["created"], int)
    [choice] = data["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert data["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": len(content.split()),
        "total_tokens": 2 + len(content.split()),
    }


def test_it_streams_openai_chat_with_usage_only_when_asked(
    fake: FakeGemini, client: httpx.Client
) -> None:
    plain = sse_events(chat(fake, client, {"stream": True}).text)
    assert plain[-1] == "[DONE]"
    chunks = [json.loads(e) for e in plain[:-1]]
    assert len(chunks) == 3
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    options = {"stream": True, "stream_options": {"include_usage": True}}
    events = sse_events(chat(fake, client, options).text)
    assert events[-1] == "[DONE]"
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    text = "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-2])
    assert usage_chunk["usage"]["completion_tokens"] == len(text.split())


def test_it_answers_openai_tools_with_tool_calls(fake: FakeGemini, client: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    data = chat(fake, client, {"messages": messages, "tools": tools}).json()
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    messages += [
        choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 20}'},
    ]
    reply = chat(fake, client, {"messages": messages, "tools": tools}).json()
    assert reply["choices"][0]["message"]["content"] == "Result from get_weather received."


def test_openai_errors_have_an_array_root(fake: FakeGemini, client: httpx.Client) -> None:
    missing = chat(fake, client, {"messages": None})
    assert missing.status_code == 400
    assert isinstance(missing.json(), list)
    assert missing.json()[0]["error"]["status"] == "INVALID_ARGUMENT"
    fake.behave(KEY, "rate_limit_minute")
    limited = chat(fake, client)
    assert limited.status_code == 429
    [wrapper] = limited.json()
    assert wrapper["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert any("RetryInfo" in d["@type"] for d in wrapper["error"]["details"])


def test_streaming_native_errors_have_an_array_root(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "server_error", status=503)
    streamed = generate(fake, client, method="streamGenerateContent", query="?alt=sse")
    assert streamed.status_code == 503
    assert streamed.json()[0]["error"]["status"] == "UNAVAILABLE"
    assert generate(fake, client).json()["error"]["status"] == "UNAVAILABLE"


def test_it_serves_openai_models_and_embeddings(fake: FakeGemini, client: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    listing = client.get(f"{fake.openai_url}/models", headers=headers).json()
    assert listing["object"] == "list"
    assert {"id": f"models/{FLASH}", "object": "model", "created": 0, "owned_by": "google"} in (
        listing["data"]
    )
    one = client.get(f"{fake.openai_url}/models/models/{FLASH}", headers=headers)
    assert one.json()["id"] == f"models/{FLASH}"
    assert client.get(f"{fake.openai_url}/models/nope", headers=headers).status_code == 404
    body = {"model": "gemini-embedding-001", "input": ["one two", "three"], "dimensions": 4}
    data = client.post(f"{fake.openai_url}/embeddings", headers=headers, json=body).json()
    assert [len(d["embedding"]) for d in data["data"]] == [4, 4]
    assert data["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    packed = client.post(
        f"{fake.openai_url}/embeddings",
        headers=headers,
        json={**body, "input": "one two", "encoding_format": "base64"},
    ).json()
    assert len(base64.b64decode(packed["data"][0]["embedding"])) == 4 * 4


# -- behaviours ---------------------------------------------------------------------------------


def _details(error: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [d for d in error.get("details", []) if d["@type"].endswith(kind)]


@pytest.mark.parametrize(
    ("behaviour", "params", "status", "check"),
    [
        (
            "rate_limit_minute",
            {},
            429,
            lambda e: (
                _details(e, "QuotaFailure")[0]["violations"][0]["quotaId"]
                == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
                and _details(e, "QuotaFailure")[0]["violations"][0]["quotaDimensions"]
                == {"location": "global", "model": FLASH}
                and _details(e, "RetryInfo")[0]["retryDelay"] == "26s"
                and _details(e, "Help")
            ),
        ),
        (
            "rate_limit_minute",
            {"retry_delay": "7s"},
            429,
            lambda e: _details(e, "RetryInfo")[0]["retryDelay"] == "7s",
        ),
        (
            "quota_day",
            {},
            429,
            lambda e: (
                _details(e, "QuotaFailure")[0]["violations"][0]["quotaId"]
                == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
                and _details(e, "RetryInfo")[0]["retryDelay"] == "65205s"
            ),
        ),
        (
            "limit_zero",
            {},
            429,
            lambda e: (
                "limit: 0" in e["message"]
                and e["message"].endswith("\nPlease retry in 59.906331105s.")
            ),
        ),
        (
            "rate_limit_bare",
            {},
            429,
            lambda e: (
                e["message"] == "Resource has been exhausted (e.g. check quota)."
                and "details" not in e
            ),
        ),
        (
            "invalid_key",
            {},
            400,
            lambda e: (
                e["status"] == "INVALID_ARGUMENT"
                and _details(e, "ErrorInfo")[0]["reason"] == "API_KEY_INVALID"
                and _details(e, "LocalizedMessage")
            ),
        ),
        (
            "permission_denied",
            {"variant": "leaked"},
            403,
            lambda e: "reported as leaked" in e["message"],
        ),
        (
            "permission_denied",
            {"variant": "service_disabled"},
            403,
            lambda e: _details(e, "ErrorInfo")[0]["reason"] == "SERVICE_DISABLED",
        ),
        (
            "permission_denied",
            {"variant": "tos"},
            403,
            lambda e: (
                "Terms of Service" in e["message"]
                and _details(e, "ErrorInfo")[0]["reason"] == "TOS_VIOLATION"
            ),
        ),
        (
            "failed_precondition",
            {},
            400,
            lambda e: e["status"] == "FAILED_PRECONDITION" and "location" in e["message"],
        ),
        ("not_found", {}, 404, lambda e: e["message"].startswith(f"models/{FLASH} is not found")),
        (
            "bad_request",
            {},
            400,
            lambda e: e["message"].startswith("Invalid JSON payload received."),
        ),
        ("server_error", {"status": 500}, 500, lambda e: e["status"] == "INTERNAL"),
        ("server_error", {"status": 503}, 503, lambda e: e["status"] == "UNAVAILABLE"),
        ("server_error", {"status": 504}, 504, lambda e: e["status"] == "DEADLINE_EXCEEDED"),
        (
            "code_assist_rate_limit",
            {},
            429,
            lambda e: (
                _details(e, "ErrorInfo")[0]["reason"] == "RATE_LIMIT_EXCEEDED"
                and _details(e, "ErrorInfo")[0]["domain"] == "cloudcode-pa.googleapis.com"
                and _details(e, "RetryInfo")
            ),
        ),
        (
            "code_assist_quota",
            {},
            429,
            lambda e: (
                _details(e, "ErrorInfo")[0]["reason"] == "QUOTA_EXHAUSTED"
                and _details(e, "ErrorInfo")[0]["metadata"]["quotaResetDelay"] == "19h14m47s"
                and e["message"].endswith("Your quota will reset after 19h14m47s.")
                and _details(e, "RetryInfo")[0]["retryDelay"] == "69287s"
            ),
        ),
    ],
)
def test_each_error_behaviour_sends_googles_body(
    fake: FakeGemini,
    client: httpx.Client,
    behaviour: str,
    params: dict[str, Any],
    status: int,
    check: Callable[[dict[str, Any]], bool],
) -> None:
    fake.behave(KEY, behaviour, **params)
    response = generate(fake, client)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status
    assert check(error), error


def test_the_suspended_403_contains_the_secret(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "permission_denied", variant="suspended")
    response = generate(fake, client)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["message"] == f"Permission denied: Consumer 'api_key:{KEY}' has been suspended."
    assert _details(error, "ErrorInfo")[0]["reason"] == "CONSUMER_SUSPENDED"


def test_a_behaviour_expires_after_times(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "server_error", times=2, status=503)
    statuses = [generate(fake, client).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert generate(fake, client, key="another-key").status_code == 200


def test_a_behaviour_can_target_one_model(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "quota_day", model=PRO)
    assert generate(fake, client, model=PRO).status_code == 429
    assert generate(fake, client, model=FLASH).status_code == 200
    fake.behave(KEY, "rate_limit_minute")
    assert generate(fake, client, model=PRO).status_code == 429
    details = generate(fake, client, model=FLASH).json()["error"]["details"]
    assert "PerMinute" in details[0]["violations"][0]["quotaId"]


def test_model_scoped_behaviours_leave_model_listing_alone(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.behave(KEY, "quota_day", times=1)
    listing = client.get(f"{fake.gemini_url}/models", headers={"x-goog-api-key": KEY})
    assert listing.status_code == 200
    assert generate(fake, client).status_code == 429
    assert generate(fake, client).status_code == 200


def test_unknown_behaviours_are_refused(fake: FakeGemini) -> None:
    with pytest.raises(ValueError):
        fake.behave(KEY, "rate_limit")
    with pytest.raises(ValueError):
        fake.behave(KEY, "permission_denied", variant="nope")


def test_reset_drops_the_connection(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "reset", times=1)
    with pytest.raises(httpx.TransportError):
        generate(fake, client)
    assert generate(fake, client).status_code == 200
    dropped = fake.requests[0]
    assert dropped.status == 0 and not dropped.cancelled


def test_cut_stream_ends_the_stream_early(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "cut_stream", after=2)
    received = []
    url = f"{fake.gemini_url}/models/{FLASH}:streamGenerateContent?alt=sse"
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", url, headers={"x-goog-api-key": KEY}, json=HELLO) as response,
    ):
        received.extend(line for line in response.iter_lines() if line)
    assert len(received) == 2
    assert all("finishReason" not in line for line in received)
    with pytest.raises(httpx.RemoteProtocolError):
        chat(fake, client)  # a non-streamed answer is cut in half


def test_it_counts_a_stream_the_client_abandons(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "ok", chunk_delay=0.3, chunks=5)
    url = f"{fake.gemini_url}/models/{FLASH}:streamGenerateContent?alt=sse"
    with client.stream("POST", url, headers={"x-goog-api-key": KEY}, json=HELLO) as response:
        first = next(line for line in response.iter_lines() if line)
    assert first.startswith("data: ")
    assert wait_until(lambda: fake.cancelled == 1)
    assert fake.requests[-1].cancelled
    assert wait_until(lambda: fake.in_flight == 0)


def test_a_timeout_ends_when_the_client_gives_up(fake: FakeGemini) -> None:
    fake.behave(KEY, "timeout", seconds=30)
    with httpx.Client(timeout=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
        generate(fake, impatient)
    assert wait_until(lambda: fake.in_flight == 0)
    assert fake.requests[-1].cancelled
    assert fake.cancelled == 0  # only abandoned streams count


def test_slow_first_byte_delays_then_answers(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "slow_first_byte", seconds=0.2)
    started = time.monotonic()
    assert generate(fake, client).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_empty_answers_have_no_content(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "empty")
    native = generate(fake, client).json()
    assert native["candidates"] == [] and native["usageMetadata"]["promptTokenCount"] == 2
    choice = chat(fake, client).json()["choices"][0]
    assert choice["message"]["content"] == "" and choice["finish_reason"] is None


def test_in_flight_is_tracked(fake: FakeGemini) -> None:
    fake.behave(KEY, "slow_first_byte", seconds=0.3)

    async def burst() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            url = f"{fake.gemini_url}/models/{FLASH}:generateContent"
            await asyncio.gather(
                *(http.post(url, headers={"x-goog-api-key": KEY}, json=HELLO) for _ in range(5))
            )

    asyncio.run(burst())
    assert fake.max_in_flight == 5 and fake.in_flight == 0


# -- OAuth and Code Assist --------------------------------------------------------------------


def test_the_token_endpoint_mints_tokens_and_counts_refreshes(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, email="ada@example.com")
    response = client.post(
        fake.oauth_token_url,
        data={
            "client_id": "cid",
            "client_secret": "secret",
            "refresh_token": REFRESH,
            "grant_type": "refresh_token",
        },
    )
    data = response.json()
    assert data["access_token"].startswith("ya29.fake-")
    assert data["expires_in"] == 3600 and data["token_type"] == "Bearer"
    payload = data["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["email"] == "ada@example.com"
    second = access_token(fake, client)
    assert fake.oauth_refresh_count(REFRESH) == 2
    assert fake.oauth_access_tokens(REFRESH) == [data["access_token"], second]
    record = fake.requests_for(REFRESH)[0]
    assert record.dialect == "oauth" and record.body["client_id"] == "cid"


def test_an_unknown_or_revoked_refresh_token_gets_invalid_grant(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.oauth_account_add(refresh_token="revoked", revoked=True)
    for refresh_token in ("unknown", "revoked"):
        response = client.post(
            fake.oauth_token_url,
            data={"refresh_token": refresh_token, "grant_type": "refresh_token"},
        )
        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked.",
        }


def test_code_assist_wraps_responses_for_a_minted_token(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, project_id="proj-1")
    token = access_token(fake, client)
    loaded = code_assist(fake, client, "loadCodeAssist", token, {"metadata": {}}).json()
    assert loaded["currentTier"]["id"] == "free-tier"
    assert loaded["cloudaicompanionProject"] == "proj-1"
    body = {"model": FLASH, "project": "proj-1", "request": HELLO}
    data = code_assist(fake, client, "generateContent", token, body).json()
    assert data["traceId"]
    assert data["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert data["response"]["usageMetadata"]["promptTokenCount"] == 2
    streamed = client.post(
        f"{fake.code_assist_url}:streamGenerateContent?alt=sse",
        headers={"Authorization": f"Bearer {token}"},
        json=body,
    )
    events = [json.loads(e) for e in sse_events(streamed.text)]
    assert len(events) == 3 and all("response" in e and "traceId" in e for e in events)
    count = code_assist(
        fake, client, "countTokens", token, {"request": {"model": f"models/{FLASH}", **HELLO}}
    )
    assert count.json() == {"totalTokens": 2}
    quota = code_assist(fake, client, "retrieveUserQuota", token, {"project": "proj-1"}).json()
    flash = next(b for b in quota["buckets"] if b["modelId"] == FLASH)
    assert flash["tokenType"] == "REQUESTS" and flash["remainingFraction"] < 1
    assert fake.requests_for(token)[-1].dialect == "code_assist"


def test_code_assist_refuses_bad_tokens_and_wrong_projects(
    fake: FakeGemini, client: httpx.Client
) -> None:
    body = {"model": FLASH, "project": "proj-1", "request": HELLO}
    bad = code_assist(fake, client, "generateContent", "ya29.not-issued", body)
    assert bad.status_code == 401
    assert bad.json()["error"]["status"] == "UNAUTHENTICATED"
    assert bad.json()["error"]["message"].startswith("Request had invalid authentication")
    fake.oauth_account_add(refresh_token=REFRESH, project_id="proj-1")
    token = access_token(fake, client)
    wrong = code_assist(fake, client, "generateContent", token, {**body, "project": "other"})
    assert wrong.status_code == 403
    assert wrong.json()["error"]["status"] == "PERMISSION_DENIED"
    missing = code_assist(
        fake, client, "generateContent", token, {"model": FLASH, "request": HELLO}
    )
    assert missing.status_code == 403


def test_an_expired_access_token_is_refused(fake: FakeGemini, client: httpx.Client) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, access_token_lifetime_seconds=0)
    token = access_token(fake, client)
    response = code_assist(fake, client, "loadCodeAssist", token, {})
    assert response.status_code == 401


def test_onboarding_completes_after_one_poll(fake: FakeGemini, client: httpx.Client) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, onboarded=False)
    token = access_token(fake, client)
    loaded = code_assist(fake, client, "loadCodeAssist", token, {}).json()
    assert "currentTier" not in loaded
    [tier] = loaded["allowedTiers"]
    assert tier["id"] == "free-tier" and tier["isDefault"]
    operation = code_assist(fake, client, "onboardUser", token, {"tierId": "free-tier"}).json()
    assert operation["done"] is False and operation["name"].startswith("operations/")
    polled = client.get(
        f"{fake.code_assist_url}/{operation['name']}",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert polled["done"] is True
    project = polled["response"]["cloudaicompanionProject"]["id"]
    after = code_assist(fake, client, "loadCodeAssist", token, {}).json()
    assert after["currentTier"]["id"] == "free-tier"
    assert after["cloudaicompanionProject"] == project
    body = {"model": FLASH, "project": project, "request": HELLO}
    assert code_assist(fake, client, "generateContent", token, body).status_code == 200


def test_free_tier_onboarding_with_a_project_fails(fake: FakeGemini, client: httpx.Client) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, onboarded=False)
    token = access_token(fake, client)
    body = {"tierId": "free-tier", "cloudaicompanionProject": "my-project"}
    response = code_assist(fake, client, "onboardUser", token, body)
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_an_ineligible_account_lists_why(fake: FakeGemini, client: httpx.Client) -> None:
    fake.oauth_account_add(
        refresh_token=REFRESH, onboarded=False, ineligible_reason="VALIDATION_REQUIRED"
    )
    token = access_token(fake, client)
    loaded = code_assist(fake, client, "loadCodeAssist", token, {}).json()
    [tier] = loaded["ineligibleTiers"]
    assert tier["reasonCode"] == "VALIDATION_REQUIRED"
    assert tier["validationUrl"].startswith("https://accounts.google.com/")
    assert "allowedTiers" not in loaded and "currentTier" not in loaded


def test_code_assist_behaviours_follow_the_refresh_token(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, project_id="proj-1")
    fake.behave(REFRESH, "code_assist_quota", model=FLASH, times=1)
    token = access_token(fake, client)
    assert code_assist(fake, client, "loadCodeAssist", token, {}).status_code == 200
    body = {"model": FLASH, "project": "proj-1", "request": HELLO}
    limited = client.post(
        f"{fake.code_assist_url}:streamGenerateContent?alt=sse",
        headers={"Authorization": f"Bearer {token}"},
        json=body,
    )
    assert limited.status_code == 429
    # Google answers a streaming call's error as a one-element array.
    assert limited.json()[0]["error"]["details"][0]["reason"] == "QUOTA_EXHAUSTED"
    assert code_assist(fake, client, "generateContent", token, body).status_code == 200


# -- the command line, as the benchmark runs it ------------------------------------------------


def test_the_command_line_server_can_be_steered_over_http(client: httpx.Client) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_gemini", "--port", "0", "--stream-chunks", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("fake gemini listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        steer = {"secret": "cli-key", "behaviour": "quota_day", "times": 1}
        assert client.post(f"{url}/_fake/behave", json=steer).status_code == 200
        target = f"{url}/v1beta/models/{FLASH}:streamGenerateContent?alt=sse"
        headers = {"x-goog-api-key": "cli-key"}
        assert client.post(target, headers=headers, json=HELLO).status_code == 429
        streamed = client.post(target, headers=headers, json=HELLO)
        assert len(sse_events(streamed.text)) == 2
        summary = client.get(f"{url}/_fake/requests").json()
        assert summary["request_count"] == 2
        assert [r["status"] for r in summary["requests"]] == [429, 200]
        assert client.post(f"{url}/_fake/reset").status_code == 200
        assert client.get(f"{url}/_fake/requests").json()["requests"] == []
    finally:
        process.terminate()
        process.wait(timeout=5)


# -- as strict as Google: schemas ----------------------------------------------------------------

G3 = "gemini-3-flash-preview"
G3_PRO = "gemini-3.1-pro-preview"
WEATHER_PROMPT = {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}


def with_parameters(parameters: dict[str, Any], *, field: str = "parameters") -> dict[str, Any]:
    declaration = {"name": "get_weather", field: parameters}
    return {"contents": [WEATHER_PROMPT], "tools": [{"functionDeclarations": [declaration]}]}


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    return str(error["message"])


DECLARATION = "GenerateContentRequest.tools[0].function_declarations[0].parameters"


def test_an_array_without_items_is_refused(fake: FakeGemini, client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"tags": {"type": "array"}}}
    message = refusal(generate(fake, client, with_parameters(schema)))
    assert message == f"* {DECLARATION}.properties[tags].items: missing field.\n"


def test_properties_on_a_non_object_or_untyped_node_are_refused(
    fake: FakeGemini, client: httpx.Client
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "properties": {"x": {"type": "string"}}},
            "options": {"properties": {"deep": {"type": "boolean"}}},
        },
    }
    message = refusal(generate(fake, client, with_parameters(schema)))
    assert f"* {DECLARATION}.properties[path].properties: only allowed for OBJECT type\n" in message
    assert f"* {DECLARATION}.properties[options].properties: only allowed for OBJECT type\n" in (
        message
    )


def test_empty_nested_properties_are_refused(fake: FakeGemini, client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"opts": {"type": "object", "properties": {}}}}
    message = refusal(generate(fake, client, with_parameters(schema)))
    assert message == (
        f"* {DECLARATION}.properties[opts].properties: should be non-empty for OBJECT type\n"
    )
    # An empty top-level object is how a function without arguments is declared.
    empty = {"type": "object", "properties": {}}
    assert generate(fake, client, with_parameters(empty)).status_code == 200


def test_untyped_nodes_are_refused_unless_they_use_any_of(
    fake: FakeGemini, client: httpx.Client
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "value": {"description": "anything"},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
    }
    message = refusal(generate(fake, client, with_parameters(schema)))
    assert message == (
        f"* {DECLARATION}.properties[value].type: must be specified when not using one_of, "
        "any_of or all_of fields\n"
    )


def test_unknown_schema_keywords_fail_proto_parsing_one_line_each(
    fake: FakeGemini, client: httpx.Client
) -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {"n": {"type": "integer", "exclusiveMinimum": 0, "const": 3}},
    }
    response = generate(fake, client, with_parameters(schema))
    lines = refusal(response).split("\n")
    at = "tools[0].function_declarations[0].parameters"
    assert lines == [
        f"Invalid JSON payload received. Unknown name \"$schema\" at '{at}': Cannot find field.",
        'Invalid JSON payload received. Unknown name "additionalProperties" at '
        f"'{at}': Cannot find field.",
        'Invalid JSON payload received. Unknown name "exclusiveMinimum" at '
        f"'{at}.properties[0].value': Cannot find field.",
        f"Invalid JSON payload received. Unknown name \"const\" at '{at}.properties[0].value': "
        "Cannot find field.",
    ]
    [bad_request] = _details(response.json()["error"], "BadRequest")
    assert [v["field"] for v in bad_request["fieldViolations"]] == [
        at,
        at,
        f"{at}.properties[0].value",
        f"{at}.properties[0].value",
    ]


def test_a_type_list_is_refused(fake: FakeGemini, client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"s": {"type": ["string", "null"]}}}
    message = refusal(generate(fake, client, with_parameters(schema)))
    assert message == (
        'Invalid JSON payload received. Unknown name "type" at '
        "'tools[0].function_declarations[0].parameters.properties[0].value': "
        "Proto field is not repeating, cannot start list."
    )


def test_required_must_name_a_defined_property(fake: FakeGemini, client: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b"]}
    message = refusal(generate(fake, client, with_parameters(schema)))
    assert message == f"* {DECLARATION}.required[1]: property is not defined\n"


def test_the_response_schema_follows_the_same_rules(fake: FakeGemini, client: httpx.Client) -> None:
    config = {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "object", "properties": {"list": {"type": "array"}}},
    }
    message = refusal(generate(fake, client, {**HELLO, "generationConfig": config}))
    assert message == (
        "* GenerateContentRequest.generation_config.response_schema.properties[list].items: "
        "missing field.\n"
    )


def test_code_assist_names_schema_fields_under_request(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, project_id="proj-1")
    token = access_token(fake, client)
    bad = {"type": "object", "properties": {"tags": {"type": "array"}}}
    body = {"model": FLASH, "project": "proj-1", "request": with_parameters(bad)}
    message = refusal(code_assist(fake, client, "generateContent", token, body))
    assert message == (
        "* request.tools[0].function_declarations[0].parameters.properties[tags].items: "
        "missing field.\n"
    )
    unknown = {"type": "object", "$schema": "x"}
    body = {"model": FLASH, "project": "proj-1", "request": with_parameters(unknown)}
    message = refusal(code_assist(fake, client, "generateContent", token, body))
    assert "at 'request.tools[0].function_declarations[0].parameters'" in message


MCP_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "path": {"type": "string", "format": "uri"},
        "tags": {"type": "array"},
        "node": {"$ref": "#/$defs/node"},
        "mode": {"anyOf": [{"const": "a"}, {"type": ["string", "null"]}]},
    },
    "required": ["path"],
    "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}},
}


def test_json_schema_fields_accept_what_the_classic_ones_refuse(
    fake: FakeGemini, client: httpx.Client
) -> None:
    body = with_parameters(MCP_SCHEMA, field="parametersJsonSchema")
    candidate = generate(fake, client, body).json()["candidates"][0]
    assert candidate["content"]["parts"][0]["functionCall"]["name"] == "get_weather"
    config = {"responseMimeType": "application/json", "responseJsonSchema": MCP_SCHEMA}
    assert generate(fake, client, {**HELLO, "generationConfig": config}).status_code == 200
    assert refusal(generate(fake, client, with_parameters(MCP_SCHEMA)))


def test_json_schema_fields_have_their_own_refusals(fake: FakeGemini, client: httpx.Client) -> None:
    both = with_parameters({"type": "object"})
    both["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] = {"type": "object"}
    assert "cannot both be set" in refusal(generate(fake, client, both))
    dangling = {"type": "object", "properties": {"p": {"anyOf": [{}, {"$ref": "#/$defs/gone"}]}}}
    message = refusal(
        generate(fake, client, with_parameters(dangling, field="parametersJsonSchema"))
    )
    assert "reference to undefined schema at properties.p.anyOf.1" in message
    no_mime = {**HELLO, "generationConfig": {"responseJsonSchema": {"type": "object"}}}
    assert "response_mime_type" in refusal(generate(fake, client, no_mime))


# -- as strict as Google: thought signatures (Gemini 3) ------------------------------------------


def signed_by(signature: str) -> str:
    raw = base64.b64decode(signature)
    assert raw.startswith(b"fake-thought-signature/")
    return raw.split(b"/")[1].decode()


def weather_call(fake: FakeGemini, client: httpx.Client, **kwargs: Any) -> dict[str, Any]:
    body = {"contents": [WEATHER_PROMPT], "tools": [WEATHER_TOOL]}
    response = generate(fake, client, body, model=G3, **kwargs)
    assert response.status_code == 200, response.text
    return dict(response.json()["candidates"][0]["content"])


def after_call(model_content: dict[str, Any], responses: int = 1) -> dict[str, Any]:
    answer = {"functionResponse": {"name": "get_weather", "response": {"temp": 20}}}
    return {
        "contents": [
            WEATHER_PROMPT,
            model_content,
            {"role": "user", "parts": [answer] * responses},
        ],
        "tools": [WEATHER_TOOL],
    }


def test_gemini_3_signs_the_function_call_and_the_text(
    fake: FakeGemini, client: httpx.Client
) -> None:
    content = weather_call(fake, client)
    [part] = content["parts"]
    assert part["functionCall"]["name"] == "get_weather"
    assert signed_by(part["thoughtSignature"]) == "gemini-api"
    text = generate(fake, client, model=G3).json()["candidates"][0]["content"]["parts"]
    assert signed_by(text[-1]["thoughtSignature"]) == "gemini-api"
    # 2.5 answers here carry no signature.
    assert (
        "thoughtSignature"
        not in generate(fake, client).json()["candidates"][0]["content"]["parts"][0]
    )


def test_gemini_3_signs_the_first_call_of_a_stream(fake: FakeGemini, client: httpx.Client) -> None:
    body = {"contents": [WEATHER_PROMPT], "tools": [WEATHER_TOOL]}
    response = generate(
        fake, client, body, model=G3, method="streamGenerateContent", query="?alt=sse"
    )
    [event] = [json.loads(e) for e in sse_events(response.text)]
    assert "thoughtSignature" in event["candidates"][0]["content"]["parts"][0]
    text = generate(fake, client, model=G3, method="streamGenerateContent", query="?alt=sse")
    events = [json.loads(e) for e in sse_events(text.text)]
    assert [("thoughtSignature" in e["candidates"][0]["content"]["parts"][-1]) for e in events] == [
        False,
        False,
        True,
    ]


def test_a_replayed_signed_call_is_accepted(fake: FakeGemini, client: httpx.Client) -> None:
    response = generate(fake, client, after_call(weather_call(fake, client)), model=G3)
    assert response.status_code == 200, response.text
    assert response.json()["candidates"][0]["content"]["parts"][0]["text"] == (
        "Result from get_weather received."
    )


def test_a_current_turn_call_without_its_signature_is_refused(
    fake: FakeGemini, client: httpx.Client
) -> None:
    content = weather_call(fake, client)
    del content["parts"][0]["thoughtSignature"]
    message = refusal(generate(fake, client, after_call(content), model=G3))
    assert message == (
        "Function call is missing a thought_signature in functionCall parts. This is required "
        "for tools to work correctly, and missing thought_signature may lead to degraded model "
        "performance. Additional data, function call `default_api:get_weather`, position 2. "
        "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more "
        "details."
    )
    # 2.5 does not check.
    assert generate(fake, client, after_call(content)).status_code == 200


def test_the_skip_value_switches_the_check_off(fake: FakeGemini, client: httpx.Client) -> None:
    content = weather_call(fake, client)
    content["parts"][0]["thoughtSignature"] = "skip_thought_signature_validator"
    assert generate(fake, client, after_call(content), model=G3).status_code == 200


def test_earlier_turns_are_not_checked(fake: FakeGemini, client: httpx.Client) -> None:
    content = weather_call(fake, client)
    del content["parts"][0]["thoughtSignature"]
    body = after_call(content)
    body["contents"] += [
        {"role": "model", "parts": [{"text": "It is 20 degrees."}]},
        {"role": "user", "parts": [{"text": "thanks"}]},
    ]
    assert generate(fake, client, body, model=G3).status_code == 200


def test_a_signature_must_be_base64(fake: FakeGemini, client: httpx.Client) -> None:
    content = weather_call(fake, client)
    content["parts"][0]["thoughtSignature"] = "not base64!"
    message = refusal(generate(fake, client, after_call(content), model=G3))
    assert message == (
        "Invalid value at 'contents[1].parts[0].thought_signature' (TYPE_BYTES), "
        'Base64 decoding failed for "not base64!"'
    )


def test_a_signature_inside_function_call_is_an_unknown_field(
    fake: FakeGemini, client: httpx.Client
) -> None:
    content = weather_call(fake, client)
    part = content["parts"][0]
    part["functionCall"]["thoughtSignature"] = part.pop("thoughtSignature")
    message = refusal(generate(fake, client, after_call(content), model=G3))
    assert message == (
        'Invalid JSON payload received. Unknown name "thoughtSignature" at '
        "'contents[1].parts[0].function_call': Cannot find field."
    )


def test_signatures_do_not_cross_backends(fake: FakeGemini, client: httpx.Client) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, project_id="proj-1")
    token = access_token(fake, client)
    body = {"contents": [WEATHER_PROMPT], "tools": [WEATHER_TOOL]}
    envelope = {"model": G3, "project": "proj-1", "request": body}
    oauth = code_assist(fake, client, "generateContent", token, envelope).json()
    oauth_content = oauth["response"]["candidates"][0]["content"]
    assert signed_by(oauth_content["parts"][0]["thoughtSignature"]) == "code-assist"
    api_content = weather_call(fake, client)
    assert (
        api_content["parts"][0]["thoughtSignature"] != oauth_content["parts"][0]["thoughtSignature"]
    )

    to_api = generate(fake, client, after_call(oauth_content), model=G3)
    assert refusal(to_api) == "Invalid thought signature"
    envelope["request"] = after_call(api_content)
    to_oauth = code_assist(fake, client, "generateContent", token, envelope)
    assert refusal(to_oauth) == "Invalid thought signature"
    envelope["request"] = after_call(oauth_content)
    assert code_assist(fake, client, "generateContent", token, envelope).status_code == 200
    api_content["parts"][0]["thoughtSignature"] = "U0lHTg=="
    assert refusal(generate(fake, client, after_call(api_content), model=G3)) == (
        "Corrupted thought signature"
    )


def test_the_openai_endpoint_carries_signatures_in_extra_content(
    fake: FakeGemini, client: httpx.Client
) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    body = {"model": G3, "messages": messages, "tools": tools}
    message = chat(fake, client, body).json()["choices"][0]["message"]
    [call] = message["tool_calls"]
    assert signed_by(call["extra_content"]["google"]["thought_signature"]) == "gemini-api"
    messages += [message, {"role": "tool", "tool_call_id": call["id"], "content": "20"}]
    assert chat(fake, client, body).status_code == 200
    del call["extra_content"]
    missing = chat(fake, client, body)
    assert missing.status_code == 400
    assert missing.json()[0]["error"]["message"].startswith(
        "Function call is missing a thought_signature in functionCall parts."
    )


# -- as strict as Google: behaviours on demand ---------------------------------------------------


def test_parallel_calls_sign_only_the_first(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "parallel_calls", count=3)
    tools = [
        {
            "functionDeclarations": [
                {"name": "get_weather", "parameters": {"type": "object"}},
                {"name": "get_time", "parameters": {"type": "object"}},
            ]
        }
    ]
    body = {"contents": [WEATHER_PROMPT], "tools": tools}
    parts = generate(fake, client, body, model=G3).json()["candidates"][0]["content"]["parts"]
    assert [p["functionCall"]["name"] for p in parts] == ["get_weather", "get_time", "get_weather"]
    assert ["thoughtSignature" in p for p in parts] == [True, False, False]
    one_answer = after_call({"role": "model", "parts": parts})
    one_answer["tools"] = tools
    assert refusal(generate(fake, client, one_answer, model=G3)) == (
        "Please ensure that the number of function response parts is equal to the number of "
        "function call parts of the function call turn."
    )
    all_answered = after_call({"role": "model", "parts": parts}, responses=3)
    all_answered["tools"] = tools
    assert generate(fake, client, all_answered, model=G3).status_code == 200

    openai_tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    data = chat(fake, client, {"messages": messages, "tools": openai_tools, "stream": True})
    calls = json.loads(sse_events(data.text)[0])["choices"][0]["delta"]["tool_calls"]
    assert [c["index"] for c in calls] == [0, 1, 2]


def test_malformed_function_call_on_demand(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "malformed_function_call", times=1)
    body = {"contents": [WEATHER_PROMPT], "tools": [WEATHER_TOOL]}
    [candidate] = generate(fake, client, body, model=G3).json()["candidates"]
    assert candidate["finishReason"] == "MALFORMED_FUNCTION_CALL"
    assert "content" not in candidate and candidate["finishMessage"]
    assert generate(fake, client, body, model=G3).json()["candidates"][0]["finishReason"] == "STOP"


def test_an_error_inside_a_200_sse_stream_on_demand(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "stream_error", after=2, status=503)
    response = generate(fake, client, method="streamGenerateContent", query="?alt=sse")
    assert response.status_code == 200
    events = [json.loads(e) for e in sse_events(response.text)]
    assert [("candidates" in e) for e in events] == [True, True, False]
    assert all("finishReason" not in e["candidates"][0] for e in events[:2])
    assert events[-1] == {
        "error": {
            "code": 503,
            "message": "This model is currently experiencing high demand. Spikes in demand are "
            "usually temporary. Please try again later.",
            "status": "UNAVAILABLE",
        }
    }
    # Not streamed, the same behaviour is an ordinary HTTP error.
    assert generate(fake, client).status_code == 503


def test_an_error_inside_a_json_array_stream_and_as_a_raw_tail(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.behave(KEY, "stream_error", status=429)
    chunks = json.loads(generate(fake, client, method="streamGenerateContent").text)
    assert len(chunks) == 2 and chunks[0]["candidates"]
    assert chunks[1]["error"]["status"] == "RESOURCE_EXHAUSTED"
    fake.behave(KEY, "stream_error", raw=True)
    text = generate(fake, client, method="streamGenerateContent", query="?alt=sse").text
    head, tail = text.rsplit("\n\n", 1)
    assert head.startswith("data: ") and json.loads(tail)["error"]["code"] == 503


def test_code_assist_and_openai_streams_can_fail_in_band(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, project_id="proj-1")
    token = access_token(fake, client)
    fake.behave(REFRESH, "stream_error")
    streamed = client.post(
        f"{fake.code_assist_url}:streamGenerateContent?alt=sse",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": FLASH, "project": "proj-1", "request": HELLO},
    )
    events = [json.loads(e) for e in sse_events(streamed.text)]
    assert "response" in events[0] and events[-1]["error"]["code"] == 503
    fake.behave(KEY, "stream_error")
    openai = sse_events(chat(fake, client, {"stream": True}).text)
    assert "[DONE]" not in openai
    assert json.loads(openai[-1])["error"]["status"] == "UNAVAILABLE"


def test_a_stream_can_end_without_a_finish_reason(fake: FakeGemini, client: httpx.Client) -> None:
    fake.behave(KEY, "no_finish")
    events = sse_events(
        generate(fake, client, method="streamGenerateContent", query="?alt=sse").text
    )
    assert len(events) == 3
    assert all("finishReason" not in json.loads(e)["candidates"][0] for e in events)
    chunks = [json.loads(e) for e in sse_events(chat(fake, client, {"stream": True}).text)[:-1]]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


# -- as strict as Google: options per model family -------------------------------------------------


def test_penalties_are_refused_on_2_5_and_later(fake: FakeGemini, client: httpx.Client) -> None:
    config = {"generationConfig": {"presencePenalty": 0.5}}
    assert refusal(generate(fake, client, {**HELLO, **config})) == (
        "Penalty is not enabled for models/gemini-2.5-flash"
    )
    config = {"generationConfig": {"frequencyPenalty": -0.5}}
    assert refusal(generate(fake, client, {**HELLO, **config}, model=G3)) == (
        "Penalty is not enabled for this model"
    )
    zero = {"generationConfig": {"presencePenalty": 0.0, "frequencyPenalty": 0}}
    assert generate(fake, client, {**HELLO, **zero}).status_code == 200
    openai = chat(fake, client, {"presence_penalty": 1})
    assert openai.status_code == 400
    assert (
        openai.json()[0]["error"]["message"] == "Penalty is not enabled for models/gemini-2.5-flash"
    )


def test_json_mode_with_functions_is_refused_on_2_x(fake: FakeGemini, client: httpx.Client) -> None:
    body = {
        "contents": [WEATHER_PROMPT],
        "tools": [WEATHER_TOOL],
        "generationConfig": {"responseMimeType": "application/json"},
    }
    assert refusal(generate(fake, client, body)) == (
        "Function calling with a response mime type: 'application/json' is unsupported"
    )
    assert generate(fake, client, body, model=G3).status_code == 200
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    openai = chat(fake, client, {"tools": tools, "response_format": {"type": "json_object"}})
    assert openai.status_code == 400


def test_built_in_tools_with_functions_are_refused(fake: FakeGemini, client: httpx.Client) -> None:
    body = {"contents": [WEATHER_PROMPT], "tools": [WEATHER_TOOL, {"googleSearch": {}}]}
    assert refusal(generate(fake, client, body)) == "Tool use with function calling is unsupported"
    assert "include_server_side_tool_invocations" in refusal(generate(fake, client, body, model=G3))
    body["toolConfig"] = {"includeServerSideToolInvocations": True}
    assert generate(fake, client, body, model=G3).status_code == 200


def test_thinking_options_follow_the_model_family(fake: FakeGemini, client: httpx.Client) -> None:
    def think(config: dict[str, Any], model: str) -> httpx.Response:
        return generate(
            fake, client, {**HELLO, "generationConfig": {"thinkingConfig": config}}, model=model
        )

    assert think({"thinkingLevel": "LOW"}, FLASH).status_code == 400
    assert think({"thinkingLevel": "low"}, G3).status_code == 200
    assert think({"thinkingLevel": "HIGH", "thinkingBudget": 1024}, G3).status_code == 400
    assert think({"thinkingLevel": "MINIMAL"}, G3_PRO).status_code == 400
    assert think({"thinkingBudget": 1024}, FLASH).status_code == 200
    assert refusal(think({"thinkingBudget": 0}, PRO)) == (
        "Budget 0 is invalid. This model only works in thinking mode."
    )
    assert "Invalid value at 'generation_config.thinking_config.thinking_level'" in refusal(
        think({"thinkingLevel": "EXTREME"}, G3)
    )


def test_thoughts_come_as_thought_parts_with_their_token_count_in_streams(
    fake: FakeGemini, client: httpx.Client
) -> None:
    body = {**HELLO, "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    response = generate(
        fake, client, body, model=G3, method="streamGenerateContent", query="?alt=sse"
    )
    events = [json.loads(e) for e in sse_events(response.text)]
    assert events[0]["candidates"][0]["content"]["parts"][0] == {
        "text": "thinking...",
        "thought": True,
    }
    assert events[-1]["usageMetadata"]["thoughtsTokenCount"] == 1


def test_function_turns_must_be_in_order(fake: FakeGemini, client: httpx.Client) -> None:
    call = {"functionCall": {"name": "get_weather", "args": {}}}
    answer = {"functionResponse": {"name": "get_weather", "response": {}}}
    two_models = {
        "contents": [
            WEATHER_PROMPT,
            {"role": "model", "parts": [{"text": "Let me check."}]},
            {"role": "model", "parts": [call]},
            {"role": "user", "parts": [answer]},
        ]
    }
    assert refusal(generate(fake, client, two_models)) == (
        "Please ensure that function call turn comes immediately after a user turn or after a "
        "function response turn."
    )
    orphan = {"contents": [WEATHER_PROMPT, {"role": "user", "parts": [answer]}]}
    assert refusal(generate(fake, client, orphan)) == (
        "Please ensure that function response turn comes immediately after a function call turn."
    )


def test_a_tool_loop_calls_again_until_its_steps_are_done(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.behave(KEY, "tool_loop", steps=3)
    body: dict[str, Any] = {"contents": [WEATHER_PROMPT], "tools": [WEATHER_TOOL]}
    answer = {"functionResponse": {"name": "get_weather", "response": {"temp": 20}}}
    for step in range(3):
        content = generate(fake, client, body, model=G3).json()["candidates"][0]["content"]
        [part] = content["parts"]
        assert part["functionCall"]["name"] == "get_weather"
        assert "thoughtSignature" in part, f"step {step} is signed"
        body["contents"] += [content, {"role": "user", "parts": [answer]}]
    final = generate(fake, client, body, model=G3).json()["candidates"][0]["content"]
    assert final["parts"][0]["text"] == "Result from get_weather received."
    # Each step is checked: dropping the second step's signature is refused.
    del body["contents"][3]["parts"][0]["thoughtSignature"]
    assert "position 4" in refusal(generate(fake, client, body, model=G3))

    fake.behave(KEY, "tool_loop", steps=2)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    for _ in range(2):
        message = chat(fake, client, {"model": G3, "messages": messages, "tools": tools}).json()[
            "choices"
        ][0]["message"]
        [call] = message["tool_calls"]
        messages += [message, {"role": "tool", "tool_call_id": call["id"], "content": "20"}]
    last = chat(fake, client, {"model": G3, "messages": messages, "tools": tools}).json()
    assert last["choices"][0]["message"]["content"] == "Result from get_weather received."


def test_quota_day_states_the_limit_it_was_given_as_a_decimal_string(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.behave(KEY, "quota_day", times=1, limit="40")
    violation = _details(generate(fake, client).json()["error"], "QuotaFailure")[0]["violations"][0]
    assert violation["quotaValue"] == "40"
    assert violation["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


def test_retrieve_user_quota_counts_down_per_model_and_needs_the_accounts_project(
    fake: FakeGemini, client: httpx.Client
) -> None:
    fake.oauth_account_add(refresh_token=REFRESH, project_id="proj-1")
    token = access_token(fake, client)
    body = {"model": PRO, "project": "proj-1", "request": HELLO}
    assert code_assist(fake, client, "generateContent", token, body).status_code == 200
    quota = code_assist(fake, client, "retrieveUserQuota", token, {"project": "proj-1"}).json()
    pro = next(b for b in quota["buckets"] if b["modelId"] == PRO)
    assert (pro["remainingAmount"], pro["remainingFraction"]) == ("99", 0.99)
    assert pro["resetTime"].endswith("Z")
    for project in ("proj-2", None):
        refused = code_assist(fake, client, "retrieveUserQuota", token, {"project": project})
        assert refused.status_code == 403
