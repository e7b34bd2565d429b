"""The same scenarios over every (client dialect × credential kind) pair of the pipeline.

A column is a dialect: how its client sends a plain, a streamed and a tool request, and how
it reads the answer back. A row is a credential kind, with its upstream adapter. Adding a
codec adds a `Dialect` to DIALECTS, never a file of copies.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from accounts.models import Credential
from rotator.models import Mark
from stats.models import UsageCounter
from stats.usage import usage_flush
from tests.conftest import Persona, persona_create
from tests.rotator.test_oauth import oauth_persona, refresh_tokens

MODEL = "gemini-2.5-flash"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@dataclass
class Reply:
    """What a client made of an answer, in any dialect."""

    status: int
    text: str = ""
    tool: str = ""
    error: str = ""
    # A stream that ended as its protocol says a whole answer ends ([DONE], a finish reason).
    complete: bool = False


def _sse_data(text: str) -> list[dict]:
    return [
        json.loads(line[5:])
        for line in text.splitlines()
        if line.startswith("data:") and line[5:].strip() != "[DONE]"
    ]


# --------------------------------------------------------------------------- the columns


def _chat_send(http: httpx.Client, key: str, *, stream: bool, tool: bool) -> Reply:
    body: dict = {"model": MODEL, "messages": [{"role": "user", "content": "weather in Paris?"}]}
    if tool:
        body["tools"] = [{"type": "function", "function": WEATHER}]
    if stream:
        body["stream"] = True
    response = http.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )
    if response.status_code != 200:
        return Reply(response.status_code, error=response.json()["error"]["message"])
    if not stream:
        message = response.json()["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        return Reply(
            200,
            text=message.get("content") or "",
            tool=calls[0]["function"]["name"] if calls else "",
            complete=True,
        )
    reply = Reply(200, complete="data: [DONE]" in response.text)
    for event in _sse_data(response.text):
        if "error" in event:
            reply.error = event["error"]["message"]
            continue
        for choice in event.get("choices", []):
            delta = choice.get("delta", {})
            reply.text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                reply.tool = reply.tool or call["function"]["name"]
    return reply


def _native_send(http: httpx.Client, key: str, *, stream: bool, tool: bool) -> Reply:
    body: dict = {"contents": [{"role": "user", "parts": [{"text": "weather in Paris?"}]}]}
    if tool:
        body["tools"] = [{"functionDeclarations": [WEATHER]}]
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    response = http.post(
        f"/v1beta/models/{MODEL}:{method}", json=body, headers={"x-goog-api-key": key}
    )
    if response.status_code != 200:
        return Reply(response.status_code, error=response.json()["error"]["message"])
    events = _sse_data(response.text) if stream else [response.json()]
    reply = Reply(200)
    for event in events:
        if "error" in event:
            reply.error = event["error"]["message"]
            continue
        for candidate in event.get("candidates", []):
            for part in candidate.get("content", {}).get("parts", []):
                reply.text += part.get("text", "") if not part.get("thought") else ""
                if "functionCall" in part:
                    reply.tool = reply.tool or part["functionCall"]["name"]
            reply.complete = reply.complete or bool(candidate.get("finishReason"))
    return reply


def _sse_events(text: str) -> list[tuple[str, dict]]:
    """(event name, data) of each SSE event, for dialects that name their events."""
    events, name = [], ""
    for line in text.splitlines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line[5:])))
    return events


def _messages_send(http: httpx.Client, key: str, *, stream: bool, tool: bool) -> Reply:
    body: dict = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
    }
    if tool:
        body["tools"] = [
            {
                **{k: v for k, v in WEATHER.items() if k != "parameters"},
                "input_schema": WEATHER["parameters"],
            }
        ]
    if stream:
        body["stream"] = True
    response = http.post(
        "/v1/messages", json=body, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}
    )
    if response.status_code != 200:
        return Reply(response.status_code, error=response.json()["error"]["message"])
    if not stream:
        message = response.json()
        blocks = message["content"]
        return Reply(
            200,
            text="".join(b["text"] for b in blocks if b["type"] == "text"),
            tool=next((b["name"] for b in blocks if b["type"] == "tool_use"), ""),
            complete=message["stop_reason"] is not None,
        )
    reply = Reply(200)
    for name, data in _sse_events(response.text):
        if name == "error":
            reply.error = data["error"]["message"]
        elif name == "content_block_start" and data["content_block"]["type"] == "tool_use":
            reply.tool = reply.tool or data["content_block"]["name"]
        elif name == "content_block_delta" and data["delta"]["type"] == "text_delta":
            reply.text += data["delta"]["text"]
        elif name == "message_stop":
            reply.complete = True
    return reply


def _responses_send(http: httpx.Client, key: str, *, stream: bool, tool: bool) -> Reply:
    body: dict = {"model": MODEL, "input": "weather in Paris?"}
    if tool:
        body["tools"] = [{"type": "function", **WEATHER}]
    if stream:
        body["stream"] = True
    response = http.post("/v1/responses", json=body, headers={"authorization": f"Bearer {key}"})
    if response.status_code != 200:
        return Reply(response.status_code, error=response.json()["error"]["message"])
    if not stream:
        return _responses_read(response.json(), Reply(200, complete=True))
    reply = Reply(200)
    for event in _sse_data(response.text):
        if event["type"] == "response.output_text.delta":
            reply.text += event["delta"]
        elif event["type"] == "response.output_item.done" and event["item"]["type"] != "message":
            _responses_read({"output": [event["item"]]}, reply)
        elif event["type"] == "response.failed":
            reply.error = event["response"]["error"]["message"]
        reply.complete = reply.complete or event["type"] == "response.completed"
    return reply


def _responses_read(response: dict, reply: Reply) -> Reply:
    for item in response["output"]:
        if item["type"] == "message":
            reply.text += "".join(part["text"] for part in item["content"])
        elif item["type"] == "function_call":
            reply.tool = reply.tool or item["name"]
    return reply


@dataclass(frozen=True)
class Dialect:
    name: str
    send: Callable[..., Reply]


DIALECTS = [
    Dialect("openai_chat", _chat_send),
    Dialect("gemini_native", _native_send),
    Dialect("anthropic_messages", _messages_send),
    Dialect("openai_responses", _responses_send),
]


# ------------------------------------------------------------------------------ the rows


@dataclass(frozen=True)
class Kind:
    name: str
    pool: Callable[..., Persona]
    # The secrets the fake keys its behaviours by, one per credential.
    secrets: Callable[[Persona], list[str]]
    invalid_behaviour: tuple[str, dict]


KINDS = [
    Kind(
        "gemini_api_key",
        lambda fake: persona_create("kim", credentials=2),
        lambda persona: persona.upstream_keys,
        ("invalid_key", {}),
    ),
    Kind(
        "code_assist",
        lambda fake: oauth_persona("otto", fake, accounts=2, project_id="otto-project"),
        refresh_tokens,
        ("permission_denied", {"variant": "denied"}),
    ),
]

PAIRS = [pytest.param(d, k, id=f"{d.name}-{k.name}") for d in DIALECTS for k in KINDS]


def _counted() -> tuple[int, int, int]:
    usage_flush()
    rows = list(UsageCounter.objects.all())
    return (
        sum(r.requests for r in rows),
        sum(r.successes for r in rows),
        sum(r.failures for r in rows),
    )


@pytest.fixture
def pool_of(live, fake_gemini):
    def make(kind: Kind) -> Persona:
        return kind.pool(fake_gemini)

    return make


@pytest.mark.parametrize(("dialect", "kind"), PAIRS)
def test_a_plain_answer(dialect, kind, pool_of, http):
    persona = pool_of(kind)
    reply = dialect.send(http, persona.key, stream=False, tool=False)
    assert reply.status == 200 and reply.text and reply.complete
    assert _counted() == (1, 1, 0)


@pytest.mark.parametrize(("dialect", "kind"), PAIRS)
def test_a_streamed_answer(dialect, kind, pool_of, http):
    persona = pool_of(kind)
    reply = dialect.send(http, persona.key, stream=True, tool=False)
    assert reply.status == 200 and reply.text and reply.complete and not reply.error
    assert _counted() == (1, 1, 0)


@pytest.mark.parametrize(("dialect", "kind"), PAIRS)
def test_a_tool_call(dialect, kind, pool_of, http):
    persona = pool_of(kind)
    for stream in (False, True):
        reply = dialect.send(http, persona.key, stream=stream, tool=True)
        assert reply.status == 200 and reply.tool == "get_weather"


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(("rate_limit_minute", {}, Mark.Reason.RATE_LIMITED), id="rate-limited"),
        pytest.param(("quota_day", {}, Mark.Reason.QUOTA_EXHAUSTED), id="quota-exhausted"),
    ],
)
@pytest.mark.parametrize(("dialect", "kind"), PAIRS)
def test_a_limited_credential_is_marked_and_the_request_served_by_another(
    dialect, kind, behaviour, pool_of, http, fake_gemini
):
    persona = pool_of(kind)
    name, params, reason = behaviour
    if kind.name == "code_assist":
        name = {"rate_limit_minute": "code_assist_rate_limit"}.get(name, name)
        if name == "quota_day":
            name = "code_assist_quota"
    limited = kind.secrets(persona)[0]
    fake_gemini.behave(limited, name, **params)
    for stream in (False, True, False):
        reply = dialect.send(http, persona.key, stream=stream, tool=False)
        assert reply.status == 200 and reply.text, reply
    refused = [r for r in fake_gemini.requests if r.model and r.status == 429]
    assert len(refused) == 1, "a marked credential is skipped, not asked again"
    [mark] = Mark.objects.all()
    assert mark.credential_id == persona.credentials[0].id and mark.reason == reason


@pytest.mark.parametrize(("dialect", "kind"), PAIRS)
def test_an_invalid_credential_is_marked_invalid_and_the_request_served_by_another(
    dialect, kind, pool_of, http, fake_gemini
):
    persona = pool_of(kind)
    name, params = kind.invalid_behaviour
    fake_gemini.behave(kind.secrets(persona)[0], name, **params)
    for stream in (False, True, False):
        reply = dialect.send(http, persona.key, stream=stream, tool=False)
        assert reply.status == 200 and reply.text, reply
    statuses = dict(Credential.objects.values_list("id", "status"))
    assert statuses[persona.credentials[0].id] == Credential.Status.INVALID
    assert statuses[persona.credentials[1].id] == Credential.Status.ACTIVE


# Answers that carry nothing for the user, whatever their shape. One rule decides (rotator
# classify.success_body_classify), streamed or not: a stream is held until it has content.
NOTHING = ["empty", "thoughts_only", "signature_only", "malformed_function_call"]


@pytest.mark.parametrize("nothing", NOTHING)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("dialect", "kind"), PAIRS)
def test_an_answer_without_content_is_retried_on_another_credential(
    dialect, kind, stream, nothing, pool_of, http, fake_gemini
):
    persona = pool_of(kind)
    fake_gemini.behave(kind.secrets(persona)[0], nothing, times=1)
    for _ in range(2):  # round robin reaches the empty credential within two requests
        reply = dialect.send(http, persona.key, stream=stream, tool=False)
        assert reply.status == 200 and reply.text and reply.complete
    # Three attempts: the empty one (a failure) and two answers.
    assert _counted() == (3, 2, 1)
    assert Mark.objects.count() == 0, "an empty answer marks nothing"


@pytest.mark.parametrize(("dialect", "kind"), PAIRS)
def test_a_stream_cut_after_content_ends_with_the_dialects_error(
    dialect, kind, pool_of, http, fake_gemini
):
    persona = pool_of(kind)
    for secret in kind.secrets(persona):
        fake_gemini.behave(secret, "cut_stream", after=1)
    reply = dialect.send(http, persona.key, stream=True, tool=False)
    assert reply.status == 200 and reply.text
    assert reply.error.startswith("The upstream stream was interrupted")
    assert not reply.complete
    assert _counted() == (1, 0, 1)
