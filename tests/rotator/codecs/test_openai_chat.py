"""rotator.codecs.openai_chat: OpenAI chat completions to Gemini and back, rule by rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotator.codecs.base import CodecError as TranslationError
from rotator.codecs.openai_chat import (
    ChatStreamTranslator,
    chat_request_to_gemini,
    gemini_response_to_chat,
    usage_from_gemini,
)

MODEL = "gemini-2.5-flash"
COMPLETION_ID = "chatcmpl-abc123"
CREATED = 1_700_000_000
ABSENT = object()  # an expected value meaning "this key must not be in the request"

HI = {"role": "user", "content": "Hi"}
HI_CONTENT = {"role": "user", "parts": [{"text": "Hi"}]}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_DECLARATION = {
    "name": "get_weather",
    "description": "Current weather",
    "parametersJsonSchema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def body_with(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [HI], **fields}


def assistant_calling(*calls: tuple[str, str, str], **extra: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            for call_id, name, args in calls
        ],
        **extra,
    }


def translated_view(body: dict[str, Any]) -> dict[str, Any]:
    result = chat_request_to_gemini(body)
    return {
        "model": result.model,
        "stream": result.stream,
        "include_usage": result.include_usage,
        "n": result.n,
        **result.request,
    }


def chat(response: dict[str, Any]) -> dict[str, Any]:
    return gemini_response_to_chat(
        response, model=MODEL, completion_id=COMPLETION_ID, created=CREATED
    )


def candidate(*parts: dict[str, Any], finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, **extra}
    if finish is not None:
        found["finishReason"] = finish
    return found


def translator(*, include_usage: bool = False) -> ChatStreamTranslator:
    return ChatStreamTranslator(
        model=MODEL, completion_id=COMPLETION_ID, created=CREATED, include_usage=include_usage
    )


def stream_all(
    events: list[dict[str, Any]], *, include_usage: bool = False
) -> list[dict[str, Any]]:
    stream = translator(include_usage=include_usage)
    chunks = [chunk for event in events for chunk in stream.feed(event)]
    return chunks + stream.finish()


def choice_chunks(chunks: list[dict[str, Any]], index: int = 0) -> list[dict[str, Any]]:
    return [choice for chunk in chunks for choice in chunk["choices"] if choice["index"] == index]


# --- request rules --------------------------------------------------------------------------------

REQUEST_ROWS = [
    pytest.param(
        body_with(model="models/gemini-2.5-pro"),
        {"model": "gemini-2.5-pro"},
        id="a models/ prefix is stripped from the model",
    ),
    pytest.param(
        body_with(),
        {"stream": False, "include_usage": False, "n": 1, "generationConfig": ABSENT},
        id="stream defaults to false as in OpenAI",
    ),
    pytest.param(
        body_with(stream=True, stream_options={"include_usage": True}),
        {"stream": True, "include_usage": True},
        id="stream and stream_options.include_usage are reported",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Be brief."},
                HI,
                {"role": "developer", "content": "Answer in French."},
            ],
        },
        {
            "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]},
            "contents": [HI_CONTENT],
        },
        id="system and developer messages become systemInstruction parts in order, not user turns",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
                },
                HI,
            ],
        },
        {"systemInstruction": {"parts": [{"text": "A"}, {"text": "B"}]}},
        id="a system message made of text parts keeps each part",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                HI,
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Bye"},
            ],
        },
        {
            "contents": [
                HI_CONTENT,
                {"role": "model", "parts": [{"text": "Hello"}]},
                {"role": "user", "parts": [{"text": "Bye"}]},
            ],
            "systemInstruction": ABSENT,
        },
        id="user turns stay user and assistant turns become model",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": "d"},
            ],
        },
        {
            "contents": [
                {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
            ]
        },
        id="consecutive same-role turns merge into one content",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    ],
                }
            ],
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "What is this?"},
                        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
                    ],
                }
            ]
        },
        id="a data URL image becomes inlineData",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {
                                "url": "https://example.com/cat.PNG?size=2",
                                "detail": "high",
                            },
                        }
                    ],
                }
            ],
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {
                            "fileData": {
                                "mimeType": "image/png",
                                "fileUri": "https://example.com/cat.PNG?size=2",
                            }
                        }
                    ],
                }
            ]
        },
        id="a remote image URL becomes fileData with the MIME type of its extension",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "http://example.com/cat"}}
                    ],
                }
            ],
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {
                            "fileData": {
                                "mimeType": "image/jpeg",
                                "fileUri": "http://example.com/cat",
                            }
                        }
                    ],
                }
            ]
        },
        id="a remote image URL without a known extension is sent as image/jpeg",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}
                    ],
                }
            ],
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [{"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}}],
                }
            ]
        },
        id="wav input audio becomes audio/wav inlineData",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}}
                    ],
                }
            ],
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [{"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}}],
                }
            ]
        },
        id="mp3 input audio becomes audio/mp3 inlineData",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {
                                "file_data": "data:application/pdf;base64,JVBERi0",
                                "filename": "paper.pdf",
                            },
                        }
                    ],
                }
            ],
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [{"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0"}}],
                }
            ]
        },
        id="a PDF file part becomes application/pdf inlineData",
    ),
    pytest.param(
        body_with(tools=[WEATHER_TOOL]),
        {"tools": [{"functionDeclarations": [WEATHER_DECLARATION]}], "toolConfig": ABSENT},
        id="function tools become functionDeclarations",
    ),
    pytest.param(
        body_with(tools=[WEATHER_TOOL], tool_choice="auto"),
        {"toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}},
        id="tool_choice auto becomes mode AUTO",
    ),
    pytest.param(
        body_with(tools=[WEATHER_TOOL], tool_choice="none"),
        {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}},
        id="tool_choice none becomes mode NONE",
    ),
    pytest.param(
        body_with(tools=[WEATHER_TOOL], tool_choice="required"),
        {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
        id="tool_choice required becomes mode ANY",
    ),
    pytest.param(
        body_with(
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        ),
        {
            "toolConfig": {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
            }
        },
        id="tool_choice naming a function becomes mode ANY allowing only that function",
    ),
    pytest.param(
        body_with(
            functions=[WEATHER_TOOL["function"]],
            function_call={"name": "get_weather"},
        ),
        {
            "tools": [{"functionDeclarations": [WEATHER_DECLARATION]}],
            "toolConfig": {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
            },
        },
        id="the deprecated functions and function_call map like tools and tool_choice",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                HI,
                assistant_calling(("call_1", "get_weather", '{"city": "Paris"}')),
            ],
        },
        {
            "contents": [
                HI_CONTENT,
                {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {
                                "name": "get_weather",
                                "args": {"city": "Paris"},
                                "id": "call_1",
                            }
                        }
                    ],
                },
            ]
        },
        id="assistant tool_calls become functionCall parts with parsed arguments and their id",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [HI, assistant_calling(("call_1", "now", ""))],
        },
        {
            "contents": [
                HI_CONTENT,
                {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "now", "args": {}, "id": "call_1"}}],
                },
            ]
        },
        id="empty tool call arguments are an empty object",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [HI, assistant_calling(("call_x_0_0__thought__c2lnbmF0dXJl", "now", "{}"))],
        },
        {
            "contents": [
                HI_CONTENT,
                {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {
                                "name": "now",
                                "args": {},
                                "id": "call_x_0_0__thought__c2lnbmF0dXJl",
                            }
                        }
                    ],
                },
            ]
        },
        id="an id is only an id: signatures come from Rotator's store, never from the id",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                HI,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_plain",
                            "type": "function",
                            "function": {"name": "now", "arguments": "{}"},
                            "extra_content": {"google": {"thought_signature": "U0lH"}},
                        }
                    ],
                },
            ],
        },
        {
            "contents": [
                HI_CONTENT,
                {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "now", "args": {}, "id": "call_plain"},
                            "thoughtSignature": "U0lH",
                            # Only Google's OpenAI endpoint (the Gemini API) sends them this way.
                            "rotatorSignatureBackend": "gemini_api",
                        }
                    ],
                },
            ]
        },
        id="a thought signature in extra_content goes back as thoughtSignature of the Gemini API",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                HI,
                assistant_calling(("call_1", "get_weather", '{"city": "Paris"}')),
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
        },
        {
            "contents": [
                HI_CONTENT,
                {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {
                                "name": "get_weather",
                                "args": {"city": "Paris"},
                                "id": "call_1",
                            }
                        }
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "get_weather",
                                "response": {"content": "sunny"},
                            }
                        }
                    ],
                },
            ]
        },
        id="a tool message becomes a functionResponse named after the function, not the call id",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                HI,
                assistant_calling(("call_1", "get_weather", "{}")),
                {
                    "role": "tool",
                    "tool_call_id": "call_1",
                    "content": '{"temp": 21, "sky": "clear"}',
                },
            ],
        },
        {
            "contents": [
                HI_CONTENT,
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "get_weather", "args": {}, "id": "call_1"}}
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "get_weather",
                                "response": {"temp": 21, "sky": "clear"},
                            }
                        }
                    ],
                },
            ]
        },
        id="a tool message holding a JSON object is passed as the response itself",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                HI,
                assistant_calling(("call_1", "get_weather", "{}")),
                {"role": "tool", "tool_call_id": "call_1", "content": "[1, 2]"},
            ],
        },
        {
            "contents": [
                HI_CONTENT,
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "get_weather", "args": {}, "id": "call_1"}}
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "get_weather",
                                "response": {"content": "[1, 2]"},
                            }
                        }
                    ],
                },
            ]
        },
        id="a tool message holding JSON that is not an object is wrapped as text",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                HI,
                assistant_calling(
                    ("call_a", "get_weather", '{"city": "Paris"}'),
                    ("call_b", "get_time", '{"zone": "CET"}'),
                ),
                {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
                {"role": "tool", "tool_call_id": "call_a", "content": "rain"},
            ],
        },
        {
            "contents": [
                HI_CONTENT,
                {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {
                                "name": "get_weather",
                                "args": {"city": "Paris"},
                                "id": "call_a",
                            }
                        },
                        {
                            "functionCall": {
                                "name": "get_time",
                                "args": {"zone": "CET"},
                                "id": "call_b",
                            }
                        },
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "get_time",
                                "response": {"content": "12:00"},
                            }
                        },
                        {
                            "functionResponse": {
                                "name": "get_weather",
                                "response": {"content": "rain"},
                            }
                        },
                    ],
                },
            ]
        },
        id="consecutive tool messages merge into one user content",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                HI,
                {"role": "assistant", "function_call": {"name": "now", "arguments": "{}"}},
                {"role": "function", "name": "now", "content": "noon"},
            ],
        },
        {
            "contents": [
                HI_CONTENT,
                {"role": "model", "parts": [{"functionCall": {"name": "now", "args": {}}}]},
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "now", "response": {"content": "noon"}}}
                    ],
                },
            ]
        },
        id="a deprecated function message becomes a functionResponse named by the message",
    ),
    pytest.param(
        body_with(response_format={"type": "json_object"}),
        {"generationConfig": {"responseMimeType": "application/json"}},
        id="response_format json_object asks for JSON",
    ),
    pytest.param(
        body_with(
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"answer": {"type": "string", "title": "Answer"}},
                        "required": ["answer"],
                        "additionalProperties": False,
                    },
                },
            }
        ),
        {
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": {
                    "type": "object",
                    "properties": {"answer": {"type": "string", "title": "Answer"}},
                    "required": ["answer"],
                    "additionalProperties": False,
                },
            }
        },
        id="response_format json_schema sends the schema as responseJsonSchema",
    ),
    pytest.param(
        body_with(response_format={"type": "text"}),
        {"generationConfig": ABSENT},
        id="response_format text adds nothing",
    ),
    pytest.param(
        body_with(max_tokens=100),
        {"generationConfig": {"maxOutputTokens": 100}},
        id="max_tokens becomes maxOutputTokens",
    ),
    pytest.param(
        body_with(max_tokens=100, max_completion_tokens=200),
        {"generationConfig": {"maxOutputTokens": 200}},
        id="max_completion_tokens becomes maxOutputTokens and wins over max_tokens",
    ),
    pytest.param(
        body_with(
            temperature=0.2,
            top_p=0.9,
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            logprobs=True,
            top_logprobs=3,
        ),
        {
            "generationConfig": {
                "temperature": 0.2,
                "topP": 0.9,
                "seed": 7,
                "presencePenalty": 0.5,
                "frequencyPenalty": -0.5,
                "responseLogprobs": True,
                "logprobs": 3,
            }
        },
        id="sampling parameters take their Gemini names",
    ),
    pytest.param(
        body_with(stop="END"),
        {"generationConfig": {"stopSequences": ["END"]}},
        id="a stop string becomes a one-item stopSequences list",
    ),
    pytest.param(
        body_with(stop=["END", "STOP"]),
        {"generationConfig": {"stopSequences": ["END", "STOP"]}},
        id="a stop list becomes stopSequences",
    ),
    pytest.param(
        body_with(n=3),
        {"n": 3, "generationConfig": {"candidateCount": 3}},
        id="n is reported and sent as candidateCount",
    ),
    pytest.param(
        body_with(reasoning_effort="low"),
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}},
        id="reasoning_effort low on gemini-2.5 is a 1024 token budget with thoughts",
    ),
    pytest.param(
        body_with(reasoning_effort="medium"),
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True}}},
        id="reasoning_effort medium on gemini-2.5 is an 8192 token budget",
    ),
    pytest.param(
        body_with(reasoning_effort="high"),
        {
            "generationConfig": {
                "thinkingConfig": {"thinkingBudget": 24576, "includeThoughts": True}
            }
        },
        id="reasoning_effort high on gemini-2.5 is a 24576 token budget",
    ),
    pytest.param(
        body_with(reasoning_effort="minimal"),
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 512, "includeThoughts": True}}},
        id="reasoning_effort minimal on gemini-2.5 is a 512 token budget",
    ),
    pytest.param(
        body_with(reasoning_effort="none"),
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
        id="reasoning_effort none on gemini-2.5 flash switches thinking off",
    ),
    pytest.param(
        body_with(model="gemini-2.5-pro", reasoning_effort="none"),
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 128}}},
        id="reasoning_effort none on gemini-2.5 pro asks for its smallest budget",
    ),
    pytest.param(
        body_with(model="gemini-3-pro-preview", reasoning_effort="low"),
        {"generationConfig": {"thinkingConfig": {"thinkingLevel": "low", "includeThoughts": True}}},
        id="reasoning_effort low on gemini-3 pro is thinking level low",
    ),
    pytest.param(
        body_with(model="gemini-3-pro-preview", reasoning_effort="medium"),
        {
            "generationConfig": {
                "thinkingConfig": {"thinkingLevel": "high", "includeThoughts": True}
            }
        },
        id="reasoning_effort medium on gemini-3 pro rounds up to thinking level high",
    ),
    pytest.param(
        body_with(model="gemini-3-pro-preview", reasoning_effort="high"),
        {
            "generationConfig": {
                "thinkingConfig": {"thinkingLevel": "high", "includeThoughts": True}
            }
        },
        id="reasoning_effort high on gemini-3 pro is thinking level high",
    ),
    pytest.param(
        body_with(model="gemini-3-flash-preview", reasoning_effort="medium"),
        {
            "generationConfig": {
                "thinkingConfig": {"thinkingLevel": "medium", "includeThoughts": True}
            }
        },
        id="reasoning_effort medium on gemini-3 flash is thinking level medium",
    ),
    pytest.param(
        body_with(model="gemini-3-flash-preview", reasoning_effort="none"),
        {"generationConfig": {"thinkingConfig": {"thinkingLevel": "minimal"}}},
        id="reasoning_effort none on gemini-3 flash is the minimal level without thoughts",
    ),
    pytest.param(
        body_with(
            reasoning_effort="high",
            google={"thinking_config": {"thinking_budget": 300, "include_thoughts": False}},
        ),
        {"generationConfig": {"thinkingConfig": {"thinkingBudget": 300, "includeThoughts": False}}},
        id="google.thinking_config overrides reasoning_effort with camelCase keys",
    ),
    pytest.param(
        body_with(
            model="gemini-3-pro-preview",
            extra_body={"google": {"thinking_config": {"thinking_level": "low"}}},
        ),
        {"generationConfig": {"thinkingConfig": {"thinkingLevel": "low"}}},
        id="extra_body.google.thinking_config is honoured as well",
    ),
    pytest.param(
        body_with(
            google={
                "safety_settings": [
                    {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
                ]
            }
        ),
        {
            "safetySettings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
            ]
        },
        id="google.safety_settings pass through as safetySettings",
    ),
]


@pytest.mark.parametrize(("body", "expected"), REQUEST_ROWS)
def test_each_request_rule_translates_to_its_gemini_fragment(
    body: dict[str, Any], expected: dict[str, Any]
) -> None:
    view = translated_view(body)
    for key, value in expected.items():
        if value is ABSENT:
            assert key not in view
        else:
            assert view[key] == value


# --- tool parameter schemas -----------------------------------------------------------------------
# Tools go to Gemini as JSON Schema (parametersJsonSchema), which takes what MCP servers write;
# only what Google refuses there is changed (rotator.codecs.schema.json_schema_for_gemini).

SCHEMA_ROWS = [
    pytest.param(
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"path": {"type": "string", "format": "uri"}},
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"path": {"type": "string", "format": "uri"}},
            "additionalProperties": False,
        },
        id="the $schema URL goes and everything JSON Schema says stays, in order",
    ),
    pytest.param(
        {
            "type": "object",
            "properties": {"node": {"$ref": "#/definitions/Node", "title": "x"}},
            "definitions": {"Node": {"type": "object", "properties": {"id": {"type": "string"}}}},
        },
        {
            "type": "object",
            "properties": {"node": {"$ref": "#/$defs/Node"}},
            "$defs": {"Node": {"type": "object", "properties": {"id": {"type": "string"}}}},
        },
        id="definitions become $defs and a $ref keeps only the siblings Google allows",
    ),
    pytest.param(
        {
            "type": "object",
            "properties": {"x": {"$ref": "#/$defs/Missing", "description": "d"}},
        },
        {"type": "object", "properties": {"x": {"description": "d"}}},
        id="a $ref to nothing becomes an unconstrained node",
    ),
    pytest.param(
        {"type": "object", "properties": {"any": True, "never": False}},
        {"type": "object", "properties": {"any": {}, "never": {"not": {}}}},
        id="properties declared true or false become objects",
    ),
    pytest.param(
        {
            "type": "object",
            "properties": {
                "tags": {"type": "array"},
                "meta": {"type": "object", "properties": {}},
                "value": {},
            },
        },
        {
            "type": "object",
            "properties": {
                "tags": {"type": "array"},
                "meta": {"type": "object", "properties": {}},
                "value": {},
            },
        },
        id="arrays without items, empty nested objects and untyped nodes pass as they are",
    ),
    pytest.param({"type": "object", "properties": {}}, ABSENT, id="no properties, no schema"),
]


def schema_of(parameters: dict[str, Any]) -> Any:
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    [declaration] = chat_request_to_gemini(body_with(tools=[tool])).request["tools"][0][
        "functionDeclarations"
    ]
    return declaration.get("parametersJsonSchema", ABSENT)


@pytest.mark.parametrize(("parameters", "expected"), SCHEMA_ROWS)
def test_tool_parameter_schemas_are_sent_as_json_schema_gemini_accepts(
    parameters: dict[str, Any], expected: Any
) -> None:
    assert schema_of(parameters) == expected


def test_a_tool_without_parameters_is_declared_without_parameters() -> None:
    tool = {"type": "function", "function": {"name": "now"}}
    request = chat_request_to_gemini(body_with(tools=[tool])).request
    assert request["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


def test_a_lone_system_message_becomes_the_user_turn() -> None:
    body = {"model": MODEL, "messages": [{"role": "system", "content": "Say hi."}]}
    request = chat_request_to_gemini(body).request
    assert request["contents"] == [{"role": "user", "parts": [{"text": "Say hi."}]}]
    assert "systemInstruction" not in request


def test_translation_leaves_the_client_body_unchanged() -> None:
    body = body_with(tools=[WEATHER_TOOL], response_format={"type": "json_object"})
    before = json.dumps(body, sort_keys=True)
    chat_request_to_gemini(body)
    assert json.dumps(body, sort_keys=True) == before


# --- request errors -------------------------------------------------------------------------------

DEEP_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_node = DEEP_SCHEMA
for _ in range(100):
    _child: dict[str, Any] = {"type": "object", "properties": {}}
    _node["properties"]["x"] = _child
    _node = _child

ERROR_ROWS = [
    pytest.param(["not", "an", "object"], None, id="a body that is not an object"),
    pytest.param({"messages": [HI]}, "model", id="a missing model"),
    pytest.param({"model": 5, "messages": [HI]}, "model", id="a model that is not a string"),
    pytest.param(
        {"model": "models/", "messages": [HI]}, "model", id="a model that is only the prefix"
    ),
    pytest.param({"model": MODEL}, "messages", id="missing messages"),
    pytest.param({"model": MODEL, "messages": []}, "messages", id="empty messages"),
    pytest.param(
        {"model": MODEL, "messages": "Hi"}, "messages", id="messages that are not an array"
    ),
    pytest.param(
        {"model": MODEL, "messages": ["Hi"]}, "messages[0]", id="a message that is not an object"
    ),
    pytest.param(
        {"model": MODEL, "messages": [{"role": "robot", "content": "Hi"}]},
        "messages[0].role",
        id="an unknown role",
    ),
    pytest.param(
        {"model": MODEL, "messages": [HI, {"content": "Hi"}]},
        "messages[1].role",
        id="a missing role",
    ),
    pytest.param(
        {"model": MODEL, "messages": [{"role": "user", "content": 42}]},
        "messages[0].content",
        id="content that is neither string nor array",
    ),
    pytest.param(
        {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "video_url"}]}]},
        "messages[0].content[0].type",
        id="an unknown content part type",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "system",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
                    ],
                },
                HI,
            ],
        },
        "messages[0].content[0].type",
        id="an image in a system message",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}],
                }
            ],
        },
        "messages[0].content[0].image_url.url",
        id="an image URL that is neither data nor http",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}],
                }
            ],
        },
        "messages[0].content[0].image_url.url",
        id="a data URL that is not base64",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "AA", "format": "m4b"}}
                    ],
                }
            ],
        },
        "messages[0].content[0].input_audio.format",
        id="an unknown audio format",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}
            ],
        },
        "messages[0].content[0].file.file_id",
        id="an uploaded file id",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [HI, assistant_calling(("call_1", "get_weather", "{city: Paris"))],
        },
        "messages[1].tool_calls[0].function.arguments",
        id="tool call arguments that are not JSON",
    ),
    pytest.param(
        {"model": MODEL, "messages": [HI, assistant_calling(("call_1", "get_weather", "[1]"))]},
        "messages[1].tool_calls[0].function.arguments",
        id="tool call arguments that are JSON but not an object",
    ),
    pytest.param(
        {
            "model": MODEL,
            "messages": [
                HI,
                assistant_calling(("call_1", "get_weather", "{}")),
                {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
            ],
        },
        "messages[2].tool_call_id",
        id="a tool message answering an unknown tool call id",
    ),
    pytest.param(
        {"model": MODEL, "messages": [HI, {"role": "tool", "content": "sunny"}]},
        "messages[1].tool_call_id",
        id="a tool message without a tool call id",
    ),
    pytest.param(
        {"model": MODEL, "messages": [HI, {"role": "function", "content": "noon"}]},
        "messages[1].name",
        id="a function message without a name",
    ),
    pytest.param(body_with(temperature="hot"), "temperature", id="a temperature that is a word"),
    pytest.param(body_with(temperature=3), "temperature", id="a temperature above 2"),
    pytest.param(body_with(temperature=True), "temperature", id="a temperature that is a boolean"),
    pytest.param(body_with(top_p=1.5), "top_p", id="a top_p above 1"),
    pytest.param(body_with(max_tokens="many"), "max_tokens", id="max_tokens that is a word"),
    pytest.param(body_with(max_tokens=0), "max_tokens", id="max_tokens of zero"),
    pytest.param(
        body_with(max_completion_tokens=1.5),
        "max_completion_tokens",
        id="max_completion_tokens that is not an integer",
    ),
    pytest.param(body_with(stop=42), "stop", id="stop that is a number"),
    pytest.param(body_with(stop=["END", 1]), "stop", id="stop with a non-string item"),
    pytest.param(body_with(n=0), "n", id="n of zero"),
    pytest.param(body_with(seed="x"), "seed", id="a seed that is a word"),
    pytest.param(
        body_with(presence_penalty=5), "presence_penalty", id="a presence penalty above 2"
    ),
    pytest.param(
        body_with(frequency_penalty="x"), "frequency_penalty", id="a word frequency penalty"
    ),
    pytest.param(body_with(logprobs="yes"), "logprobs", id="logprobs that is not a boolean"),
    pytest.param(body_with(top_logprobs=30), "top_logprobs", id="top_logprobs above 20"),
    pytest.param(body_with(stream="yes"), "stream", id="stream that is not a boolean"),
    pytest.param(
        body_with(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
        id="include_usage that is not a boolean",
    ),
    pytest.param(body_with(tools={"type": "function"}), "tools", id="tools that are not an array"),
    pytest.param(
        body_with(tools=[{"type": "code_interpreter"}]),
        "tools[0].type",
        id="a tool that is not a function",
    ),
    pytest.param(
        body_with(tools=[{"type": "function", "function": {"description": "x"}}]),
        "tools[0].function.name",
        id="a function tool without a name",
    ),
    pytest.param(
        body_with(tools=[{"type": "function", "function": {"name": "f", "parameters": "none"}}]),
        "tools[0].function.parameters",
        id="function parameters that are not an object",
    ),
    pytest.param(
        body_with(
            tools=[{"type": "function", "function": {"name": "f", "parameters": DEEP_SCHEMA}}]
        ),
        "tools[0].function.parameters",
        id="function parameters nested beyond reason",
    ),
    pytest.param(
        body_with(
            tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}
        ),
        "tool_choice",
        id="tool_choice naming a function that is not a tool",
    ),
    pytest.param(
        body_with(tools=[WEATHER_TOOL], tool_choice="sometimes"),
        "tool_choice",
        id="tool_choice that is no known mode",
    ),
    pytest.param(
        body_with(tool_choice="required"), "tool_choice", id="tool_choice required without tools"
    ),
    pytest.param(
        body_with(response_format={"type": "yaml"}),
        "response_format.type",
        id="an unknown response_format type",
    ),
    pytest.param(
        body_with(response_format={"type": "json_schema", "json_schema": "S"}),
        "response_format.json_schema",
        id="a json_schema response_format without a schema object",
    ),
    pytest.param(
        body_with(reasoning_effort="extreme"), "reasoning_effort", id="an unknown reasoning_effort"
    ),
    pytest.param(
        body_with(google={"thinking_config": "high"}),
        "google.thinking_config",
        id="a thinking_config that is not an object",
    ),
    pytest.param(
        body_with(google={"thinking_config": {"thinking_budget": "lots"}}),
        "google.thinking_config.thinking_budget",
        id="a thinking budget that is not an integer",
    ),
    pytest.param(
        body_with(extra_body={"google": "yes"}),
        "extra_body.google",
        id="extra_body.google not an object",
    ),
]


@pytest.mark.parametrize(("body", "param"), ERROR_ROWS)
def test_each_invalid_request_raises_translation_error_naming_the_param(
    body: Any, param: str | None
) -> None:
    with pytest.raises(TranslationError) as caught:
        chat_request_to_gemini(body)
    assert caught.value.param == param
    assert str(caught.value) == caught.value.message


def test_translation_error_is_a_value_error_carrying_message_and_param() -> None:
    error = TranslationError("bad", param="x")
    assert isinstance(error, ValueError)
    assert (error.message, error.param) == ("bad", "x")
    assert TranslationError("bad").param is None


# --- response rules -------------------------------------------------------------------------------

# Ids are short and plain whatever the signature (the pipeline keeps signatures server-side).
SIGNED_CALL_ID = "call_abc123_0_0"

RESPONSE_ROWS = [
    pytest.param(
        {"candidates": [candidate({"text": "Hello, "}, {"text": "world"})]},
        {"role": "assistant", "content": "Hello, world"},
        "stop",
        id="text parts join into the message content",
    ),
    pytest.param(
        {"candidates": [candidate({"text": "Let me think", "thought": True}, {"text": "42"})]},
        {"role": "assistant", "content": "42", "reasoning_content": "Let me think"},
        "stop",
        id="thought parts become reasoning_content and stay out of content",
    ),
    pytest.param(
        {
            "candidates": [
                candidate({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}})
            ]
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc123_0_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        "tool_calls",
        id="a functionCall becomes a tool call with JSON arguments and null content",
    ),
    pytest.param(
        {
            "candidates": [
                candidate(
                    {"text": "Checking."},
                    {"functionCall": {"name": "now", "args": {}}, "thoughtSignature": "U0lHTg=="},
                )
            ]
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": SIGNED_CALL_ID,
                    "type": "function",
                    "function": {"name": "now", "arguments": "{}"},
                    "extra_content": {"google": {"thought_signature": "U0lHTg=="}},
                }
            ],
        },
        "tool_calls",
        id="a thought signature on a functionCall is kept in extra_content, never in the id",
    ),
    pytest.param(
        {"candidates": [candidate({"text": "cut"}, finish="MAX_TOKENS")]},
        {"role": "assistant", "content": "cut"},
        "length",
        id="MAX_TOKENS finishes with length",
    ),
    pytest.param(
        {"candidates": [candidate(finish="MALFORMED_FUNCTION_CALL")]},
        {"role": "assistant", "content": ""},
        "stop",
        id="MALFORMED_FUNCTION_CALL finishes with stop and no tool calls",
    ),
    pytest.param(
        {"candidates": [candidate({"text": "hm"}, finish="OTHER")]},
        {"role": "assistant", "content": "hm"},
        "stop",
        id="OTHER finishes with stop",
    ),
    pytest.param(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}},
        {"role": "assistant", "content": ""},
        "content_filter",
        id="a blocked prompt without candidates finishes with content_filter and empty content",
    ),
    pytest.param(
        {
            "candidates": [
                candidate({"inlineData": {"mimeType": "image/png", "data": "AA"}}, {"text": "done"})
            ]
        },
        {"role": "assistant", "content": "done"},
        "stop",
        id="parts with no place in a chat message are skipped",
    ),
]


@pytest.mark.parametrize(("response", "message", "finish_reason"), RESPONSE_ROWS)
def test_each_response_rule_translates_to_its_openai_choice(
    response: dict[str, Any], message: dict[str, Any], finish_reason: str
) -> None:
    (choice,) = chat(response)["choices"]
    assert choice["index"] == 0
    assert choice["message"] == message
    assert choice["finish_reason"] == finish_reason


@pytest.mark.parametrize(
    "reason",
    ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"],
)
def test_every_filtering_finish_reason_becomes_content_filter(reason: str) -> None:
    (choice,) = chat({"candidates": [candidate(finish=reason)]})["choices"]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == ""


def test_the_completion_carries_id_object_created_model_and_usage() -> None:
    completion = chat(
        {
            "candidates": [candidate({"text": "Hi"})],
            "usageMetadata": {
                "promptTokenCount": 3,
                "candidatesTokenCount": 1,
                "totalTokenCount": 4,
            },
        }
    )
    assert {key: completion[key] for key in ("id", "object", "created", "model")} == {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
    }
    assert completion["usage"]["total_tokens"] == 4


def test_several_candidates_become_several_choices_with_their_index() -> None:
    completion = chat(
        {
            "candidates": [
                candidate({"text": "one"}),
                candidate({"text": "two"}, index=1),
                candidate({"functionCall": {"name": "f", "args": {}}}, index=2),
            ]
        }
    )
    choices = completion["choices"]
    assert [choice["index"] for choice in choices] == [0, 1, 2]
    assert [choice["message"]["content"] for choice in choices] == ["one", "two", None]
    assert choices[2]["message"]["tool_calls"][0]["id"] == "call_abc123_2_0"


def test_logprobs_become_openai_token_logprobs() -> None:
    response = {
        "candidates": [
            candidate(
                {"text": "Hi"},
                logprobsResult={
                    "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}],
                    "topCandidates": [
                        {
                            "candidates": [
                                {"token": "Hi", "logProbability": -0.1},
                                {"token": "Yo", "logProbability": -2.5},
                            ]
                        }
                    ],
                },
            )
        ]
    }
    (choice,) = chat(response)["choices"]
    assert choice["logprobs"] == {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                    {"token": "Yo", "logprob": -2.5, "bytes": [89, 111]},
                ],
            }
        ],
        "refusal": None,
    }


USAGE_ROWS = [
    pytest.param(
        {
            "promptTokenCount": 10,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 7,
            "totalTokenCount": 22,
            "cachedContentTokenCount": 4,
        },
        {
            "prompt_tokens": 10,
            "completion_tokens": 12,
            "total_tokens": 22,
            "completion_tokens_details": {"reasoning_tokens": 7},
            "prompt_tokens_details": {"cached_tokens": 4},
        },
        id="completion counts candidates plus thoughts, with reasoning and cached tokens",
    ),
    pytest.param(
        {"promptTokenCount": 10, "candidatesTokenCount": 5},
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        id="a missing total is the sum and missing counts are zero",
    ),
    pytest.param(None, None, id="no usage metadata is no usage"),
]


@pytest.mark.parametrize(("metadata", "expected"), USAGE_ROWS)
def test_usage_maps_gemini_counts_to_openai(metadata: Any, expected: Any) -> None:
    assert usage_from_gemini(metadata) == expected


# --- streaming ------------------------------------------------------------------------------------


def test_the_first_stream_chunk_carries_the_assistant_role_and_text_follows_as_content() -> None:
    chunks = stream_all(
        [
            {"candidates": [candidate({"text": "Hel"}, finish=None)]},
            {"candidates": [candidate({"text": "lo"}, finish="STOP")]},
        ]
    )
    deltas = [choice["delta"] for choice in choice_chunks(chunks)]
    assert deltas == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {}]


def test_finish_reason_is_null_until_the_last_chunk_of_a_choice() -> None:
    chunks = stream_all(
        [
            {"candidates": [candidate({"text": "a"}, finish=None)]},
            {"candidates": [candidate({"text": "b"}, finish=None)]},
            {"candidates": [candidate(finish="STOP")]},
        ]
    )
    reasons = [choice["finish_reason"] for choice in choice_chunks(chunks)]
    assert reasons == [None, None, "stop"]


def test_streamed_thoughts_arrive_as_reasoning_content() -> None:
    chunks = stream_all(
        [
            {"candidates": [candidate({"text": "Pondering", "thought": True}, finish=None)]},
            {"candidates": [candidate({"text": "Answer"}, finish="STOP")]},
        ]
    )
    deltas = [choice["delta"] for choice in choice_chunks(chunks)]
    assert deltas == [
        {"role": "assistant", "reasoning_content": "Pondering"},
        {"content": "Answer"},
        {},
    ]


def test_parallel_tool_calls_stream_with_their_own_indices() -> None:
    chunks = stream_all(
        [
            {
                "candidates": [
                    candidate(
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                    )
                ]
            }
        ]
    )
    choices = choice_chunks(chunks)
    calls = [call for choice in choices for call in choice["delta"].get("tool_calls", [])]
    assert calls == [
        {
            "index": 0,
            "id": "call_abc123_0_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "index": 1,
            "id": "call_abc123_0_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
    ]
    assert choices[0]["delta"]["role"] == "assistant"
    assert choices[-1] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}


def test_tool_call_indices_keep_counting_across_stream_events() -> None:
    chunks = stream_all(
        [
            {"candidates": [candidate({"text": "Let me check."}, finish=None)]},
            {"candidates": [candidate({"functionCall": {"name": "a", "args": {}}}, finish=None)]},
            {"candidates": [candidate({"functionCall": {"name": "b", "args": {}}}, finish="STOP")]},
        ]
    )
    calls = [
        call for choice in choice_chunks(chunks) for call in choice["delta"].get("tool_calls", [])
    ]
    assert [(call["index"], call["function"]["name"]) for call in calls] == [(0, "a"), (1, "b")]
    assert choice_chunks(chunks)[-1]["finish_reason"] == "tool_calls"


def test_several_streamed_candidates_each_get_a_role_indices_and_a_finish() -> None:
    chunks = stream_all(
        [
            {
                "candidates": [
                    candidate({"text": "one"}, finish=None),
                    candidate({"functionCall": {"name": "f", "args": {}}}, finish=None, index=1),
                ]
            },
            {
                "candidates": [
                    candidate(finish="STOP"),
                    candidate({"functionCall": {"name": "g", "args": {}}}, finish="STOP", index=1),
                ]
            },
        ]
    )
    first, second = choice_chunks(chunks, 0), choice_chunks(chunks, 1)
    assert first[0]["delta"] == {"role": "assistant", "content": "one"}
    assert first[-1]["finish_reason"] == "stop"
    assert second[0]["delta"]["role"] == "assistant"
    indices = [call["index"] for choice in second for call in choice["delta"].get("tool_calls", [])]
    assert indices == [0, 1]
    assert second[-1]["finish_reason"] == "tool_calls"


def test_every_chunk_shares_id_created_model_and_object() -> None:
    chunks = stream_all(
        [
            {"candidates": [candidate({"text": "a"}, finish=None)]},
            {"candidates": [candidate({"text": "b"})], "usageMetadata": {"promptTokenCount": 1}},
        ],
        include_usage=True,
    )
    assert len(chunks) == 4
    for chunk in chunks:
        assert (chunk["id"], chunk["object"], chunk["created"], chunk["model"]) == (
            COMPLETION_ID,
            "chat.completion.chunk",
            CREATED,
            MODEL,
        )


@pytest.mark.parametrize("include_usage", [True, False])
def test_the_usage_chunk_comes_only_when_asked_for_but_usage_is_always_kept(
    include_usage: bool,
) -> None:
    stream = translator(include_usage=include_usage)
    stream.feed(
        {
            "candidates": [candidate({"text": "a"}, finish=None)],
            "usageMetadata": {"promptTokenCount": 3},
        }
    )
    stream.feed(
        {
            "candidates": [candidate({"text": "b"})],
            "usageMetadata": {
                "promptTokenCount": 3,
                "candidatesTokenCount": 2,
                "thoughtsTokenCount": 4,
                "totalTokenCount": 9,
            },
        }
    )
    closing = stream.finish()
    assert stream.usage == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    if include_usage:
        assert closing == [
            {
                "id": COMPLETION_ID,
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "choices": [],
                "usage": {
                    "prompt_tokens": 3,
                    "completion_tokens": 6,
                    "total_tokens": 9,
                    "completion_tokens_details": {"reasoning_tokens": 4},
                },
            }
        ]
    else:
        assert closing == []


def test_chunks_carry_usage_null_before_the_usage_chunk_when_usage_is_asked_for() -> None:
    event = {"candidates": [candidate({"text": "a"})], "usageMetadata": {"promptTokenCount": 1}}
    chunks = stream_all([event], include_usage=True)
    assert [chunk["usage"] is None for chunk in chunks] == [True, True, False]
    assert "usage" not in stream_all([{"candidates": [candidate({"text": "a"})]}])[0]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter")],
)
def test_streamed_finish_reasons_are_honest(reason: str, expected: str) -> None:
    chunks = stream_all([{"candidates": [candidate({"text": "a"}, finish=reason)]}])
    assert choice_chunks(chunks)[-1]["finish_reason"] == expected


def test_a_blocked_prompt_in_a_stream_finishes_with_content_filter() -> None:
    chunks = stream_all([{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}])
    assert [choice for chunk in chunks for choice in chunk["choices"]] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]


def test_a_stream_ending_without_a_finish_reason_is_closed_by_finish() -> None:
    stream = translator()
    stream.feed({"candidates": [candidate({"text": "partial"}, finish=None)]})
    closing = stream.finish()
    assert [choice for chunk in closing for choice in chunk["choices"]] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert stream.finish() == []


def test_an_empty_stream_still_yields_one_finished_choice() -> None:
    chunks = stream_all([])
    assert choice_chunks(chunks) == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]


def test_a_streamed_thought_signature_is_kept_on_its_tool_call() -> None:
    chunks = stream_all(
        [
            {
                "candidates": [
                    candidate(
                        {
                            "functionCall": {"name": "now", "args": {}},
                            "thoughtSignature": "U0lHTg==",
                        }
                    )
                ]
            }
        ]
    )
    (call,) = [
        call for choice in choice_chunks(chunks) for call in choice["delta"].get("tool_calls", [])
    ]
    assert call["id"] == SIGNED_CALL_ID
    assert call["extra_content"] == {"google": {"thought_signature": "U0lHTg=="}}


# --- round trips ----------------------------------------------------------------------------------


def test_a_full_tool_round_trip_names_the_function_in_the_function_response() -> None:
    first_body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
    }
    first = chat_request_to_gemini(first_body).request
    assert first["tools"] == [{"functionDeclarations": [WEATHER_DECLARATION]}]

    answer = chat(
        {
            "candidates": [
                candidate({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}})
            ]
        }
    )
    message = answer["choices"][0]["message"]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    (tool_call,) = message["tool_calls"]

    second_body = {
        **first_body,
        "messages": [
            *first_body["messages"],
            message,
            {"role": "tool", "tool_call_id": tool_call["id"], "content": "18C and sunny"},
        ],
    }
    second = chat_request_to_gemini(second_body).request
    assert second["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"city": "Paris"},
                        "id": tool_call["id"],
                    }
                }
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"content": "18C and sunny"},
                    }
                }
            ],
        },
    ]


# --- properties -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


content_parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file", "refusal", "video"])},
    optional={
        "text": json_values,
        "refusal": json_values,
        "image_url": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "url": st.sampled_from(
                        ["data:image/png;base64,AA", "https://x.y/a.gif", "data:,", "http://["]
                    )
                }
            ),
        ),
        "input_audio": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"data": json_values, "format": st.sampled_from(["wav", "mp3", "m4a"])}
            ),
        ),
        "file": st.one_of(json_values, st.fixed_dictionaries({"file_data": json_values})),
    },
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.sampled_from(["call_1", "call_2", "call_x__thought__c2ln", ""]),
            "function": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {
                        "name": st.sampled_from(["f", "g", ""]),
                        "arguments": st.one_of(
                            json_values, st.sampled_from(["{}", '{"a": 1}', "[", '"s"'])
                        ),
                    }
                ),
            ),
        },
        optional={"type": st.sampled_from(["function", "custom"]), "extra_content": json_values},
    ),
    max_size=3,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(
                ["system", "developer", "user", "assistant", "tool", "function", "x"]
            )
        },
        optional={
            "content": st.one_of(
                json_values, st.text(max_size=8), st.lists(content_parts, max_size=3)
            ),
            "tool_calls": st.one_of(json_values, tool_calls),
            "tool_call_id": st.sampled_from(["call_1", "call_2", "call_9"]),
            "name": json_values,
            "function_call": json_values,
            "refusal": json_values,
        },
    ),
    max_size=5,
)
schemas: st.SearchStrategy[Any] = st.deferred(
    lambda: st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "type": st.one_of(
                    st.sampled_from(["object", "string", "integer", "array", "null"]),
                    st.lists(st.sampled_from(["string", "null", "number"]), max_size=3),
                    json_values,
                ),
                "properties": st.dictionaries(st.text(max_size=4), schemas, max_size=3),
                "items": schemas,
                "anyOf": st.lists(schemas, max_size=3),
                "allOf": st.lists(schemas, max_size=2),
                "$ref": st.sampled_from(["#/$defs/A", "#/definitions/B", "#/x"]),
                "$defs": st.dictionaries(st.sampled_from(["A", "B"]), schemas, max_size=2),
                "enum": json_values,
                "const": json_values,
                "required": json_values,
                "format": st.sampled_from(["uri", "date-time", "int64"]),
            },
        ),
    )
)


def plausible_or_junk(*values: Any) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes arbitrary JSON, so deep rules are reached too."""
    return st.one_of(st.sampled_from(values), st.sampled_from(values), json_values)


function_tools = st.lists(
    st.fixed_dictionaries(
        {"type": plausible_or_junk("function")},
        optional={
            "function": st.fixed_dictionaries(
                {"name": st.sampled_from(["f", "g"])}, optional={"parameters": schemas}
            )
        },
    ),
    max_size=2,
)
structured_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["gemini-2.5-pro", "models/gemini-3-flash-preview", "x"]),
        "messages": st.builds(lambda rest: [HI, *rest], messages),
    },
    optional={
        "tools": st.one_of(function_tools, function_tools, json_values),
        "tool_choice": st.one_of(
            plausible_or_junk("auto", "none", "required"),
            st.fixed_dictionaries(
                {
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries({"name": plausible_or_junk("f", "h")}),
                }
            ),
        ),
        "response_format": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"type": st.sampled_from(["text", "json_object", "json_schema"])},
                optional={
                    "json_schema": st.one_of(
                        json_values, st.fixed_dictionaries({"schema": schemas})
                    )
                },
            ),
        ),
        "reasoning_effort": plausible_or_junk("none", "minimal", "low", "medium", "high"),
        "google": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {},
                optional={
                    "thinking_config": st.one_of(
                        json_values,
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "thinking_budget": json_values,
                                "include_thoughts": json_values,
                                "thinking_level": json_values,
                            },
                        ),
                    ),
                    "safety_settings": st.one_of(json_values, st.lists(json_values, max_size=2)),
                },
            ),
        ),
        "extra_body": json_values,
        "temperature": plausible_or_junk(0, 0.7, 2),
        "top_p": plausible_or_junk(0.5, 1),
        "max_tokens": plausible_or_junk(1, 100),
        "max_completion_tokens": plausible_or_junk(1, 100),
        "stop": plausible_or_junk("END", ["a", "b"], ""),
        "n": plausible_or_junk(1, 2),
        "seed": plausible_or_junk(0, 42),
        "stream": plausible_or_junk(True, False),
        "stream_options": plausible_or_junk({"include_usage": True}, {}),
        "logprobs": plausible_or_junk(True, False),
        "top_logprobs": plausible_or_junk(0, 5),
        "presence_penalty": plausible_or_junk(-1, 1.5),
        "frequency_penalty": plausible_or_junk(0, 2),
        "functions": json_values,
        "function_call": plausible_or_junk("auto", {"name": "f"}),
    },
)


def _translates_or_refuses(body: Any) -> None:
    try:
        result = chat_request_to_gemini(body)
    except TranslationError:
        return
    json.dumps(result.request)  # what Rotator sends upstream must be plain JSON
    assert result.request["contents"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_body_either_translates_or_raises_translation_error(body: Any) -> None:
    _translates_or_refuses(body)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(structured_bodies)
def test_any_request_shaped_body_either_translates_or_raises_translation_error(body: Any) -> None:
    _translates_or_refuses(body)


gemini_parts = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "text": json_values,
            "thought": json_values,
            "functionCall": st.one_of(
                json_values, st.fixed_dictionaries({"name": json_values, "args": json_values})
            ),
            "thoughtSignature": json_values,
        },
    ),
)
gemini_events = st.fixed_dictionaries(
    {},
    optional={
        "candidates": st.one_of(
            json_values,
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "content": st.one_of(
                            json_values,
                            st.fixed_dictionaries({"parts": st.lists(gemini_parts, max_size=3)}),
                        ),
                        "finishReason": st.one_of(json_values, st.sampled_from(["STOP", "SAFETY"])),
                        "index": json_values,
                        "logprobsResult": json_values,
                    },
                ),
                max_size=2,
            ),
        ),
        "usageMetadata": json_values,
        "promptFeedback": json_values,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(gemini_events, max_size=4))
def test_odd_gemini_answers_never_break_the_response_translators(events: list[Any]) -> None:
    for event in events:
        completion = chat(event)
        assert completion["choices"]
        json.dumps(completion)
    chunks = stream_all(events, include_usage=True)
    json.dumps(chunks)
    assert chunks[-1]["choices"] == []
