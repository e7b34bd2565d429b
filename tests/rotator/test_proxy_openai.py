"""The OpenAI-compatible surface, driven by the official openai SDK and raw HTTP."""

import asyncio
import json
import re
import time

import httpx
import openai
import pytest

from stats.models import UsageCounter
from stats.usage import usage_flush
from tests.support.clients import chat_stream_left_after_first_event


@pytest.fixture
def sdk(live, alice) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live}/v1", api_key=alice.key, max_retries=0)


def test_a_chat_completion_comes_back_from_the_pool(sdk, alice, fake_gemini):
    completion = sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hello there friend"}]
    )
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.prompt_tokens == 3
    [upstream] = fake_gemini.requests
    assert upstream.dialect == "openai"
    assert upstream.secret in alice.upstream_keys
    # The body reached Google's OpenAI endpoint untouched, model name included.
    assert upstream.body["messages"] == [{"role": "user", "content": "hello there friend"}]


def test_a_model_name_with_the_models_prefix_is_accepted(sdk, fake_gemini):
    sdk.chat.completions.create(
        model="models/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    assert fake_gemini.requests[0].model == "gemini-2.5-flash"


def test_a_streamed_chat_arrives_in_chunks_without_the_hidden_usage_chunk(sdk, fake_gemini):
    stream = sdk.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "tell me a story"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.choices for c in chunks), "the usage chunk the client did not ask for leaked"
    # Rotator asked upstream for usage anyway, so the counters get tokens.
    assert fake_gemini.requests[0].body["stream_options"] == {"include_usage": True}
    usage_flush()
    counted = UsageCounter.objects.get()
    assert counted.total_tokens > 0 and counted.successes == 1


def test_a_streamed_chat_includes_usage_when_the_client_asks(sdk):
    chunks = list(
        sdk.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": "one two three four"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 4


async def test_the_async_sdk_streams_too(live, alice):
    client = openai.AsyncOpenAI(base_url=f"{live}/v1", api_key=alice.key, max_retries=0)
    stream = await client.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [chunk async for chunk in stream]
    assert any(c.choices and c.choices[0].delta.content for c in pieces)
    completion = await client.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].finish_reason == "stop"
    await client.close()


def test_embeddings_come_back_with_vectors(sdk, fake_gemini):
    result = sdk.embeddings.create(model="gemini-embedding-001", input=["a cat", "a dog"])
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0
    assert fake_gemini.requests[0].path.endswith("/openai/embeddings")


def test_the_models_list_shows_what_the_pool_serves(sdk):
    ids = {model.id for model in sdk.models.list()}
    assert "gemini-2.5-flash" in ids
    assert sdk.models.retrieve("gemini-2.5-flash").id == "gemini-2.5-flash"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no-such-model")


def test_the_models_list_respects_the_keys_allowed_models(live, db):
    from tests.conftest import persona_create

    dora = persona_create("dora", credentials=1, allowed_models=["gemini-2.5-pro"])
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=dora.key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["gemini-2.5-pro"]
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
        )


def test_routes_also_answer_without_the_v1_prefix(http, alice):
    response = http.post(
        "/chat/completions",
        headers={"authorization": f"Bearer {alice.key}"},
        json={"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert http.get("/models", headers={"authorization": f"Bearer {alice.key}"}).status_code == 200


@pytest.mark.parametrize(
    "headers, params",
    [
        ("authorization", None),
        ("x-goog-api-key", None),
        (None, "key"),
    ],
)
def test_our_key_is_accepted_in_each_of_the_three_places(http, alice, headers, params):
    request_headers = {}
    query = {}
    if headers == "authorization":
        request_headers["authorization"] = f"Bearer {alice.key}"
    elif headers:
        request_headers[headers] = alice.key
    if params:
        query[params] = alice.key
    response = http.get("/v1/models", headers=request_headers, params=query)
    assert response.status_code == 200


# ------------------------------------------------------------------------------ errors


def _error(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def _chat(http, key, body, **kwargs):
    return http.post(
        "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, **body, **kwargs
    )


def test_a_missing_key_is_a_401_in_openai_style(http):
    response = http.post("/v1/chat/completions", json={"model": "x", "messages": []})
    assert response.status_code == 401
    assert "Missing API key" in _error(response)["message"]


def test_a_wrong_key_is_a_401_that_echoes_nothing(http, alice):
    response = _chat(http, "rk-wrong-key-123456", {"json": {"model": "m", "messages": [1]}})
    assert response.status_code == 401
    assert "rk-wrong" not in response.text
    assert alice.key not in response.text


def test_malformed_json_is_a_400(http, alice):
    response = _chat(http, alice.key, {"content": b"{not json"})
    assert response.status_code == 400
    assert "not valid JSON" in _error(response)["message"]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "gemini-2.5-flash"}, "messages"),
        ({"model": "gemini-2.5-flash", "messages": []}, "messages"),
        ({"model": "../../etc", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ],
)
def test_a_missing_or_bad_field_is_a_400_naming_it(http, alice, body, param, fake_gemini):
    response = _chat(http, alice.key, {"json": body})
    assert response.status_code == 400
    assert _error(response)["param"] == param
    assert fake_gemini.requests == []


def test_a_body_over_the_limit_is_a_413(http, alice, settings):
    settings.MAX_REQUEST_BYTES = 2048
    big = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x" * 5000}]}
    response = _chat(http, alice.key, {"json": big})
    assert response.status_code == 413
    _error(response)


def test_an_unknown_route_is_a_json_404(http, alice):
    response = http.get("/v1/nothing/here", headers={"authorization": f"Bearer {alice.key}"})
    assert response.status_code == 404
    _error(response)


def test_a_wrong_method_is_a_405(http, alice):
    response = http.get("/v1/chat/completions", headers={"authorization": f"Bearer {alice.key}"})
    assert response.status_code == 405
    _error(response)


def test_upstreams_own_client_error_passes_through_unwrapped(http, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "bad_request")
    response = _chat(
        http,
        alice.key,
        {"json": {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}]}},
    )
    assert response.status_code == 400
    error = _error(response)  # an object, not Google's array root
    assert "Invalid JSON payload" in error["message"]
    assert len(fake_gemini.requests) == 1, "a client error must not be retried elsewhere"


def test_the_openai_sdk_reads_an_upstream_error_as_an_api_error(sdk, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "bad_request")
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}]
        )
    assert "Invalid JSON payload" in raised.value.message


def test_an_unreachable_upstream_is_a_502_saying_so(http, alice, fake_gemini, settings):
    settings.MAX_ATTEMPTS = 2
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "reset")
    response = _chat(
        http,
        alice.key,
        {"json": {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "x"}]}},
    )
    assert response.status_code == 502
    assert "Upstream failed on 2 attempt(s)" in _error(response)["message"]


def test_a_cors_preflight_is_answered_without_a_key(http):
    response = http.options(
        "/v1/chat/completions",
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "authorization" in response.headers["access-control-allow-headers"]


def test_every_answer_carries_a_request_id_and_rotators_overhead(http, alice):
    auth = {"authorization": f"Bearer {alice.key}"}
    first, second = (http.get("/v1/models", headers=auth) for _ in range(2))
    # A new id per request: 32 random hex digits.
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)
    assert ids[0] != ids[1]
    assert float(first.headers["x-rotator-overhead-ms"]) >= 0
    # A well-formed id the client sends is kept, so its logs and ours can be joined.
    given = http.get("/v1/models", headers={**auth, "x-request-id": "trace-42.a_b"})
    assert given.headers["x-request-id"] == "trace-42.a_b"


# --------------------------------------------------------------------------- streaming


def test_stream_chunks_reach_the_client_before_upstream_has_finished(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "ok", chunks=4, chunk_delay=0.4)
    body = {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": "slowly"}],
        "stream": True,
    }
    arrivals = []
    started = time.monotonic()
    with (
        httpx.Client(base_url=live, timeout=30) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {alice.key}"},
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic() - started)
    # Upstream needs about 1.2 s for four chunks; the first must not wait for the last.
    assert arrivals[0] < 0.6
    assert arrivals[-1] - arrivals[0] > 0.8


def test_a_client_disconnect_cancels_the_upstream_stream(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "ok", chunks=20, chunk_delay=0.3)
    chat_stream_left_after_first_event(live, alice.key)
    deadline = time.monotonic() + 20  # a bound under load, not a wait
    while fake_gemini.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_gemini.cancelled == 1
    # Usage seen so far is still recorded, as a request that did not complete.
    deadline = time.monotonic() + 20  # a bound under load, not a wait
    while time.monotonic() < deadline:
        usage_flush()
        if UsageCounter.objects.exists():
            break
        time.sleep(0.05)
    counted = UsageCounter.objects.get()
    assert counted.requests == 1 and counted.failures == 1


def test_a_stream_cut_upstream_ends_cleanly_with_an_error_event(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "cut_stream", after=2)
    body = {
        "model": "gemini-2.5-flash",
        "messages": [{"role": "user", "content": "go on"}],
        "stream": True,
    }
    events = []
    with (
        httpx.Client(base_url=live, timeout=30) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {alice.key}"},
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(line[5:].strip())
    assert json.loads(events[-1])["error"]["message"].startswith("The upstream stream")
    usage_flush()
    assert UsageCounter.objects.get().failures == 1


def test_concurrent_streams_do_not_block_each_other(live, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "ok", chunks=3, chunk_delay=0.3)

    async def one(client: httpx.AsyncClient) -> int:
        body = {
            "model": "gemini-2.5-flash",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        }
        count = 0
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {alice.key}"},
        ) as response:
            async for line in response.aiter_lines():
                count += line.startswith("data:")
        return count

    async def many() -> list[int]:
        async with httpx.AsyncClient(base_url=live, timeout=30) as client:
            return await asyncio.gather(*(one(client) for _ in range(20)))

    started = time.monotonic()
    counts = asyncio.run(many())
    assert all(count >= 3 for count in counts)
    assert time.monotonic() - started < 3, "twenty 0.9 s streams should overlap"


def test_a_passthrough_stream_says_done_only_after_the_relay_counted_it():
    """Google's [DONE] is held until the relay's finish(), which comes after the attempt is
    counted: before, a client that read [DONE] and asked for its usage at once could find
    none (a loaded run failed on it), and a worker killed then lost the count."""
    from rotator.adapters.openai_compat import SSE_DONE, OpenAiPassthroughEncoder

    encoder = OpenAiPassthroughEncoder(client_wants_usage=False)
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}}]}
    assert encoder.feed((b'{"choices":[]}', chunk)).startswith(b"data: ")
    assert encoder.feed((SSE_DONE, None)) == b""
    assert encoder.finish() == b"data: [DONE]\n\n"
    assert OpenAiPassthroughEncoder(client_wants_usage=False).finish() == b""
