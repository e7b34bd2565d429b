"""The OpenAPI 3 schema at /api/schema/ and its offline docs page: the management API and the
config endpoints as drf-spectacular generates them, plus the proxy routes (rotator.openapi)."""

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

from rotator.openapi import (
    PROXY_COMPONENTS,
    PROXY_SECURITY_SCHEMES,
    errors_described,
    json_response,
    proxy_paths,
    ref,
)

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
    """Names components and operations after the views: `CredentialViewSet.CreateInput` gives
    component `CredentialCreateInput`, the ViewSet's `check` action operation
    `credentials_check`, `ConfigUpdateApi` operation `config_update`; so the nested
    serializers of different views never collide."""

    def get_serializer_name(self, serializer: BaseSerializer[Any], direction: str) -> str:
        qualified = type(serializer).__qualname__
        return qualified.replace("ViewSet.", "").replace("Api.", "").replace(".", "")

    def get_operation_id(self) -> str:
        action = getattr(self.view, "action", None)
        if action is not None:
            return f"{getattr(self.view, 'basename', '')}_{action}"
        name = type(self.view).__name__.removesuffix("Api")
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()

    def get_override_parameters(self) -> list[Any]:
        # Lists validate their query with the view's nested FilterSerializer; document it as-is.
        filters = getattr(self.view, "FilterSerializer", None)
        listing = getattr(self.view, "action", "list") == "list"
        return [*super().get_override_parameters(), *([filters] if filters and listing else [])]

    def get_tags(self) -> list[str]:
        parts = self.path.strip("/").split("/")
        return ["config"] if parts[0] == "v1" else [parts[1] if len(parts) > 1 else parts[0]]


class MasterKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "api.auth.MasterKeyAuthentication"
    name = "masterKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "MASTER_API_KEY as a Bearer token.",
        }


# ---------------------------------------------------------------------------- error shapes

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
}


_API_ERRORS: dict[int, tuple[dict[str, Any], str]] = {
    400: (
        {"anyOf": [ref("ApiValidationError"), ref("ApiError")]},
        "Invalid input: messages per field (or a detail, for a body that does not parse).",
    ),
    401: (ref("ApiError"), "No or wrong credentials."),
    403: (
        ref("ApiError"),
        "Lacks the operation's permission (docs/api.md), or MASTER_API_KEY is not configured.",
    ),
    404: (ref("ApiError"), "No such object."),
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
                errors = errors_described("OpenAIError", _CONFIG_ERRORS)
            else:
                errors = {
                    str(code): json_response(schema, text)
                    for code, (schema, text) in _API_ERRORS.items()
                }
            for status, response in errors.items():
                responses.setdefault(status, response)
    result.setdefault("paths", {}).update(proxy_paths())
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(COMPONENTS | PROXY_COMPONENTS)
    components.setdefault("securitySchemes", {}).update(PROXY_SECURITY_SCHEMES)
    return result


SCHEMA_SETTINGS = {
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.schema_complete",
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
