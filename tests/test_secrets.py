"""Secrets never leave, and hostile model names never steer the upstream request.

The first test runs the whole traffic mix (both dialects, streams, embeddings, every upstream
error, OAuth accounts, wrong keys, operator pages, /stat, /debug/stats, /metrics and the
management API) with logging at DEBUG, then looks for every secret it created in every
response, page, log line and stored text: none may show, whole or in part.
"""

import http.client
import json
import logging
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import reverse

from accounts.models import Credential
from accounts.services import api_key_create, credential_add, oauth_account_parse
from rotator.models import Mark, UpstreamErrorLog
from stats.models import UsageCounter
from tests.conftest import Persona
from tests.support.database import database_text

MODEL = "gemini-2.5-flash"
EMBEDDING_MODEL = "gemini-embedding-001"
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "tell me a story"}]}]}
# A leak of this many consecutive characters of a secret counts; masks show at most 8.
FRAGMENT_CHARS = 12
# Runs of the characters secrets are made of; a fragment can only hide inside one.
SECRET_RUN = re.compile(r"[A-Za-z0-9_\-./]{" + str(FRAGMENT_CHARS) + ",}")

# Upstream behaviours for API keys: every kind of error, and every way a transfer can fail.
API_KEY_BEHAVIOURS: list[tuple[str, dict]] = [
    ("rate_limit_minute", {}),
    ("quota_day", {}),
    ("limit_zero", {}),
    ("rate_limit_bare", {}),
    ("invalid_key", {}),
    *(
        ("permission_denied", {"variant": variant})
        for variant in (
            "denied",
            "leaked",
            "suspended",
            "service_disabled",
            "blocked",
            "tos",
            "unregistered",
        )
    ),
    ("failed_precondition", {}),
    ("not_found", {}),
    ("bad_request", {}),
    ("unauthenticated", {}),
    ("server_error", {"status": 500}),
    ("server_error", {"status": 503}),
    ("server_error", {"status": 504}),
    ("timeout", {"seconds": 2}),
    ("slow_first_byte", {"seconds": 0.1}),
    ("reset", {}),
    ("cut_stream", {"after": 1}),
    ("empty", {}),
    ("safety", {}),
]
# The same for Gemini CLI OAuth accounts (Code Assist), matched on the refresh token.
OAUTH_BEHAVIOURS: list[tuple[str, dict]] = [
    ("unauthenticated", {}),
    ("code_assist_rate_limit", {}),
    ("code_assist_quota", {}),
    ("model_capacity", {}),
    ("permission_denied", {"variant": "suspended"}),
    ("server_error", {"status": 503}),
    ("cut_stream", {"after": 1}),
]


def _upstream_key() -> str:
    return "AIzaSy" + secrets.token_urlsafe(40)[:33]


def _refresh_token() -> str:
    return "1//0" + secrets.token_urlsafe(48)


@dataclass
class Secrets:
    """Every secret the test made, by a name that says what it is."""

    named: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str) -> str:
        self.named[name] = value
        return value

    def fragments(self) -> dict[str, str]:
        pieces: dict[str, str] = {}
        for name, value in self.named.items():
            assert len(value) >= FRAGMENT_CHARS, name
            for start in range(len(value) - FRAGMENT_CHARS + 1):
                pieces.setdefault(value[start : start + FRAGMENT_CHARS], name)
        return pieces


@dataclass
class Evidence:
    """Everything Rotator showed or wrote, each text with where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def response(self, where: str, response: httpx.Response) -> httpx.Response:
        self.add(f"{where} -> {response.status_code}", response.text)
        self.add(f"{where} headers", "\n".join(f"{k}: {v}" for k, v in response.headers.items()))
        return response

    def page(self, where: str, response) -> None:
        body = response.content.decode("utf-8", "replace") if response.content else ""
        self.add(f"{where} -> {response.status_code}", body)
        self.add(f"{where} headers", "\n".join(f"{k}: {v}" for k, v in response.items()))

    def leaks(self, found: Secrets) -> list[str]:
        pieces = found.fragments()
        hits = []
        for where, text in self.texts:
            for run in SECRET_RUN.finditer(text):
                token = run.group(0)
                for start in range(len(token) - FRAGMENT_CHARS + 1):
                    name = pieces.get(token[start : start + FRAGMENT_CHARS])
                    if name is not None:
                        hits.append(f"{name} in {where}: …{token[:80]}…")
                        break
        return hits


def _pool(name: str, found: Secrets, *, api_keys: int = 0, oauth: int = 0, fake=None) -> Persona:
    """A user whose pool holds fresh random API keys and OAuth accounts, and a Rotator key."""
    user = User.objects.create_user(username=name, password=secrets.token_urlsafe(16))
    api_key, key = api_key_create(user=user, name=f"{name}'s key")
    found.add(f"{name}'s Rotator key", key)
    added = []
    for number in range(api_keys):
        secret = found.add(f"{name}'s API key {number}", _upstream_key())
        added.append(credential_add(user=user, api_key=secret).credential)
    for number in range(oauth):
        refresh = found.add(f"{name}'s refresh token {number}", _refresh_token())
        stale = found.add(
            f"{name}'s stale access token {number}", "ya29." + secrets.token_urlsafe(30)
        )
        fake.oauth_account_add(refresh_token=refresh, email=f"{name}{number}@example.com")
        creds = {"access_token": stale, "refresh_token": refresh, "expiry_date": 0}
        added.append(credential_add(user=user, oauth=oauth_account_parse(creds)).credential)
    return Persona(user=user, key=key, api_key=api_key, credentials=added)


def _mix(http: httpx.Client, evidence: Evidence, key: str, *, label: str) -> None:
    """One of each proxy request, the key presented in each of the three ways clients do."""
    bearer = {"authorization": f"Bearer {key}"}
    goog = {"x-goog-api-key": key}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}]}
    generate = f"/v1beta/models/{MODEL}:generateContent"
    stream = f"/v1beta/models/{MODEL}:streamGenerateContent"
    calls = [
        ("chat", "/v1/chat/completions", bearer, {}, chat),
        ("chat stream", "/v1/chat/completions", bearer, {}, {**chat, "stream": True}),
        ("generate", generate, goog, {}, CONTENTS),
        # Google's own documentation passes the key in the query string.
        ("sse", stream, {}, {"alt": "sse", "key": key}, CONTENTS),
        ("array", stream, goog, {}, CONTENTS),
    ]
    for name, path, headers, params, body in calls:
        response = http.post(path, headers=headers, params=params, json=body)
        evidence.response(f"{label} {name}", response)


def _rotator_log_lines(records: Iterable[logging.LogRecord]) -> Iterator[str]:
    """Every log line Rotator's side wrote, formatted as a handler would, tracebacks included.

    Left out: this test's own HTTP client (httpx in the main thread, which logs the URLs it
    was given) and the fake Google server's thread: neither is Rotator.
    """
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    for record in records:
        if record.threadName == "fake-gemini":
            continue
        if record.name.startswith(("httpx", "httpcore")) and record.threadName == "MainThread":
            continue
        yield formatter.format(record)


def _admin_pages() -> Iterator[tuple[str, set[int]]]:
    """Every admin page to look at, with the statuses it may answer: the index, each
    changelist and add page (refused where adding makes no sense), every object's change
    page, and the credential import page."""
    yield "/admin/", {200}
    for model in admin.site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        yield reverse(f"{name}_changelist"), {200}
        yield reverse(f"{name}_add"), {200, 403}
        for pk in model._default_manager.values_list("pk", flat=True):
            yield reverse(f"{name}_change", args=[pk]), {200}
    yield reverse("admin:accounts_credential_import"), {200}


@pytest.fixture
def everything_logged(caplog, monkeypatch) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG into caplog, uvicorn's access log included (the server's default
    when run as the README says), though uvicorn keeps it off the root logger."""
    caplog.set_level(logging.DEBUG)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_no_secret_shows_in_any_answer_page_log_line_or_stored_text(
    live, http, client, admin_client, fake_gemini, settings, everything_logged
):
    found = Secrets()
    settings.MASTER_API_KEY = found.add("MASTER_API_KEY", "master-" + secrets.token_urlsafe(32))
    settings.METRICS_TOKEN = found.add("METRICS_TOKEN", "metrics-" + secrets.token_urlsafe(32))
    settings.UPSTREAM_READ_TIMEOUT_SECONDS = 0.5
    evidence = Evidence()

    # Traffic that works: both dialects, streams, embeddings, model lists, on a mixed pool.
    happy = _pool("happy", found, api_keys=2, oauth=1, fake=fake_gemini)
    for _ in range(3):
        _mix(http, evidence, happy.key, label="happy")
    bearer = {"authorization": f"Bearer {happy.key}"}
    goog = {"x-goog-api-key": happy.key}
    for where, path, headers, body in [
        ("embeddings", "/v1/embeddings", bearer, {"model": EMBEDDING_MODEL, "input": ["a cat"]}),
        (
            "embedContent",
            f"/v1beta/models/{EMBEDDING_MODEL}:embedContent",
            goog,
            {"content": {"parts": [{"text": "a cat"}]}},
        ),
        ("countTokens", f"/v1beta/models/{MODEL}:countTokens", goog, CONTENTS),
    ]:
        evidence.response(where, http.post(path, headers=headers, json=body))
    for path, headers in [("/v1/models", bearer), ("/v1beta/models", goog), ("/models", bearer)]:
        evidence.response(path, http.get(path, headers=headers))
    evidence.response("/v1/models?key=", http.get("/v1/models", params={"key": happy.key}))

    # Every upstream error, each on a pool of its own.
    for number, (behaviour, params) in enumerate(API_KEY_BEHAVIOURS):
        persona = _pool(f"keys{number}", found, api_keys=2)
        for secret in persona.upstream_keys:
            fake_gemini.behave(secret, behaviour, **params)
        _mix(http, evidence, persona.key, label=f"{behaviour} {params}")
    for number, (behaviour, params) in enumerate(OAUTH_BEHAVIOURS):
        persona = _pool(f"oauth{number}", found, oauth=1, fake=fake_gemini)
        refresh = json.loads(persona.credentials[0].secret())["refresh_token"]
        fake_gemini.behave(refresh, behaviour, **params)
        _mix(http, evidence, persona.key, label=f"oauth {behaviour} {params}")
    revoked = _pool("revoked", found, oauth=1, fake=fake_gemini)
    fake_gemini.oauth_account_revoke(json.loads(revoked.credentials[0].secret())["refresh_token"])
    _mix(http, evidence, revoked.key, label="revoked oauth")

    # Keys that are not ours: a made-up one, and an upstream key sent to Rotator by mistake.
    unknown = found.add("an unknown key", "rk-" + secrets.token_urlsafe(32))
    _mix(http, evidence, unknown, label="unknown key")
    _mix(http, evidence, happy.upstream_keys[0], label="upstream key as Rotator key")
    wrong_master = {"authorization": f"Bearer {unknown}"}
    evidence.response("debug wrong", http.get("/debug/stats", headers=wrong_master))
    evidence.response("metrics wrong", http.get("/metrics", headers=wrong_master))
    evidence.response("api wrong", http.get("/api/credentials/", headers=wrong_master))

    # What operators and users look at.
    master = {"authorization": f"Bearer {settings.MASTER_API_KEY}"}
    evidence.response("/debug/stats", http.get("/debug/stats", headers=master))
    metrics = {"authorization": f"Bearer {settings.METRICS_TOKEN}"}
    evidence.response("/metrics", http.get("/metrics", headers=metrics))
    for resource in ("users", "keys", "credentials", "marks", "usage"):
        listing = http.get(f"/api/{resource}/", headers=master, params={"limit": 1000})
        evidence.response(f"/api/{resource}/", listing)
        assert listing.status_code == 200, listing.text
    for credential in Credential.objects.all():
        path = f"/api/credentials/{credential.pk}/"
        evidence.response(path, http.get(path, headers=master))
    for path in (f"/api/keys/{happy.api_key.pk}/", f"/api/users/{happy.user.pk}/"):
        evidence.response(path, http.get(path, headers=master))
    evidence.response("/healthz", http.get("/healthz"))

    signin = client.post("/stat/signin", {"key": happy.key})
    assert signin.status_code == 302
    evidence.page("/stat/signin", signin)
    for path in ("/stat", "/stat/data.json"):
        page = client.get(path)
        assert page.status_code == 200
        evidence.page(f"{path} (key holder)", page)
    evidence.page("/stat/signin refused", client.post("/stat/signin", {"key": unknown}))
    for user_id in Credential.objects.values_list("user_id", flat=True).distinct():
        evidence.page(f"/stat?user={user_id}", admin_client.get(f"/stat?user={user_id}"))
        evidence.page(
            f"/stat/data.json?user={user_id}", admin_client.get(f"/stat/data.json?user={user_id}")
        )
    for url, statuses in _admin_pages():
        page = admin_client.get(url)
        assert page.status_code in statuses, url
        evidence.page(url, page)
    evidence.page("/api/docs/", admin_client.get("/api/docs/"))

    # Access tokens the fake minted for every OAuth account are secrets too.
    for credential in Credential.objects.filter(kind=Credential.Kind.GEMINI_OAUTH):
        refresh = json.loads(credential.secret())["refresh_token"]
        for number, token in enumerate(fake_gemini.oauth_access_tokens(refresh)):
            found.add(f"access token {number} of {credential.label}", token)
    assert any(name.startswith("access token") for name in found.named)

    # Stored reasons and labels, then the whole database, then every log line.
    for credential in Credential.objects.all():
        evidence.add(f"Credential {credential.pk} last_error", credential.last_error)
    for mark in Mark.objects.all():
        evidence.add(f"Mark {mark.pk} message", mark.message)
    for entry in UpstreamErrorLog.objects.all():
        evidence.add(f"UpstreamErrorLog {entry.pk} message", entry.message)
    for row in UsageCounter.objects.all():
        evidence.add(f"UsageCounter {row.pk} credential_label", row.credential_label)
    evidence.add("database", database_text())
    lines = list(_rotator_log_lines(everything_logged.records))
    evidence.add("logs", "\n".join(lines))

    # The search sees what it must: upstream's echo of a key, and the access log.
    assert Credential.objects.filter(status=Credential.Status.SUSPENDED).exists()
    assert any("uvicorn.access" in line for line in lines)
    assert any("rotator.request" in line for line in lines)
    leaks = evidence.leaks(found)
    assert leaks == [], "\n".join(leaks)


# ------------------------------------------------------------------- hostile model names

HOSTILE_MODELS = [
    "../../etc/passwd",
    "gemini-2.5-flash/../../v1beta/cachedContents",
    "..%2F..%2Fadmin",
    "gemini-2.5-flash%2F..%2Fx",
    "x@evil.example",
    "gemini-2.5-flash@evil.example:443",
    "//evil.example/models/x",
    "http://evil.example/x",
    "gemini-2.5-flash?x=1",
    "gemini-2.5-flash?key=AIzaSyStolen",
    "gemini-2.5-flash#frag",
    "gemini-2.5-flash:generateContent",
    "gemini-2.5-flash\r\nHost: evil.example",
    "gemini\u22152.5",
    "..",
    "a" * 5000,
]


def _upstream_paths_only(fake_gemini, allowed: set[str]) -> None:
    """Every request the fake saw went to one of `allowed`, on the fake's own host."""
    host = urlsplit(fake_gemini.url).netloc
    for record in fake_gemini.requests:
        assert record.path in allowed, record.path
        assert record.headers.get("Host") == host


@pytest.mark.parametrize("model", HOSTILE_MODELS, ids=range(len(HOSTILE_MODELS)))
def test_a_hostile_model_in_an_openai_body_never_moves_the_upstream_request(
    http, alice, fake_gemini, model
):
    response = http.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {alice.key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.headers["content-type"].startswith("application/json")
    if response.status_code in (400, 404):
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    _upstream_paths_only(fake_gemini, {"/v1beta/openai/chat/completions"})


def _raw_post(live: str, target: str, *, key: str) -> tuple[int, dict]:
    """POSTs to a request target sent byte for byte (httpx would normalise `..` away)."""
    parts = urlsplit(live)
    connection_ = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        body = json.dumps(CONTENTS)
        connection_.request(
            "POST",
            target,
            body=body,
            headers={"x-goog-api-key": key, "content-type": "application/json"},
        )
        response = connection_.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection_.close()


NATIVE_TARGETS = [
    "..",
    "../admin",
    "..%2F..%2Fadmin",
    "%2e%2e%2f%2e%2e%2fadmin",
    "gemini-2.5-flash%2F..%2F..%2FcachedContents",
    "x@evil.example",
    "@evil.example",
    "gemini-2.5-flash%3Fkey%3DAIzaSyStolen",
    "gemini-2.5-flash?x=",
    "gemini-2.5-flash#frag",
    "gemini-2.5-flash%23frag",
    "gemini-2.5-flash%00",
    "a" * 500,
]


@pytest.mark.parametrize("prefix", ["/v1beta/models/", "/v1/models/"])
@pytest.mark.parametrize("model", NATIVE_TARGETS, ids=range(len(NATIVE_TARGETS)))
def test_a_hostile_model_in_a_native_path_never_moves_the_upstream_request(
    live, alice, fake_gemini, prefix, model
):
    status, body = _raw_post(live, f"{prefix}{model}:generateContent", key=alice.key)
    assert status in (400, 404), body
    if prefix == "/v1beta/models/":
        assert set(body["error"]) >= {"code", "message", "status"}
    else:
        # /v1 is shared with OpenAI clients: a route it cannot match answers OpenAI-style.
        assert "message" in body["error"]
    assert fake_gemini.requests == []


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "a" * 128, "a..b", "x-1.0_beta"])
def test_a_legal_model_name_reaches_upstream_as_exactly_its_path_segment(
    live, alice, fake_gemini, model
):
    _raw_post(live, f"/v1beta/models/{model}:generateContent", key=alice.key)
    # An unknown model is tried on other credentials too: each time on the same path; the 404
    # is confirmed against that credential's own model entry (GET models/{model}).
    assert fake_gemini.requests
    _upstream_paths_only(
        fake_gemini,
        {f"/v1beta/models/{model}:generateContent", f"/v1beta/models/{model}"},
    )
