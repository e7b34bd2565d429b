"""The OpenAPI 3 schema at /api/schema/ and its offline docs page: the management API, the
config endpoints, and hand-written entries for the proxy routes (plain async Django views that
drf-spectacular cannot see)."""

import re
from pathlib import Path
from typing import Any

import drf_spectacular_sidecar
from django.http import Http404, HttpRequest, HttpResponseBase
from django.urls import reverse
from django.views.static import serve
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.serializers import BaseSerializer

SWAGGER_UI_DIR = (
    Path(drf_spectacular_sidecar.__file__).parent
    / "static"
    / "drf_spectacular_sidecar"
    / "swagger-ui-dist"
)
# What the docs page loads; nothing else in the package is served.
SWAGGER_UI_FILES = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
    }
)


class ApiAutoSchema(AutoSchema):
    """Names components and operations after the view classes: `CredentialCreateApi` gives
    operation `credential_create` and components `CredentialCreateInput` / `...Output`, so the
    nested `InputSerializer` / `OutputSerializer` of different views never collide."""

    def get_serializer_name(self, serializer: BaseSerializer[Any], direction: str) -> str:
        qualified = type(serializer).__qualname__
        return qualified.replace("Api.", "").replace(".", "")

    def get_operation_id(self) -> str:
        name = type(self.view).__name__.removesuffix("Api")
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()

    def get_override_parameters(self) -> list[Any]:
        # List views validate their query with a nested FilterSerializer; document it as-is.
        filters = getattr(self.view, "FilterSerializer", None)
        return [*super().get_override_parameters(), *([filters] if filters else [])]

    def get_tags(self) -> list[str]:
        parts = self.path.strip("/").split("/")
        return ["config"] if parts[0] == "v1" else [parts[1] if len(parts) > 1 else parts[0]]


class MasterKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.api_auth.MasterKeyAuthentication"
    name = "masterKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "MASTER_API_KEY as a Bearer token.",
        }


# ------------------------------------------------------------------ error and proxy shapes

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


COMPONENTS: dict[str, dict[str, Any]] = {
    "ApiError": {
        "type": "object",
        "description": "Management API error.",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    },
    "ApiValidationError": {
        "type": "object",
        "description": "Field name (or non_field_errors) to its messages; list items and "
        "nested fields give objects keyed by index or name.",
        "additionalProperties": {
            "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}]
        },
    },
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
            "messages": {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
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
            "data": {"type": "array", "items": _ref("OpenAIModel")},
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
        "properties": {"models": {"type": "array", "items": _ref("GeminiModel")}},
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
_SECURITY_SCHEMES = {
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


def _errors(schema: str, statuses: dict[int, str]) -> dict[str, Any]:
    responses = {str(status): _json(_ref(schema), text) for status, text in statuses.items()}
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
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


def _sse_or_json(schema: str, description: str) -> dict[str, Any]:
    ok = _json(_ref(schema), description)
    ok["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return ok


def proxy_paths() -> dict[str, Any]:
    """Path items for the proxy routes (the same routes answer without the /v1 prefix)."""
    openai_errors = _errors("OpenAIError", _OPENAI_ERRORS)
    google_errors = _errors("GoogleError", _GOOGLE_ERRORS)
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
                ok=_json(_ref("EmbeddingList"), "The embeddings."),
                errors=openai_errors,
            )
        },
        "/v1/models": {
            "get": _operation(
                operation_id="openai_models",
                summary="Models this key may use (OpenAI dialect).",
                tag="proxy (OpenAI)",
                ok=_json(_ref("OpenAIModelList"), "The models."),
                errors=openai_errors,
            )
        },
        "/v1/models/{model}": {
            "get": _operation(
                operation_id="openai_model",
                summary="One model (OpenAI dialect).",
                tag="proxy (OpenAI)",
                parameters=[model],
                ok=_json(_ref("OpenAIModel"), "The model."),
                errors=openai_errors,
            )
        },
        "/v1beta/models": {
            "get": _operation(
                operation_id="gemini_models",
                summary="Models this key may use (Gemini dialect).",
                tag="proxy (Gemini)",
                ok=_json(_ref("GeminiModelList"), "The models."),
                errors=google_errors,
            )
        },
        "/v1beta/models/{model}": {
            "get": _operation(
                operation_id="gemini_model",
                summary="One model (Gemini dialect).",
                tag="proxy (Gemini)",
                parameters=[model],
                ok=_json(_ref("GeminiModel"), "The model."),
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


_API_ERRORS: dict[int, tuple[dict[str, Any], str]] = {
    400: (
        {"anyOf": [_ref("ApiValidationError"), _ref("ApiError")]},
        "Invalid input: messages per field (or a detail, for a body that does not parse).",
    ),
    401: (_ref("ApiError"), "No or wrong credentials."),
    403: (_ref("ApiError"), "Not an operator, or MASTER_API_KEY is not configured."),
    404: (_ref("ApiError"), "No such object."),
}
_CONFIG_ERRORS = {
    400: "Invalid input: the first field at fault in param, all of them in message.",
    401: "No or wrong master key.",
    403: "MASTER_API_KEY is not configured.",
}


def schema_complete(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: documents the error answers of every generated
    operation, and adds the proxy routes, their shapes and security schemes."""
    for path, item in result.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if path.startswith("/v1/"):
                errors = _errors("OpenAIError", _CONFIG_ERRORS)
            else:
                errors = {
                    str(code): _json(schema, text) for code, (schema, text) in _API_ERRORS.items()
                }
            for status, response in errors.items():
                responses.setdefault(status, response)
    result.setdefault("paths", {}).update(proxy_paths())
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(COMPONENTS)
    components.setdefault("securitySchemes", {}).update(_SECURITY_SCHEMES)
    return result


SCHEMA_SETTINGS = {
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "accounts.api_schema.schema_complete",
    ],
}


class SchemaView(SpectacularAPIView):
    """The schema, public: it describes routes, never data."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    serve_public = True
    custom_settings = SCHEMA_SETTINGS


class DocsView(SpectacularSwaggerView):
    """Swagger UI served from this server (drf-spectacular-sidecar), no CDN needed."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    url_name = "api-schema"

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        return reverse("api-docs-asset", kwargs={"path": filename})

    @staticmethod
    def _swagger_ui_favicon() -> str:
        return reverse("api-docs-asset", kwargs={"path": "favicon-32x32.png"})


def docs_asset(request: HttpRequest, path: str) -> HttpResponseBase:
    """Swagger UI's files, straight from the sidecar package (no collectstatic step)."""
    if path not in SWAGGER_UI_FILES:
        raise Http404("No such asset.")
    return serve(request, path, document_root=str(SWAGGER_UI_DIR))
