"""The OpenAPI description of the proxy routes: plain async Django views that drf-spectacular
cannot see, described by hand beside them; the management API's schema adds these."""

from typing import Any

_REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


PROXY_COMPONENTS: dict[str, dict[str, Any]] = {
    "OpenAIError": {
        "type": "object",
        "description": "Error in the OpenAI dialect (/v1).",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": "string", "nullable": True},
                    "code": {"type": "string", "nullable": True},
                },
                "required": ["message", "type", "param", "code"],
            }
        },
        "required": ["error"],
    },
    "GoogleError": {
        "type": "object",
        "description": "Error in Google's dialect (/v1beta).",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "status": {"type": "string"},
                },
                "required": ["code", "message", "status"],
            }
        },
        "required": ["error"],
    },
    "ChatMessage": {
        "type": "object",
        "properties": {
            "role": {
                "type": "string",
                "enum": ["system", "developer", "user", "assistant", "tool"],
            },
            "content": {
                "nullable": True,
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "object", "additionalProperties": True}},
                ],
            },
            "name": {"type": "string"},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
            "tool_call_id": {"type": "string"},
        },
        "required": ["role"],
        "additionalProperties": True,
    },
    "ChatCompletionRequest": {
        "type": "object",
        "properties": {
            "model": {"type": "string", "example": "gemini-2.5-flash"},
            "messages": {"type": "array", "minItems": 1, "items": ref("ChatMessage")},
            "stream": {"type": "boolean", "default": False},
            "temperature": {"type": "number"},
            "top_p": {"type": "number"},
            "max_tokens": {"type": "integer"},
            "max_completion_tokens": {"type": "integer"},
            "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "tools": {"type": "array", "items": {"type": "object"}},
            "tool_choice": {"oneOf": [{"type": "string"}, {"type": "object"}]},
            "response_format": {"type": "object"},
            "reasoning_effort": {"type": "string"},
        },
        "required": ["model", "messages"],
        "additionalProperties": True,
    },
    "ChatCompletion": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["chat.completion"]},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "message": {"type": "object", "additionalProperties": True},
                        "finish_reason": {"type": "string", "nullable": True},
                    },
                },
            },
            "usage": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "required": ["object", "choices"],
        "additionalProperties": True,
    },
    "EmbeddingRequest": {
        "type": "object",
        "properties": {
            "model": {"type": "string", "example": "gemini-embedding-001"},
            "input": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
        },
        "required": ["model", "input"],
        "additionalProperties": True,
    },
    "EmbeddingList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "object": {"type": "string"},
                        "index": {"type": "integer"},
                        "embedding": {
                            "oneOf": [
                                {"type": "array", "items": {"type": "number"}},
                                {"type": "string"},
                            ]
                        },
                    },
                },
            },
            "model": {"type": "string"},
            "usage": {"type": "object"},
        },
        "required": ["object", "data"],
        "additionalProperties": True,
    },
    "OpenAIModel": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["model"]},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
        "required": ["id", "object", "created", "owned_by"],
    },
    "OpenAIModelList": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": ref("OpenAIModel")},
        },
        "required": ["object", "data"],
    },
    "GeminiModel": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "example": "models/gemini-2.5-flash"},
            "displayName": {"type": "string"},
            "inputTokenLimit": {"type": "integer"},
            "outputTokenLimit": {"type": "integer"},
            "supportedGenerationMethods": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name"],
        "additionalProperties": True,
    },
    "GeminiModelList": {
        "type": "object",
        "properties": {"models": {"type": "array", "items": ref("GeminiModel")}},
        "required": ["models"],
    },
    "GeminiRequest": {
        "type": "object",
        "description": "GenerateContentRequest, CountTokensRequest, EmbedContentRequest or "
        "BatchEmbedContentsRequest, as Google defines them.",
        "properties": {
            "contents": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": True},
            },
            "systemInstruction": {"type": "object"},
            "tools": {"type": "array", "items": {"type": "object"}},
            "toolConfig": {"type": "object"},
            "safetySettings": {"type": "array", "items": {"type": "object"}},
            "generationConfig": {"type": "object"},
            "content": {"type": "object"},
            "requests": {"type": "array", "items": {"type": "object"}},
        },
        "additionalProperties": True,
    },
    "GeminiResponse": {
        "type": "object",
        "description": "Google's answer for the method: candidates and usageMetadata, "
        "totalTokens, embedding or embeddings.",
        "additionalProperties": True,
    },
}

_SECURITY_PROXY: list[dict[str, list[str]]] = [
    {"userKey": []},
    {"googApiKey": []},
    {"keyQuery": []},
]
PROXY_SECURITY_SCHEMES = {
    "userKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A Rotator API key, as OpenAI clients send it.",
    },
    "googApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-goog-api-key",
        "description": "A Rotator API key, as Google clients send it.",
    },
    "keyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "key",
        "description": "A Rotator API key in the query string.",
    },
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until a credential is free.",
        "schema": {"type": "integer"},
    }
}


def errors_described(schema: str | list[str], statuses: dict[int, str]) -> dict[str, Any]:
    """Error responses for `statuses`, in one dialect's shape or (a list) any of several."""
    shape = ref(schema) if isinstance(schema, str) else {"anyOf": [ref(name) for name in schema]}
    responses = {str(status): json_response(shape, text) for status, text in statuses.items()}
    if "429" in responses:
        responses["429"]["headers"] = _RETRY_AFTER
    return responses


_OPENAI_ERRORS = {
    400: "Malformed request (OpenAI error).",
    401: "Missing or unknown API key.",
    403: "This key may not use the model.",
    404: "Unknown model or route.",
    405: "Method not allowed.",
    413: "Request body too large.",
    429: "The key's own limit, or every credential is cooling down.",
    502: "Upstream unreachable.",
    503: "No usable credential in the pool.",
}
_GOOGLE_ERRORS = _OPENAI_ERRORS | {400: "Malformed request (Google error)."}


def _model_parameter(description: str) -> dict[str, Any]:
    return {
        "name": "model",
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"},
    }


def _operation(
    *,
    operation_id: str,
    summary: str,
    tag: str,
    ok: dict[str, Any],
    errors: dict[str, Any],
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "security": _SECURITY_PROXY,
        "responses": {"200": ok, **errors},
    }
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    return operation


def _sse_or_json(schema: str, description: str) -> dict[str, Any]:
    ok = json_response(ref(schema), description)
    ok["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return ok


def proxy_paths() -> dict[str, Any]:
    """Path items for the proxy routes (the same routes answer without the /v1 prefix)."""
    openai_errors = errors_described("OpenAIError", _OPENAI_ERRORS)
    google_errors = errors_described("GoogleError", _GOOGLE_ERRORS)
    model = _model_parameter("Model name, with or without the models/ prefix.")
    method = {
        "name": "method",
        "in": "path",
        "required": True,
        "schema": {
            "type": "string",
            "enum": [
                "generateContent",
                "streamGenerateContent",
                "countTokens",
                "embedContent",
                "batchEmbedContents",
            ],
        },
    }
    alt = {
        "name": "alt",
        "in": "query",
        "required": False,
        "description": "sse: stream Server-Sent Events (streamGenerateContent).",
        "schema": {"type": "string", "enum": ["sse"]},
    }
    return {
        "/v1/chat/completions": {
            "post": _operation(
                operation_id="chat_completions",
                summary="Chat completion (OpenAI dialect); stream=true answers with SSE.",
                tag="proxy (OpenAI)",
                body="ChatCompletionRequest",
                ok=_sse_or_json("ChatCompletion", "The completion, or its chunks as SSE."),
                errors=openai_errors,
            )
        },
        "/v1/embeddings": {
            "post": _operation(
                operation_id="embeddings",
                summary="Embeddings (OpenAI dialect); served by Gemini API keys only.",
                tag="proxy (OpenAI)",
                body="EmbeddingRequest",
                ok=json_response(ref("EmbeddingList"), "The embeddings."),
                errors=openai_errors,
            )
        },
        "/v1/models": {
            "get": _operation(
                operation_id="openai_models",
                summary="Models this key may use (OpenAI dialect).",
                tag="proxy (OpenAI)",
                ok=json_response(ref("OpenAIModelList"), "The models."),
                errors=openai_errors,
            )
        },
        "/v1/models/{model}": {
            "get": _operation(
                operation_id="openai_model",
                summary="One model (OpenAI dialect).",
                tag="proxy (OpenAI)",
                parameters=[model],
                ok=json_response(ref("OpenAIModel"), "The model."),
                # Gemini clients use Google's stable /v1 path too (a `model:method` or a
                # Google key): their errors come in Google's shape.
                errors=errors_described(["OpenAIError", "GoogleError"], _OPENAI_ERRORS),
            )
        },
        "/v1beta/models": {
            "get": _operation(
                operation_id="gemini_models",
                summary="Models this key may use (Gemini dialect).",
                tag="proxy (Gemini)",
                ok=json_response(ref("GeminiModelList"), "The models."),
                errors=google_errors,
            )
        },
        "/v1beta/models/{model}": {
            "get": _operation(
                operation_id="gemini_model",
                summary="One model (Gemini dialect).",
                tag="proxy (Gemini)",
                parameters=[model],
                ok=json_response(ref("GeminiModel"), "The model."),
                errors=google_errors,
            )
        },
        "/v1beta/models/{model}:{method}": {
            "post": _operation(
                operation_id="gemini_call",
                summary="generateContent, streamGenerateContent (alt=sse), countTokens, "
                "embedContent or batchEmbedContents (Gemini dialect).",
                tag="proxy (Gemini)",
                parameters=[model, method, alt],
                body="GeminiRequest",
                ok=_sse_or_json("GeminiResponse", "Google's answer, or its events as SSE."),
                errors=google_errors,
            )
        },
    }
