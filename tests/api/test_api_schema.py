"""The OpenAPI schema at /api/schema/ and the offline docs page at /api/docs/."""

import pytest
from drf_spectacular.validation import validate_schema

PROXY_OPERATIONS = [
    ("post", "/v1/chat/completions"),
    ("post", "/v1/embeddings"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{model}"),
    ("get", "/v1beta/models"),
    ("get", "/v1beta/models/{model}"),
    ("post", "/v1beta/models/{model}:{method}"),
]


@pytest.fixture
def schema(client, db) -> dict:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi_3_and_public(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def test_the_schema_describes_the_management_api_and_the_config_endpoints(schema):
    paths = schema["paths"]
    for path in (
        "/api/users/",
        "/api/users/{id}/rotate/",
        "/api/keys/",
        "/api/keys/{id}/revoke/",
        "/api/credentials/{id}/check/",
        "/api/credentials/{id}/clear-marks/",
        "/api/credentials/import/",
        "/api/marks/",
        "/api/usage/",
        "/v1/config/update",
        "/v1/config/rotate",
    ):
        assert path in paths
    assert set(paths["/api/keys/{id}/"]) == {"get", "patch", "delete"}
    assert not [path for path in paths if path.endswith(("/create/", "/delete/", "/clear/"))]
    assert paths["/api/users/"]["get"]["security"][0] == {"masterKey": []}
    config_errors = paths["/v1/config/update"]["post"]["responses"]
    assert config_errors["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIError"
    }


def test_secrets_only_go_in_never_out(schema):
    components = schema["components"]["schemas"]
    assert components["CredentialCreateInput"]["properties"]["api_key"]["writeOnly"] is True
    assert components["ConfigUpdateInput"]["properties"]["apiKey"]["writeOnly"] is True
    assert "secret" not in components["ApiKey"]["properties"]
    assert "secret_encrypted" not in components["Credential"]["properties"]


@pytest.mark.parametrize(("method", "path"), PROXY_OPERATIONS)
def test_the_schema_describes_each_proxy_endpoint(schema, method, path):
    operation = schema["paths"][path][method]
    assert {"200", "400", "401", "429"} <= set(operation["responses"])
    assert {"userKey": []} in operation["security"]
    assert {"googApiKey": []} in operation["security"]
    assert {"keyQuery": []} in operation["security"]
    error = operation["responses"]["429"]["content"]["application/json"]["schema"]
    shapes = [item["$ref"] for item in error.get("anyOf", [error])]
    # Google's stable /v1 path serves Gemini clients too, so /v1/models/{model} has both.
    expected = "GoogleError" if path.startswith("/v1beta") else "OpenAIError"
    assert any(shape.endswith(expected) for shape in shapes)


def test_the_schema_names_the_proxy_security_schemes(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["userKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A Rotator API key, as OpenAI clients send it.",
    }
    assert (schemes["googApiKey"]["in"], schemes["googApiKey"]["name"]) == (
        "header",
        "x-goog-api-key",
    )
    assert (schemes["keyQuery"]["in"], schemes["keyQuery"]["name"]) == ("query", "key")


def test_the_docs_page_loads_swagger_ui_from_this_server(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/schema/" in page
    assert "cdn.jsdelivr" not in page
    assert "/api/docs/assets/swagger-ui-bundle.js" in page
    bundle = client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert b"".join(bundle.streaming_content)


def test_a_docs_asset_outside_swagger_ui_is_not_served(client, db):
    assert client.get("/api/docs/assets/../../../drf_spectacular/settings.py").status_code == 404
