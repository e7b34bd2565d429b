"""Tests for the Responses API codec: requests to Gemini, answers and streams back, checked
against the openai SDK's own types."""

import re
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from common.errors import NoCredentialAvailable, NotFound, UpstreamError
from rotator.codecs import openai_responses as codec
from rotator.codecs import shared
from rotator.codecs.base import CodecError, ReplyMeta

FLASH = "gemini-2.5-flash"
GEMINI3 = "gemini-3.5-flash"
PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
WEATHER_DECLARATION = {
    "name": "get_weather",
    "description": "Current weather",
    "parametersJsonSchema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
APPLY_PATCH_GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool.",
    "format": {"type": "grammar", "syntax": "lark", "definition": APPLY_PATCH_GRAMMAR},
}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+Hello\n*** End Patch\n"
EVENTS = TypeAdapter(ResponseStreamEvent)


def pivot(**body: Any) -> dict[str, Any]:
    return codec.request_to_pivot({"model": FLASH, "input": "Hi", **body}).body


def meta(**state: Any) -> ReplyMeta:
    return ReplyMeta(
        request_id="9f1c2e7a-req",
        model="gemini-2.5-flash",
        created=1_767_225_600,
        backend="gemini_api",
        state=state,
    )


def answer(*parts: dict[str, Any], finish: str = "STOP", **extra: Any) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": list(parts)}, "finishReason": finish}
        ],
        "usageMetadata": {
            "promptTokenCount": 12,
            "cachedContentTokenCount": 4,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 3,
            "totalTokenCount": 20,
        },
        **extra,
    }


def respond(response: dict[str, Any], **state: Any) -> dict[str, Any]:
    body = codec.response_from_pivot(response, meta=meta(**state))
    Response.model_validate(body)  # the SDK's own type must accept everything we send
    return body


def stream(chunks: list[dict[str, Any]], *, end: Any = None, **state: Any) -> list[dict[str, Any]]:
    """Encodes `chunks` and returns the events, each checked against the SDK's types, its
    `event:` line and the sequence numbering, and all of them run through the SDK's own
    stream accumulator (what `client.responses.stream()` does)."""
    encoder = codec.StreamEncoder(meta=meta(**state))
    raw = b"".join(encoder.feed(chunk) for chunk in chunks)
    raw += encoder.finish() if end is None else encoder.failure(end)
    assert encoder.content_type == "text/event-stream"
    events = []
    for frame in raw.decode().split("\n\n")[:-1]:
        name, data = frame.split("\n")
        event = orjson.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    accumulator: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        accumulator.handle_event(EVENTS.validate_python(event))
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


# --- request ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"input": "Hello"},
            {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]},
            id="string-input-is-one-user-message",
        ),
        pytest.param(
            {
                "instructions": "Be brief.",
                "input": [
                    {"role": "developer", "content": "Use metric units."},
                    {"role": "system", "content": [{"type": "input_text", "text": "No emoji."}]},
                    {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                ],
            },
            {
                "systemInstruction": {
                    "parts": [
                        {"text": "Be brief."},
                        {"text": "Use metric units."},
                        {"text": "No emoji."},
                    ]
                },
                "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            },
            id="instructions-system-developer-become-system-instruction",
        ),
        pytest.param(
            {
                "input": [
                    {"type": "message", "role": "user", "content": "One"},
                    {"role": "user", "content": "Two"},
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "Three", "annotations": []}],
                    },
                ]
            },
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "One"}, {"text": "Two"}]},
                    {"role": "model", "parts": [{"text": "Three"}]},
                ]
            },
            id="same-role-neighbours-coalesce-and-assistant-is-model",
        ),
        pytest.param(
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_image", "image_url": PNG, "detail": "auto"},
                            {"type": "input_image", "image_url": "https://example.com/cat.webp"},
                            {
                                "type": "input_file",
                                "file_data": "data:application/pdf;base64,JVBERi0=",
                                "filename": "a.pdf",
                            },
                            {"type": "input_file", "file_data": "JVBERi0=", "filename": "b.pdf"},
                            {"type": "input_file", "file_url": "https://example.com/c.pdf"},
                        ],
                    }
                ]
            },
            {
                "contents": [
                    {
                        "role": "user",
                        "parts": [
                            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                            {
                                "fileData": {
                                    "mimeType": "image/webp",
                                    "fileUri": "https://example.com/cat.webp",
                                }
                            },
                            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                            {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                            {
                                "fileData": {
                                    "mimeType": "application/pdf",
                                    "fileUri": "https://example.com/c.pdf",
                                }
                            },
                        ],
                    }
                ]
            },
            id="images-and-files-inline-or-by-url",
        ),
        pytest.param(
            {"tools": [WEATHER], "tool_choice": "required"},
            {
                "tools": [{"functionDeclarations": [WEATHER_DECLARATION]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
            },
            id="flat-function-tool-with-cleaned-schema",
        ),
        pytest.param(
            {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}},
            {
                "toolConfig": {
                    "functionCallingConfig": {
                        "mode": "ANY",
                        "allowedFunctionNames": ["get_weather"],
                    }
                }
            },
            id="named-function-choice",
        ),
        pytest.param(
            {"tools": [WEATHER], "tool_choice": "none", "parallel_tool_calls": False},
            {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}},
            id="tool-choice-none-and-parallel-calls-accepted",
        ),
        pytest.param(
            {
                "tools": [WEATHER, APPLY_PATCH],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "custom", "name": "apply_patch"}],
                },
            },
            {
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "apply_patch",
                                "description": APPLY_PATCH["description"],
                                "parametersJsonSchema": {
                                    "type": "object",
                                    "properties": {
                                        "input": {
                                            "type": "string",
                                            "description": "The tool's raw input as free text "
                                            "(not JSON). It must match this lark grammar:\n"
                                            + APPLY_PATCH_GRAMMAR,
                                        }
                                    },
                                    "required": ["input"],
                                },
                            }
                        ]
                    }
                ],
                "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
            },
            id="custom-tool-is-one-string-parameter-and-allowed-tools-filter",
        ),
        pytest.param(
            {"tools": [{"type": "web_search"}]},
            {"tools": [{"googleSearch": {}}]},
            id="web-search-alone-is-google-search",
        ),
        pytest.param(
            {
                "model": GEMINI3,
                "tools": [WEATHER, {"type": "web_search", "external_web_access": False}],
            },
            {
                "tools": [{"functionDeclarations": [WEATHER_DECLARATION]}, {"googleSearch": {}}],
                "toolConfig": {"includeServerSideToolInvocations": True},
            },
            id="web-search-with-functions-on-gemini-3",
        ),
        pytest.param(
            {
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "city",
                        "strict": True,
                        "schema": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}},
                            "required": ["name"],
                            "additionalProperties": False,
                        },
                    },
                    "verbosity": "low",
                }
            },
            {
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "responseJsonSchema": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "required": ["name"],
                        "additionalProperties": False,
                    },
                }
            },
            id="json-schema-output",
        ),
        pytest.param(
            {"text": {"format": {"type": "json_object"}}},
            {"generationConfig": {"responseMimeType": "application/json"}},
            id="json-object-output",
        ),
        pytest.param(
            {"text": {"format": {"type": "text"}}},
            {"generationConfig": None},
            id="text-output-needs-nothing",
        ),
        pytest.param(
            {
                "reasoning": {"effort": "high", "summary": "auto"},
                "max_output_tokens": 4096,
                "temperature": 0.5,
                "top_p": 0.9,
            },
            {
                "generationConfig": {
                    "maxOutputTokens": 4096,
                    "temperature": 0.5,
                    "topP": 0.9,
                    "thinkingConfig": {"thinkingBudget": 24576, "includeThoughts": True},
                }
            },
            id="effort-budget-on-2.5-and-sampling",
        ),
        pytest.param(
            {"model": GEMINI3, "reasoning": {"effort": "medium"}},
            {
                "generationConfig": {
                    "thinkingConfig": {"thinkingLevel": "medium", "includeThoughts": True}
                }
            },
            id="effort-level-on-gemini-3",
        ),
        pytest.param(
            {
                "metadata": {"ticket": "42"},
                "store": False,
                "include": ["reasoning.encrypted_content"],
                "prompt_cache_key": "conv-1",
                "truncation": "auto",
                "service_tier": "auto",
                "safety_identifier": "u-1",
                "user": "u-1",
                "stream": True,
            },
            {
                "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                "generationConfig": None,
                "tools": None,
                "toolConfig": None,
                "systemInstruction": None,
            },
            id="options-without-gemini-counterpart-are-ignored",
        ),
    ],
)
def test_it_maps_requests_to_gemini(body: dict[str, Any], expected: dict[str, Any]) -> None:
    result = pivot(**body)
    for key, value in expected.items():
        assert result.get(key) == value, key


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": ""}, "model"),
        ({"input": 5}, "input"),
        ({"input": [{"role": "system", "content": "only instructions"}]}, "input"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "output_audio"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        (
            {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]},
            "input[0].call_id",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]},
            "input[0].arguments",
        ),
        ({"tools": [{"type": "file_search"}]}, "tools[0].type"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
        ({"tools": [WEATHER, {"type": "web_search"}]}, "tools"),
        ({"tools": [WEATHER], "text": {"format": {"type": "json_object"}}}, "text.format"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "x"}},
            "tool_choice.name",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": "high"}, "top_p"),
        ({"metadata": {"n": 1}}, "metadata"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_it_refuses_what_gemini_cannot_take_naming_the_field(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(CodecError) as refused:
        pivot(**body)
    assert refused.value.param == param


def test_web_search_beside_functions_on_gemini_2_says_which_tools_to_change() -> None:
    with pytest.raises(CodecError, match="web_search"):
        pivot(tools=[WEATHER, {"type": "web_search"}])


def test_tool_outputs_answer_by_function_name_in_one_user_turn() -> None:
    body = pivot(
        tools=[WEATHER, APPLY_PATCH],
        input=[
            {"role": "user", "content": "Weather in Paris and Oslo, then add hello.txt"},
            {
                "type": "function_call",
                "call_id": "call_a",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "call_b",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_a", "output": "21C"},
            {
                "type": "function_call_output",
                "call_id": "call_b",
                "output": [{"type": "input_text", "text": "4C"}],
            },
            {
                "type": "custom_tool_call",
                "call_id": "call_c",
                "name": "apply_patch",
                "input": PATCH,
            },
            {"type": "custom_tool_call_output", "call_id": "call_c", "output": "Done"},
        ],
    )
    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "21C"}}},
                {"functionResponse": {"name": "get_weather", "response": {"output": "4C"}}},
            ],
        },
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "apply_patch", "args": {"input": PATCH}}}],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "apply_patch", "response": {"output": "Done"}}}
            ],
        },
    ]


def test_images_in_tool_output_go_inside_the_response_on_gemini_3_and_beside_it_before() -> None:
    items = [
        {"role": "user", "content": "Look"},
        {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": "c1",
            "output": [{"type": "input_image", "image_url": PNG}],
        },
    ]
    image = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    response = {"name": "view_image", "response": {"output": ""}}
    assert pivot(model=GEMINI3, input=items)["contents"][-1]["parts"] == [
        {"functionResponse": {**response, "parts": [image]}}
    ]
    assert pivot(input=items)["contents"][-1]["parts"] == [{"functionResponse": response}, image]


def test_custom_tool_names_travel_in_the_state_for_the_answer() -> None:
    request = codec.request_to_pivot(
        {"model": FLASH, "input": "Hi", "tools": [WEATHER, APPLY_PATCH], "stream": True}
    )
    assert request.model == FLASH
    assert request.stream is True
    assert request.state["custom_tools"] == ["apply_patch"]


# --- signatures across turns --------------------------------------------------------------------


def test_thought_signatures_come_back_sealed_and_return_to_their_parts() -> None:
    first = respond(
        answer(
            {"text": "Checking the weather.", "thought": True},
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "c2lnMQ==",
            },
        )
    )
    reasoning, call = first["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Checking the weather."}]
    assert "c2lnMQ" not in reasoning["encrypted_content"]  # clients cannot read it
    assert call["type"] == "function_call"

    # What Codex sends next: the output items replayed, ids dropped, and the tool's output.
    replay = [{k: v for k, v in item.items() if k != "id"} for item in first["output"]]
    body = pivot(
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *replay,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "21C"},
        ],
    )
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "c2lnMQ==",
                shared.SIGNATURE_BACKEND_KEY: "gemini_api",
            }
        ],
    }


def test_a_trailing_signature_returns_to_the_last_part_of_its_turn() -> None:
    events = stream(
        [
            {"candidates": [{"content": {"parts": [{"text": "Hello"}]}}]},
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": "", "thoughtSignature": "c2ln"}]},
                        "finishReason": "STOP",
                    }
                ]
            },
        ]
    )
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "reasoning"]
    body = pivot(
        input=[{"role": "user", "content": "Hi"}, *output, {"role": "user", "content": "More"}]
    )
    assert body["contents"][1]["parts"] == [
        {"text": "Hello", "thoughtSignature": "c2ln", shared.SIGNATURE_BACKEND_KEY: "gemini_api"}
    ]


def test_forged_or_foreign_encrypted_content_is_no_signature() -> None:
    body = pivot(
        input=[
            {"role": "user", "content": "Hi"},
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAA-openai-own-blob"},
            {"role": "assistant", "content": "Hello"},
        ]
    )
    assert body["contents"][1] == {"role": "model", "parts": [{"text": "Hello"}]}


# --- response -----------------------------------------------------------------------------------


def test_a_text_answer_is_a_completed_message_with_usage() -> None:
    body = respond(answer({"text": "Hel"}, {"text": "lo"}))
    assert re.fullmatch(r"resp_[A-Za-z0-9]+", body["id"])
    assert body["id"] == codec.response_id("9f1c2e7a-req")
    assert body["status"] == "completed"
    assert body["incomplete_details"] is None
    assert body["model"] == "gemini-2.5-flash"
    [message] = body["output"]
    assert message["type"] == "message"
    assert message["status"] == "completed"
    assert message["content"] == [
        {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
    ]
    assert body["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 8,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 20,
    }


def test_function_and_custom_calls_get_plain_call_ids_and_their_own_item_types() -> None:
    body = respond(
        answer(
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "apply_patch", "args": {"input": PATCH}}},
        ),
        custom_tools=["apply_patch"],
    )
    call, custom = body["output"]
    assert call["type"] == "function_call"
    assert call["name"] == "get_weather"
    assert orjson.loads(call["arguments"]) == {"city": "Paris"}
    assert custom["type"] == "custom_tool_call"
    assert custom["name"] == "apply_patch"
    assert custom["input"] == PATCH  # the patch arrives intact, not as JSON
    for item in (call, custom):
        assert re.fullmatch(r"call_[A-Za-z0-9]{1,32}", item["call_id"])
    assert call["call_id"] != custom["call_id"]
    assert len({item["id"] for item in body["output"]}) == 2


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (answer({"text": "Once upon"}, finish="MAX_TOKENS"), "max_output_tokens"),
        (answer({"text": "Nope"}, finish="SAFETY"), "content_filter"),
        ({"promptFeedback": {"blockReason": "SAFETY"}}, "content_filter"),
    ],
)
def test_cut_or_filtered_answers_are_incomplete_with_the_reason(
    response: dict[str, Any], reason: str
) -> None:
    body = respond(response)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": reason}
    assert "completed_at" not in body


def test_the_response_echoes_the_request_options() -> None:
    request = codec.request_to_pivot(
        {
            "model": FLASH,
            "input": "Hi",
            "instructions": "Be brief.",
            "tools": [WEATHER, APPLY_PATCH],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
            "temperature": 0.2,
            "max_output_tokens": 100,
            "metadata": {"ticket": "42"},
            "store": False,
            "reasoning": {"effort": "low", "summary": "auto"},
            "prompt_cache_key": "conv-1",
        }
    )
    body = respond(answer({"text": "Hi"}), **request.state)
    assert body["instructions"] == "Be brief."
    assert [tool["name"] for tool in body["tools"]] == ["get_weather", "apply_patch"]
    assert body["parallel_tool_calls"] is False
    assert body["temperature"] == 0.2
    assert body["max_output_tokens"] == 100
    assert body["metadata"] == {"ticket": "42"}
    assert body["store"] is False
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["prompt_cache_key"] == "conv-1"


# --- stream -------------------------------------------------------------------------------------


def test_a_streamed_text_answer_is_the_full_typed_event_sequence() -> None:
    events = stream(
        [
            {"candidates": [{"content": {"parts": [{"text": "Hel"}]}}]},
            answer({"text": "lo"}),
        ]
    )
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    assert [event["delta"] for event in events if "delta" in event] == ["Hel", "lo"]
    assert events[6]["text"] == "Hello"
    completed = events[-1]["response"]
    assert completed["id"] == events[0]["response"]["id"]
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == "Hello"
    assert completed["usage"]["total_tokens"] == 20


def test_a_streamed_answer_with_thoughts_and_calls_announces_each_item() -> None:
    events = stream(
        [
            {"candidates": [{"content": {"parts": [{"text": "Need ", "thought": True}]}}]},
            {"candidates": [{"content": {"parts": [{"text": "a patch.", "thought": True}]}}]},
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [
                                {
                                    "functionCall": {
                                        "name": "apply_patch",
                                        "args": {"input": PATCH},
                                    },
                                    "thoughtSignature": "c2ln",
                                },
                                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                            ]
                        },
                        "finishReason": "STOP",
                    }
                ]
            },
        ],
        custom_tools=["apply_patch"],
    )
    assert types(events)[2:] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    reasoning, custom, call = events[-1]["response"]["output"]
    assert reasoning["summary"][0]["text"] == "Need a patch."
    assert shared.signature_open(reasoning["encrypted_content"]) == ("c2ln", "gemini_api")
    assert custom["input"] == PATCH
    assert orjson.loads(call["arguments"]) == {"city": "Oslo"}
    assert [
        event["output_index"] for event in events if event["type"] == "response.output_item.added"
    ] == [0, 1, 2]


def test_a_stream_cut_at_the_token_limit_ends_with_response_incomplete() -> None:
    events = stream([answer({"text": "Once upon"}, finish="MAX_TOKENS")])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"


def test_a_failed_stream_ends_with_response_failed_carrying_the_error() -> None:
    failure = NoCredentialAvailable("Every credential is cooling down.", retry_after_seconds=12)
    events = stream([{"candidates": [{"content": {"parts": [{"text": "Hal"}]}}]}], end=failure)
    assert types(events)[-2:] == ["response.output_item.done", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "rate_limit_exceeded"
    assert "try again in 12s" in failed["error"]["message"]  # what Codex waits by
    assert failed["output"][0]["status"] == "incomplete"


def test_a_stream_failing_before_any_chunk_still_starts_with_response_created() -> None:
    failure = UpstreamError("upstream broke", status=503)
    events = stream([], end=failure)
    assert types(events) == ["response.created", "response.in_progress", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "server_error"


def test_an_empty_stream_still_completes_with_the_response_id() -> None:
    events = stream([])
    assert types(events) == ["response.created", "response.in_progress", "response.completed"]
    assert events[-1]["response"]["id"].startswith("resp_")


def test_nothing_follows_the_terminal_event() -> None:
    encoder = codec.StreamEncoder(meta=meta())
    encoder.finish()
    assert encoder.feed(answer({"text": "late"})) == b""
    assert encoder.finish() == b""
    assert encoder.failure(UpstreamError("x", status=500)) == b""


def test_keepalive_is_an_sse_comment() -> None:
    assert codec.StreamEncoder(meta=meta()).keepalive() == b": keepalive\n\n"


def test_errors_are_in_openai_shape() -> None:
    assert codec.error_body(NotFound("No such response.", param="id", code="not_found")) == {
        "error": {
            "message": "No such response.",
            "type": "invalid_request_error",
            "param": "id",
            "code": "not_found",
        }
    }


# --- Codex --------------------------------------------------------------------------------------

# The shape of a second-turn request from Codex CLI (codex-rs ResponsesApiRequest), trimmed.
CODEX_REQUEST = {
    "model": GEMINI3,
    "instructions": "You are Codex, based on GPT-5. You are running as a coding agent ...",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "<permissions instructions>..."}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "<environment_context>cwd=/repo</environment_context>",
                }
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Add hello.txt"}],
        },
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Plan"}],
            "encrypted_content": None,
        },
        {
            "type": "function_call",
            "name": "shell",
            "arguments": '{"command":["ls"],"workdir":"/repo"}',
            "call_id": "call_7QdZ",
        },
        {"type": "function_call_output", "call_id": "call_7QdZ", "output": "README.md\n"},
        {"type": "custom_tool_call", "name": "apply_patch", "input": PATCH, "call_id": "call_9XyA"},
        {"type": "custom_tool_call_output", "call_id": "call_9XyA", "output": "Success."},
    ],
    "tools": [
        {
            "type": "function",
            "name": "shell",
            "description": "Runs a shell command and returns its output.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "array", "items": {"type": "string"}},
                    "workdir": {"type": "string"},
                    "timeout_ms": {"type": "number"},
                },
                "required": ["command"],
                "additionalProperties": False,
            },
        },
        {
            "type": "function",
            "name": "update_plan",
            "description": "Updates the task plan.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {
                    "explanation": {"type": "string"},
                    "plan": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "step": {"type": "string"},
                                "status": {"type": "string"},
                            },
                            "required": ["step", "status"],
                            "additionalProperties": False,
                        },
                    },
                },
                "required": ["plan"],
                "additionalProperties": False,
            },
        },
        APPLY_PATCH,
        {"type": "web_search", "external_web_access": False},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199a213-81c0-7800-8aa1-bbab2a035a53",
}


def test_a_recorded_codex_request_maps_cleanly() -> None:
    request = codec.request_to_pivot(CODEX_REQUEST)
    body = request.body
    assert request.stream is True
    assert body["systemInstruction"]["parts"][0]["text"].startswith("You are Codex")
    assert [content["role"] for content in body["contents"]] == [
        "user",
        "model",
        "user",
        "model",
        "user",
    ]
    assert body["contents"][1]["parts"] == [
        {"functionCall": {"name": "shell", "args": {"command": ["ls"], "workdir": "/repo"}}}
    ]
    assert body["contents"][3]["parts"] == [
        {"functionCall": {"name": "apply_patch", "args": {"input": PATCH}}}
    ]
    declarations = body["tools"][0]["functionDeclarations"]
    assert [item["name"] for item in declarations] == ["shell", "update_plan", "apply_patch"]
    # JSON Schema for Gemini's parametersJsonSchema: what Google refuses there is gone.
    assert "$schema" not in orjson.dumps(declarations).decode()
    assert all("parameters" not in item for item in declarations)
    assert body["tools"][1] == {"googleSearch": {}}
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "AUTO"},
        "includeServerSideToolInvocations": True,
    }
    assert body["generationConfig"]["thinkingConfig"]["includeThoughts"] is True

    # Its answer, a patch through the custom tool, streams as Codex and the SDK expect.
    events = stream(
        [
            answer(
                {
                    "functionCall": {"name": "apply_patch", "args": {"input": PATCH}},
                    "thoughtSignature": "c2ln",
                }
            )
        ],
        **request.state,
    )
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert isinstance(completed["response"]["id"], str)
    assert completed["response"]["tools"] == CODEX_REQUEST["tools"]
    done = [event["item"] for event in events if event["type"] == "response.output_item.done"]
    assert [item["type"] for item in done] == ["reasoning", "custom_tool_call"]
    assert done[1]["input"] == PATCH


READ_FILE_NAMESPACE = {
    "type": "namespace",
    "name": "mcp_files",
    "description": "Files of the project",
    "tools": [
        {
            "type": "function",
            "name": "read",
            "description": "Reads a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        }
    ],
}


def test_namespaced_tools_reach_gemini_under_one_name_and_come_back_apart() -> None:
    request = codec.request_to_pivot(
        {"model": FLASH, "input": "Read a.txt", "tools": [READ_FILE_NAMESPACE]}
    )
    [declaration] = request.body["tools"][0]["functionDeclarations"]
    assert declaration["name"] == "mcp_files__read"

    body = respond(
        answer({"functionCall": {"name": "mcp_files__read", "args": {"path": "a.txt"}}}),
        **request.state,
    )
    [call] = body["output"]
    assert (call["namespace"], call["name"]) == ("mcp_files", "read")
    assert body["tools"] == [READ_FILE_NAMESPACE]

    replay = pivot(
        tools=[READ_FILE_NAMESPACE],
        input=[
            {"role": "user", "content": "Read a.txt"},
            call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "hello"},
        ],
    )
    assert replay["contents"][1:] == [
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "mcp_files__read", "args": {"path": "a.txt"}}}],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "mcp_files__read", "response": {"output": "hello"}}}
            ],
        },
    ]
