"""The native Gemini surface, driven by the official google-genai SDK and raw HTTP."""

import json

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types


@pytest.fixture
def gemini(live, alice) -> genai.Client:
    return genai.Client(
        api_key=alice.key,
        http_options=types.HttpOptions(base_url=f"{live}/", retry_options=None),
    )


def test_generate_content_comes_back_from_the_pool(gemini, alice, fake_gemini):
    response = gemini.models.generate_content(model="gemini-2.5-flash", contents="hello world")
    assert response.text
    assert response.usage_metadata.prompt_token_count == 2
    [upstream] = fake_gemini.requests
    assert upstream.dialect == "gemini" and upstream.secret in alice.upstream_keys


def test_a_streamed_generation_arrives_in_pieces(gemini):
    pieces = list(
        gemini.models.generate_content_stream(model="gemini-2.5-flash", contents="a story")
    )
    assert len(pieces) >= 2
    assert "".join(p.text or "" for p in pieces)


def test_embeddings_and_token_counts_work(gemini):
    embedded = gemini.models.embed_content(model="gemini-embedding-001", contents="a cat")
    assert embedded.embeddings and len(embedded.embeddings[0].values) > 0
    counted = gemini.models.count_tokens(model="gemini-2.5-flash", contents="one two three")
    assert counted.total_tokens and counted.total_tokens > 0


def test_the_native_models_list_and_one_model(gemini):
    names = [m.name for m in gemini.models.list()]
    assert "models/gemini-2.5-flash" in names
    assert gemini.models.get(model="gemini-2.5-pro").name == "models/gemini-2.5-pro"


def test_batch_embed_contents_passes_through(http, alice):
    body = {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}},
        ]
    }
    response = http.post(
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        headers={"x-goog-api-key": alice.key},
        json=body,
    )
    assert response.status_code == 200
    assert len(response.json()["embeddings"]) == 2


def test_a_stream_without_alt_sse_is_one_json_array(http, alice):
    response = http.post(
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        params={"key": alice.key},
        json={"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]},
    )
    assert response.status_code == 200
    items = json.loads(response.text)
    assert isinstance(items, list) and len(items) >= 2
    assert items[-1]["usageMetadata"]["totalTokenCount"] > 0


def _google_error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body["error"]) >= {"code", "message", "status"}
    assert body["error"]["code"] == response.status_code
    return body["error"]


def test_a_missing_key_is_a_google_style_401(http):
    response = http.post("/v1beta/models/gemini-2.5-flash:generateContent", json={})
    assert response.status_code == 401
    assert _google_error(response)["status"] == "UNAUTHENTICATED"


def test_malformed_json_is_a_google_style_400(http, alice):
    response = http.post(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        headers={"x-goog-api-key": alice.key},
        content=b"[oops",
    )
    assert response.status_code == 400
    assert _google_error(response)["status"] == "INVALID_ARGUMENT"


def test_an_unknown_method_and_route_are_google_style_404s(http, alice):
    headers = {"x-goog-api-key": alice.key}
    response = http.post("/v1beta/models/gemini-2.5-flash:explode", headers=headers, json={})
    assert response.status_code == 404
    _google_error(response)
    response = http.get("/v1beta/tunedModels/x", headers=headers)
    assert response.status_code == 404
    _google_error(response)


@pytest.mark.parametrize(
    "path",
    [
        "/v1beta/models/..%2F..%2Fadmin:generateContent",
        "/v1beta/models/%2e%2e:generateContent",
        "/v1beta/models/x@evil.example:generateContent",
        "/v1beta/models/" + "a" * 500 + ":generateContent",
    ],
)
def test_a_hostile_model_name_never_reaches_upstream(http, alice, fake_gemini, path):
    response = http.post(path, headers={"x-goog-api-key": alice.key}, json={"contents": []})
    assert response.status_code in (400, 404)
    _google_error(response)
    assert fake_gemini.requests == []


def test_the_sdk_reports_an_upstream_client_error(gemini, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "bad_request")
    with pytest.raises(genai_errors.ClientError) as raised:
        gemini.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert raised.value.code == 400
    assert len(fake_gemini.requests) == 1


def test_an_upstream_secret_in_an_error_message_is_redacted(http, alice, fake_gemini):
    for secret in alice.upstream_keys:
        fake_gemini.behave(secret, "permission_denied", variant="suspended")
    response = http.post(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        headers={"x-goog-api-key": alice.key},
        json={"contents": [{"parts": [{"text": "x"}]}]},
    )
    assert response.status_code == 503  # every credential is now invalid: the pool is empty
    for secret in alice.upstream_keys:
        assert secret not in response.text
