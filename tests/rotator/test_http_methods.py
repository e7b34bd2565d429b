"""HTTP methods: 405 carries Allow, HEAD works wherever GET does, /healthz is GET and HEAD only."""

import pytest


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/v1/models", "GET, HEAD, OPTIONS"),
        ("DELETE", "/v1beta/models", "GET, HEAD, OPTIONS"),
        ("GET", "/v1/chat/completions", "POST, OPTIONS"),
        ("PUT", "/v1/embeddings", "POST, OPTIONS"),
        ("GET", "/v1beta/models/gemini-2.5-flash:generateContent", "POST, OPTIONS"),
        ("POST", "/healthz", "GET, HEAD, OPTIONS"),
        ("DELETE", "/healthz", "GET, HEAD, OPTIONS"),
    ],
)
def test_a_405_names_the_methods_the_route_answers(http, alice, method, path, allow):
    response = http.request(method, path, headers={"authorization": f"Bearer {alice.key}"})
    assert response.status_code == 405
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize(
    "path",
    ["/v1/models", "/models", "/v1/models/gemini-2.5-flash", "/v1beta/models", "/healthz"],
)
def test_head_answers_like_get_without_a_body(http, alice, path):
    headers = {"authorization": f"Bearer {alice.key}"}
    got = http.get(path, headers=headers)
    head = http.head(path, headers=headers)
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert int(head.headers["content-length"]) == len(got.content)


@pytest.mark.parametrize("path", ["/stat", "/admin/login/", "/api/schema/"])
def test_head_works_on_the_browser_pages_too(http, db, settings, path):
    settings.MASTER_API_KEY = "master-key-for-tests-0123456789"
    headers = {"authorization": "Bearer master-key-for-tests-0123456789"}
    assert http.get(path, headers=headers).status_code == 200
    assert http.head(path, headers=headers).status_code == 200
