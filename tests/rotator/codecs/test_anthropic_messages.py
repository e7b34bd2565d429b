"""The Anthropic Messages codec, rule by rule; every answer is parsed by the anthropic SDK."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse

from common import errors
from rotator.codecs import anthropic_messages as codec
from rotator.codecs import shared
from rotator.codecs.base import CodecError, ReplyMeta

MODEL = "gemini-2.5-flash"
META = ReplyMeta(
    request_id="0123abcd", model="claude-sonnet-4-5", created=1_700_000_000, backend="gemini_api"
)
HI = {"role": "user", "content": "Hi"}
ABSENT = object()
STREAM_EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)
CLAUDE_CODE_REQUEST = Path(__file__).parent / "data" / "claude_code_request.json"


def body_with(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 1024, "messages": [HI], **fields}


def pivot_body(**fields: Any) -> dict[str, Any]:
    return codec.request_to_pivot(body_with(**fields)).body


def answer(*parts: dict[str, Any], finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}}
    if finish is not None:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], **extra}


USAGE = {
    "usageMetadata": {
        "promptTokenCount": 120,
        "cachedContentTokenCount": 100,
        "candidatesTokenCount": 7,
        "thoughtsTokenCount": 5,
        "totalTokenCount": 132,
    }
}


def sse_events(stream: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Returns (event name, data) for each SSE event, checking each is well formed."""
    events = []
    for frame in stream.decode().split("\n\n"):
        if not frame:
            continue
        name_line, data_line = frame.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name, "the SDK dispatches on the event name: it must match"
        events.append((name, data))
    return events


def sdk_for(answer_bytes: bytes, *, content_type: str = "application/json") -> anthropic.Anthropic:
    """An anthropic SDK client whose every request is answered with `answer_bytes`, so that the
    SDK's own parsing (not a test's reimplementation) reads what the codec produced."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=answer_bytes, headers={"content-type": content_type})

    return anthropic.Anthropic(
        api_key="test",
        base_url="http://rotator.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def streamed(*chunks: dict[str, Any]) -> bytes:
    encoder = codec.StreamEncoder(meta=META)
    return b"".join(encoder.feed(chunk) for chunk in chunks) + encoder.finish()


# --- request -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "path", "expected"),
    [
        ({}, ("generationConfig", "maxOutputTokens"), 1024),
        ({"system": "Be brief."}, ("systemInstruction",), {"parts": [{"text": "Be brief."}]}),
        (
            {
                "system": [
                    {"type": "text", "text": "One.", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "Two."},
                ]
            },
            ("systemInstruction",),
            {"parts": [{"text": "One."}, {"text": "Two."}]},
        ),
        (
            {"system": "x-anthropic-billing-header: cc_version=2.1.88.a3f; cch=1;\nBe brief."},
            ("systemInstruction",),
            {"parts": [{"text": "Be brief."}]},
        ),
        ({"system": []}, ("systemInstruction",), ABSENT),
        ({"temperature": 1}, ("generationConfig", "temperature"), 1.0),
        ({"top_p": 0.9}, ("generationConfig", "topP"), 0.9),
        ({"top_k": 40}, ("generationConfig", "topK"), 40),
        ({"stop_sequences": ["END", ""]}, ("generationConfig", "stopSequences"), ["END"]),
        ({"metadata": {"user_id": "u1"}, "service_tier": "auto"}, ("metadata",), ABSENT),
        ({"cache_control": {"type": "ephemeral"}}, ("cache_control",), ABSENT),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}},
            ("generationConfig", "thinkingConfig"),
            {"thinkingBudget": 2048, "includeThoughts": True},
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}},
            ("generationConfig", "thinkingConfig"),
            {"thinkingBudget": 2048},
        ),
        (
            {"thinking": {"type": "disabled"}},
            ("generationConfig", "thinkingConfig"),
            {"thinkingBudget": 0},
        ),
        (
            {"thinking": {"type": "adaptive"}},
            ("generationConfig", "thinkingConfig"),
            {"includeThoughts": True},
        ),
        (
            {"output_config": {"effort": "low"}},
            ("generationConfig", "thinkingConfig"),
            {"thinkingBudget": 1024, "includeThoughts": True},
        ),
        (
            {
                "output_config": {
                    "format": {
                        "type": "json_schema",
                        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                    }
                }
            },
            ("generationConfig", "responseMimeType"),
            "application/json",
        ),
        (
            {
                "tools": [
                    {
                        "name": "get_weather",
                        "description": "Weather now",
                        "input_schema": {
                            "$schema": "http://json-schema.org/draft-07/schema#",
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                            "additionalProperties": False,
                        },
                        "cache_control": {"type": "ephemeral"},
                    }
                ]
            },
            ("tools",),
            [
                {
                    "functionDeclarations": [
                        {
                            "name": "get_weather",
                            "description": "Weather now",
                            "parametersJsonSchema": {
                                "type": "object",
                                "properties": {"city": {"type": "string"}},
                                "required": ["city"],
                                "additionalProperties": False,
                            },
                        }
                    ]
                }
            ],
        ),
        (
            {"tools": [{"name": "ping", "input_schema": {"type": "object", "properties": {}}}]},
            ("tools",),
            [{"functionDeclarations": [{"name": "ping"}]}],
        ),
    ],
)
def test_a_request_field_maps_to_its_gemini_counterpart(fields, path, expected):
    value: Any = pivot_body(**fields)
    for key in path:
        value = value.get(key, ABSENT) if value is not ABSENT else ABSENT
    assert value == expected


@pytest.mark.parametrize(
    ("model", "budget", "sent"),
    [
        ("gemini-2.5-flash", 31999, 24576),  # Claude Code's main loop asks for max_tokens - 1
        ("gemini-2.5-pro", 31999, 31999),
        ("gemini-2.5-pro", 64000, 32768),
        ("gemini-2.5-pro", 64, 128),
        ("gemini-2.5-flash-lite", 100, 512),
    ],
)
def test_a_thinking_budget_is_kept_within_what_the_model_accepts(model, budget, sent):
    body = {**body_with(thinking={"type": "enabled", "budget_tokens": budget}), "model": model}
    config = codec.request_to_pivot(body).body["generationConfig"]["thinkingConfig"]
    assert config == {"thinkingBudget": sent, "includeThoughts": True}


def test_thinking_on_gemini_3_asks_for_a_level_not_a_budget():
    body = codec.request_to_pivot(
        {
            **body_with(thinking={"type": "enabled", "budget_tokens": 30000}),
            "model": "gemini-3.5-flash",
        }
    ).body
    assert body["generationConfig"]["thinkingConfig"] == {
        "thinkingLevel": "high",
        "includeThoughts": True,
    }
    disabled = codec.request_to_pivot(
        {**body_with(thinking={"type": "disabled"}), "model": "gemini-3.1-pro-preview"}
    ).body
    # 3 Pro cannot switch thinking off; its lowest level is the nearest it has.
    assert disabled["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "low"}


TOOLS = [
    {"name": "Bash", "input_schema": {"type": "object", "properties": {"c": {"type": "string"}}}},
    {"name": "Read", "input_schema": {"type": "object", "properties": {"p": {"type": "string"}}}},
]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"functionCallingConfig": {"mode": "AUTO"}}),
        ({"type": "any"}, {"functionCallingConfig": {"mode": "ANY"}}),
        ({"type": "none"}, {"functionCallingConfig": {"mode": "NONE"}}),
        (
            {"type": "tool", "name": "Read", "disable_parallel_tool_use": True},
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["Read"]}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"functionCallingConfig": {"mode": "AUTO"}},
        ),
    ],
)
def test_tool_choice_maps_to_a_function_calling_mode(choice, expected):
    assert pivot_body(tools=TOOLS, tool_choice=choice)["toolConfig"] == expected


def test_the_model_and_stream_flag_are_the_clients():
    pivot = codec.request_to_pivot({**body_with(stream=True), "model": "models/gemini-2.5-pro"})
    assert pivot.model == "gemini-2.5-pro"
    assert pivot.stream is True
    assert codec.request_to_pivot(body_with()).stream is False


def test_images_and_documents_become_inline_or_file_data():
    png = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": png, "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}},
        {"type": "document", "source": pdf, "title": "Spec"},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
        },
    ]
    body = codec.request_to_pivot(body_with(messages=[{"role": "user", "content": content}])).body
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Compare these."},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0x"}},
                {"text": "notes"},
            ],
        }
    ]


def tool_loop_messages(**result_extra: Any) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "What is here?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_a", "name": "Bash", "input": {"c": "ls"}},
                {"type": "tool_use", "id": "toolu_b", "name": "Read", "input": {"p": "x"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "a.py\nb.py"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_b",
                    "content": [{"type": "text", "text": "no such file"}],
                    "is_error": True,
                    **result_extra,
                },
            ],
        },
        {"role": "user", "content": "and then?"},
    ]


def test_a_tool_loop_answers_every_call_by_name_in_one_user_turn():
    body = codec.request_to_pivot(body_with(tools=TOOLS, messages=tool_loop_messages())).body
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "What is here?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Looking."},
                {"functionCall": {"name": "Bash", "args": {"c": "ls"}}},
                {"functionCall": {"name": "Read", "args": {"p": "x"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "Bash", "response": {"output": "a.py\nb.py"}}},
                {"functionResponse": {"name": "Read", "response": {"error": "no such file"}}},
                {"text": "and then?"},
            ],
        },
    ]


def test_images_in_a_tool_result_go_inside_the_response_on_gemini_3_and_beside_it_before():
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    messages = tool_loop_messages()
    messages[2]["content"][0]["content"] = [
        {"type": "text", "text": "screenshot"},
        {"type": "image", "source": image},
    ]
    inline = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    old = codec.request_to_pivot(body_with(messages=messages)).body["contents"][2]["parts"]
    assert old[:2] == [
        {"functionResponse": {"name": "Bash", "response": {"output": "screenshot"}}},
        inline,
    ]
    new = codec.request_to_pivot({**body_with(messages=messages), "model": "gemini-3.5-flash"})
    assert new.body["contents"][2]["parts"][0] == {
        "functionResponse": {
            "name": "Bash",
            "response": {"output": "screenshot"},
            "parts": [inline],
        }
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "messages": [HI]}, "max_tokens"),
        (body_with(max_tokens=0), "max_tokens"),
        (body_with(max_tokens="10"), "max_tokens"),
        ({"max_tokens": 10, "messages": [HI]}, "model"),
        (body_with(messages=[]), "messages"),
        (body_with(messages=[{"role": "system", "content": "x"}]), "messages[0].role"),
        (
            body_with(
                messages=[
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "audio"}]}
                ]
            ),
            "messages[0].content[1].type",
        ),
        (
            body_with(
                messages=[
                    {"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "x"}]}
                ]
            ),
            "messages[0].content[0].type",
        ),
        (
            body_with(
                messages=[
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope"}]}
                ]
            ),
            "messages[0].content[0].tool_use_id",
        ),
        (
            body_with(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            ),
            "messages[0].content[0].source.type",
        ),
        (body_with(system=[{"type": "image"}]), "system[0].type"),
        (body_with(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
        (body_with(tools=TOOLS, tool_choice={"type": "tool", "name": "Write"}), "tool_choice.name"),
        (body_with(tool_choice={"type": "any"}), "tool_choice"),
        (body_with(tool_choice={"type": "sometimes"}), "tool_choice.type"),
        (body_with(thinking={"type": "enabled"}), "thinking.budget_tokens"),
        (body_with(thinking={"type": "on"}), "thinking.type"),
        (body_with(temperature=3), "temperature"),
        (body_with(stop_sequences="END"), "stop_sequences"),
        (body_with(output_config={"effort": "extreme"}), "output_config.effort"),
    ],
)
def test_a_request_gemini_cannot_serve_is_refused_naming_the_parameter(body, param):
    with pytest.raises(CodecError) as refused:
        codec.request_to_pivot(body)
    assert refused.value.param == param


def test_a_claude_code_request_maps_cleanly():
    body = json.loads(CLAUDE_CODE_REQUEST.read_text())
    pivot = codec.request_to_pivot(body)
    assert pivot.stream is True
    system_text = [part["text"] for part in pivot.body["systemInstruction"]["parts"]]
    assert len(system_text) == 2 and not any("billing-header" in text for text in system_text)
    [tools] = pivot.body["tools"]
    declarations = tools["functionDeclarations"]
    assert [d["name"] for d in declarations] == [tool["name"] for tool in body["tools"]]
    # JSON Schema under parametersJsonSchema (never the classic fields, which refuse most MCP
    # schemas); the $schema URL and references Google cannot resolve are gone.
    serialized = json.dumps(declarations)
    assert '"parameters"' not in serialized and "$schema" not in serialized
    assert all("parametersJsonSchema" in d for d in declarations if d["name"] != "ExitPlanMode")
    assert [content["role"] for content in pivot.body["contents"]] == ["user", "model", "user"]
    assert pivot.body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "Glob", "response": {"output": "/repo/a.py\n/repo/b.py"}}}
    ]
    assert pivot.body["generationConfig"]["maxOutputTokens"] == 32000


# --- signatures across turns ---------------------------------------------------------------------


def test_a_signed_call_survives_a_round_trip_through_the_client():
    reply = codec.response_from_pivot(
        answer(
            {"text": "Planning the listing.", "thought": True},
            {"functionCall": {"name": "Bash", "args": {"c": "ls"}}, "thoughtSignature": "c2lnLTE="},
            {"functionCall": {"name": "Read", "args": {"p": "x"}}},
        ),
        meta=META,
    )
    thinking, tool_a, tool_b = reply["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] == "Planning the listing."
    assert shared.signature_open(thinking["signature"]) == ("c2lnLTE=", "gemini_api")
    follow_up = body_with(
        tools=TOOLS,
        messages=[
            HI,
            {"role": "assistant", "content": reply["content"]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_a["id"], "content": "a.py"},
                    {"type": "tool_result", "tool_use_id": tool_b["id"], "content": "x"},
                ],
            },
        ],
    )
    model_turn = codec.request_to_pivot(follow_up).body["contents"][1]
    # The thought summary is not sent back; the signature is, on the call Gemini signed.
    assert model_turn["parts"] == [
        {
            "functionCall": {"name": "Bash", "args": {"c": "ls"}},
            "thoughtSignature": "c2lnLTE=",
            shared.SIGNATURE_BACKEND_KEY: "gemini_api",
        },
        {"functionCall": {"name": "Read", "args": {"p": "x"}}},
    ]


def test_a_signed_call_without_thoughts_gets_an_empty_thinking_block_before_it():
    reply = codec.response_from_pivot(
        answer({"functionCall": {"name": "Bash", "args": {}}, "thoughtSignature": "c2ln"}),
        meta=ReplyMeta(request_id="r", model="m", created=0, backend="code_assist"),
    )
    thinking, tool_use = reply["content"]
    assert thinking["thinking"] == "" and tool_use["type"] == "tool_use"
    assert shared.signature_open(thinking["signature"]) == ("c2ln", "code_assist")


def test_a_redacted_thinking_block_carries_a_signature_back_too():
    token = shared.signature_seal("c2ln", backend="gemini_api")
    messages = [
        HI,
        {
            "role": "assistant",
            "content": [
                {"type": "redacted_thinking", "data": token},
                {"type": "text", "text": "Hello"},
            ],
        },
        {"role": "user", "content": "Go on"},
    ]
    parts = codec.request_to_pivot(body_with(messages=messages)).body["contents"][1]["parts"]
    assert parts == [
        {"text": "Hello", "thoughtSignature": "c2ln", shared.SIGNATURE_BACKEND_KEY: "gemini_api"}
    ]


def test_a_forged_or_foreign_signature_is_no_signature():
    messages = [
        HI,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "EqQBCkYIARgCKkD-real-claude"},
                {"type": "tool_use", "id": "toolu_x", "name": "Bash", "input": {}},
            ],
        },
    ]
    parts = codec.request_to_pivot(body_with(messages=messages)).body["contents"][1]["parts"]
    assert parts == [{"functionCall": {"name": "Bash", "args": {}}}]


# --- response ------------------------------------------------------------------------------------


def test_a_text_answer_is_a_message_the_sdk_parses():
    reply = codec.response_from_pivot(answer({"text": "Hello!"}, **USAGE), meta=META)
    message = Message.model_validate(reply)
    assert message.id == "msg_0123abcd" and message.model == "claude-sonnet-4-5"
    assert message.content[0].type == "text" and message.content[0].text == "Hello!"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == 20  # prompt minus what was read from the cache
    assert message.usage.cache_read_input_tokens == 100
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.output_tokens == 12  # candidates plus thoughts
    # Through the SDK's own client, too.
    parsed = sdk_for(json.dumps(reply).encode()).messages.create(
        model="claude-sonnet-4-5", max_tokens=10, messages=[HI]
    )
    assert parsed.content[0].type == "text" and parsed.content[0].text == "Hello!"


def test_a_tool_call_is_a_tool_use_block_with_a_plain_id_and_an_input_object():
    reply = codec.response_from_pivot(
        answer({"functionCall": {"name": "Bash", "args": {"c": "ls -la"}, "id": "x/y"}}),
        meta=META,
    )
    message = Message.model_validate(reply)
    [block] = message.content
    assert block.type == "tool_use" and block.name == "Bash" and block.input == {"c": "ls -la"}
    assert re.fullmatch(r"toolu_[A-Za-z0-9]{1,24}", block.id)
    assert message.stop_reason == "tool_use"


def test_each_tool_use_gets_its_own_id():
    call = {"functionCall": {"name": "Bash", "args": {}}}
    first = codec.response_from_pivot(answer(call, call), meta=META)["content"]
    second = codec.response_from_pivot(answer(call), meta=META)["content"]
    ids = {block["id"] for block in first + second}
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("response", "stop_reason"),
    [
        (answer({"text": "a"}, finish="STOP"), "end_turn"),
        (answer({"text": "a"}, finish=None), "end_turn"),
        (answer({"text": "a"}, finish="MAX_TOKENS"), "max_tokens"),
        (answer({"functionCall": {"name": "f", "args": {}}}, finish="MAX_TOKENS"), "max_tokens"),
        (answer({"text": "a"}, finish="SAFETY"), "refusal"),
        (answer(finish="PROHIBITED_CONTENT"), "refusal"),
        (answer(finish="MALFORMED_FUNCTION_CALL"), "end_turn"),
        ({"promptFeedback": {"blockReason": "SAFETY"}}, "refusal"),
        ({}, "end_turn"),
    ],
)
def test_the_stop_reason_follows_gemini_finish_reason(response, stop_reason):
    reply = codec.response_from_pivot(response, meta=META)
    assert Message.model_validate(reply).stop_reason == stop_reason


def test_inline_images_and_empty_parts_in_an_answer_are_skipped():
    reply = codec.response_from_pivot(
        answer({"inlineData": {"mimeType": "image/png", "data": "x"}}, {"text": ""}, "junk"),
        meta=META,
    )
    assert Message.model_validate(reply).content == []


# --- stream --------------------------------------------------------------------------------------


def test_a_streamed_text_answer_has_the_exact_event_order():
    stream = streamed(
        {**answer({"text": "Hel"}, finish=None), **USAGE},
        answer({"text": "lo"}, finish=None),
        {**answer({"text": "!"}, finish="STOP"), **USAGE},
    )
    events = sse_events(stream)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for _, data in events:
        STREAM_EVENT.validate_python(data)
    start = events[0][1]["message"]
    assert start["stop_reason"] is None and start["content"] == []
    assert start["usage"]["input_tokens"] == 20
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 12


def test_the_sdk_rebuilds_a_streamed_answer_with_thinking_text_and_tools():
    chunks = [
        answer({"text": "Let me ", "thought": True}, finish=None),
        answer({"text": "look.", "thought": True}, finish=None),
        answer({"text": "Listing files."}, finish=None),
        answer(
            {"functionCall": {"name": "Bash", "args": {"c": "ls"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "Read", "args": {"p": "a b"}}},
            finish="STOP",
        ),
        USAGE,
    ]
    stream = streamed(*chunks)
    events = sse_events(stream)
    for _, data in events:
        STREAM_EVENT.validate_python(data)
    client = sdk_for(stream, content_type="text/event-stream")
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=[HI]) as s:
        final = s.get_final_message()
    assert [block.type for block in final.content] == [
        "thinking",
        "text",
        "thinking",
        "tool_use",
        "tool_use",
    ]
    assert final.content[0].thinking == "Let me look."
    assert final.content[1].text == "Listing files."
    assert shared.signature_open(final.content[2].signature) == ("c2ln", "gemini_api")
    assert final.content[3].input == {"c": "ls"} and final.content[4].input == {"p": "a b"}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 12 and final.usage.cache_read_input_tokens == 100
    # The streamed blocks are the ones a non-streamed answer has (ids aside).
    whole = codec.response_from_pivot(
        answer(
            *[
                p
                for c in chunks
                for p in c.get("candidates", [{}])[0].get("content", {}).get("parts", [])
            ]
        ),
        meta=META,
    )
    assert [b["type"] for b in whole["content"]] == [b.type for b in final.content]


def test_a_signature_in_its_own_chunk_closes_the_thinking_block_with_it():
    stream = streamed(
        answer({"text": "Thinking", "thought": True}, finish=None),
        answer({"text": "", "thoughtSignature": "c2ln"}, finish=None),
        answer({"text": "Done."}, finish="STOP"),
    )
    events = sse_events(stream)
    kinds = [
        (name, data.get("delta", data.get("content_block", {})).get("type"))
        for name, data in events
    ]
    assert kinds == [
        ("message_start", None),
        ("content_block_start", "thinking"),
        ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "signature_delta"),
        ("content_block_stop", None),
        ("content_block_start", "text"),
        ("content_block_delta", "text_delta"),
        ("content_block_stop", None),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert [data["index"] for name, data in events if name.startswith("content_block")] == [
        0,
        0,
        0,
        0,
        1,
        1,
        1,
    ]


def test_an_empty_stream_still_is_a_complete_message():
    events = sse_events(streamed())
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    for _, data in events:
        STREAM_EVENT.validate_python(data)


def test_a_stream_blocked_for_its_prompt_ends_as_a_refusal():
    events = sse_events(streamed({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}))
    assert events[-2][1]["delta"]["stop_reason"] == "refusal"


def test_keepalive_is_a_ping_the_sdk_ignores():
    encoder = codec.StreamEncoder(meta=META)
    stream = encoder.keepalive() + encoder.feed(answer({"text": "hi"})) + encoder.keepalive()
    stream += encoder.finish()
    assert encoder.keepalive() == b""
    events = sse_events(stream)
    assert events[0] == ("ping", {"type": "ping"})
    client = sdk_for(stream, content_type="text/event-stream")
    with client.messages.stream(model="m", max_tokens=10, messages=[HI]) as s:
        assert s.get_final_text() == "hi"


def test_a_failure_mid_stream_is_an_error_event_the_sdk_raises():
    encoder = codec.StreamEncoder(meta=META)
    stream = encoder.feed(answer({"text": "par"}, finish=None))
    stream += encoder.failure(errors.UpstreamError("Model overloaded", status=503))
    assert encoder.finish() == b"" and encoder.feed(answer({"text": "x"})) == b""
    name, data = sse_events(stream)[-1]
    assert name == "error"
    assert data == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Model overloaded"},
    }
    ErrorResponse.model_validate(data)
    client = sdk_for(stream, content_type="text/event-stream")
    with (
        pytest.raises(anthropic.APIStatusError, match="Model overloaded"),
        client.messages.stream(model="m", max_tokens=10, messages=[HI]) as s,
    ):
        s.get_final_message()


# --- errors and count_tokens ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (errors.BadRequest("bad"), "invalid_request_error"),
        (errors.PayloadTooLarge("big"), "invalid_request_error"),
        (errors.AuthenticationFailed("who"), "authentication_error"),
        (errors.ModelNotAllowed("no"), "permission_error"),
        (errors.NotFound("gone"), "not_found_error"),
        (errors.KeyLimitExceeded("slow", retry_after_seconds=3), "rate_limit_error"),
        (errors.NoCredentialAvailable("cooling", retry_after_seconds=30), "rate_limit_error"),
        (errors.PoolEmpty("empty"), "overloaded_error"),
        (errors.UpstreamUnreachable("down"), "api_error"),
        (errors.UpstreamError("odd", status=500), "api_error"),
        (errors.RotatorError("internal"), "api_error"),
    ],
)
def test_an_error_is_rendered_in_anthropics_shape(error, kind):
    body = codec.error_body(error)
    assert body == {"type": "error", "error": {"type": kind, "message": error.message}}
    ErrorResponse.model_validate(body)


def test_gemini_context_overflow_reads_as_anthropics_prompt_too_long():
    error = errors.UpstreamError(
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        status=400,
    )
    assert codec.error_body(error)["error"]["message"] == (
        "prompt is too long: 1200000 tokens > 1048576 maximum"
    )


def test_count_tokens_sends_system_tools_and_messages_without_signatures():
    token = shared.signature_seal("c2ln", backend="gemini_api")
    body = {
        "model": "gemini-2.5-pro",
        "system": "Be brief.",
        "tools": TOOLS,
        "messages": [
            HI,
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "", "signature": token},
                    {"type": "text", "text": "Yo"},
                ],
            },
        ],
    }
    model, count_body = codec.count_tokens_request(body)
    assert model == "gemini-2.5-pro"
    request = count_body["generateContentRequest"]
    assert request["model"] == "models/gemini-2.5-pro"
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [d["name"] for d in request["tools"][0]["functionDeclarations"]] == ["Bash", "Read"]
    assert request["contents"][1] == {"role": "model", "parts": [{"text": "Yo"}]}
    assert "generationConfig" not in request
    counted = codec.count_tokens_response({"totalTokens": 42})
    assert anthropic.types.MessageTokensCount.model_validate(counted).input_tokens == 42
    assert codec.count_tokens_response({}) == {"input_tokens": 0}
