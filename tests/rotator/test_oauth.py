"""Gemini CLI OAuth accounts: tokens, project discovery, Code Assist, and mixed pools."""

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import httpx
import openai
import pytest
from django.conf import settings
from google import genai
from google.genai import types

from accounts.models import Credential
from accounts.services import api_key_create, credential_add, oauth_account_parse
from common import clock
from rotator.models import Mark
from tests.conftest import Persona, persona_create
from tests.support.processes import database_url as support_database_url

CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hello"}]}


def _id_token(email: str) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"email": email}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{payload}.sig"


def oauth_persona(name: str, fake_gemini, *, accounts: int = 1, api_keys: int = 0, **account):
    persona = persona_create(name, credentials=api_keys)
    for number in range(accounts):
        refresh_token = f"1//0fake-{name}-{number}-" + "r" * 30
        fake_gemini.oauth_account_add(refresh_token=refresh_token, **account)
        creds = {
            "access_token": "ya29.stale",
            "refresh_token": refresh_token,
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "token_type": "Bearer",
            "id_token": _id_token(f"{name}{number}@example.com"),
            "expiry_date": 0,
        }
        added = credential_add(user=persona.user, oauth=oauth_account_parse(creds))
        persona.credentials.append(added.credential)
    return persona


def refresh_tokens(persona: Persona) -> list[str]:
    return [
        json.loads(c.secret())["refresh_token"]
        for c in persona.credentials
        if c.kind == Credential.Kind.GEMINI_OAUTH
    ]


@pytest.fixture
def olga(db, fake_gemini) -> Persona:
    return oauth_persona("olga", fake_gemini, project_id="olga-project")


def sdk(live: str, persona: Persona) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live}/v1", api_key=persona.key, max_retries=0)


def test_the_email_in_the_id_token_labels_an_oauth_credential(olga):
    assert olga.credentials[0].label == "olga0@example.com"


def test_an_oauth_account_serves_a_chat_through_code_assist(live, olga, fake_gemini):
    completion = sdk(live, olga).chat.completions.create(**CHAT)
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.total_tokens > 0
    generate = [r for r in fake_gemini.requests if r.dialect == "code_assist"]
    assert generate[-1].body["project"] == "olga-project"
    assert generate[-1].body["model"] == "gemini-2.5-flash"
    assert fake_gemini.oauth_refresh_count(refresh_tokens(olga)[0]) == 1


def test_an_oauth_account_streams_openai_chunks(live, olga):
    chunks = list(sdk(live, olga).chat.completions.create(**CHAT, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_tool_round_trip_names_the_function_in_the_response(live, olga, fake_gemini):
    client = sdk(live, olga)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    messages = [{"role": "user", "content": "what is the weather in Paris"}]
    first = client.chat.completions.create(model="gemini-2.5-flash", messages=messages, tools=tools)
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})},
    ]
    second = client.chat.completions.create(
        model="gemini-2.5-flash", messages=messages, tools=tools
    )
    assert "get_weather" in second.choices[0].message.content
    sent = [r for r in fake_gemini.requests if r.dialect == "code_assist"][-1].body["request"]
    response_part = sent["contents"][-1]["parts"][0]["functionResponse"]
    assert response_part["name"] == "get_weather"


def test_json_schema_and_images_are_translated(live, olga, fake_gemini):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    completion = sdk(live, olga).chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {"role": "system", "content": "Answer in JSON."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe"},
                    {"type": "image_url", "image_url": {"url": image}},
                ],
            },
        ],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content)
    request = [r for r in fake_gemini.requests if r.dialect == "code_assist"][-1].body["request"]
    assert request["systemInstruction"]["parts"][0]["text"] == "Answer in JSON."
    assert request["generationConfig"]["responseMimeType"] == "application/json"
    assert request["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "image/png"


def test_native_gemini_clients_work_against_an_oauth_account(live, olga):
    client = genai.Client(
        api_key=olga.key, http_options=types.HttpOptions(base_url=f"{live}/", api_version="v1beta")
    )
    assert client.models.generate_content(model="gemini-2.5-flash", contents="hi").text
    pieces = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert "".join(p.text or "" for p in pieces)
    assert client.models.count_tokens(model="gemini-2.5-flash", contents="a b c").total_tokens


def test_a_mixed_pool_serves_from_both_kinds(live, db, fake_gemini):
    mixed = oauth_persona("mika", fake_gemini, api_keys=2, project_id="mika-project")
    client = sdk(live, mixed)
    for _ in range(6):
        assert client.chat.completions.create(**CHAT).choices[0].message.content
    dialects = Counter(r.dialect for r in fake_gemini.requests if r.model)
    assert dialects["openai"] == 4 and dialects["code_assist"] == 2


def test_embeddings_need_an_api_key_credential(live, olga, db, fake_gemini):
    # A 4xx, not a 503: the SDKs retry a 503 although no retry can help.
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=olga.key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="gemini-embedding-001", input="x")
    assert "needs a Gemini API key credential" in raised.value.message
    assert sum(1 for r in fake_gemini.requests if r.model) == 0
    mixed = oauth_persona("mona", fake_gemini, api_keys=1, project_id="p")
    assert sdk(live, mixed).embeddings.create(model="gemini-embedding-001", input="x").data


def test_the_models_list_of_an_oauth_pool_shows_code_assist_models(live, olga):
    ids = {m.id for m in sdk(live, olga).models.list()}
    assert {"gemini-2.5-pro", "gemini-2.5-flash"} <= ids


def test_fifty_concurrent_first_requests_refresh_the_token_once(live, olga, fake_gemini):
    async def many() -> list[int]:
        async with httpx.AsyncClient(base_url=live, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions",
                        json=CHAT,
                        headers={"authorization": f"Bearer {olga.key}"},
                    )
                    for _ in range(50)
                )
            )
        return [r.status_code for r in responses]

    assert asyncio.run(many()) == [200] * 50
    assert fake_gemini.oauth_refresh_count(refresh_tokens(olga)[0]) == 1


def test_a_token_close_to_expiry_is_refreshed_lazily(live, olga, fake_gemini):
    client = sdk(live, olga)
    client.chat.completions.create(**CHAT)
    clock.clock_travel(seconds=3600 - 200)  # inside the 5-minute margin
    client.chat.completions.create(**CHAT)
    assert fake_gemini.oauth_refresh_count(refresh_tokens(olga)[0]) == 2


def test_a_revoked_refresh_token_marks_the_credential_invalid(live, db, fake_gemini):
    rita = oauth_persona("rita", fake_gemini, project_id="p", revoked=True)
    response = httpx.post(
        f"{live}/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {rita.key}"}
    )
    assert response.status_code == 503
    credential = Credential.objects.get(user=rita.user)
    assert credential.status == Credential.Status.INVALID
    assert "refresh token revoked or expired: sign in again" in credential.last_error


def test_a_401_from_code_assist_forces_one_refresh_and_one_retry(live, olga, fake_gemini):
    refresh_token = refresh_tokens(olga)[0]
    sdk(live, olga).chat.completions.create(**CHAT)
    fake_gemini.behave(refresh_token, "unauthenticated", times=1)
    assert sdk(live, olga).chat.completions.create(**CHAT).choices[0].message.content
    assert fake_gemini.oauth_refresh_count(refresh_token) == 2
    assert Credential.objects.get(user=olga.user).status == Credential.Status.ACTIVE


def test_an_account_without_a_project_is_onboarded_and_the_project_kept(live, db, fake_gemini):
    nina = oauth_persona("nina", fake_gemini, onboarded=False)
    assert sdk(live, nina).chat.completions.create(**CHAT).choices[0].message.content
    credential = Credential.objects.get(user=nina.user)
    assert credential.oauth_project_id
    account = fake_gemini.oauth_account(refresh_tokens(nina)[0])
    assert account.project_id == credential.oauth_project_id
    paths = [r.path for r in fake_gemini.requests]
    assert any(p.endswith(":onboardUser") for p in paths)
    onboard = next(r for r in fake_gemini.requests if r.path.endswith(":onboardUser"))
    assert "cloudaicompanionProject" not in onboard.body, "the free tier takes no project"


def test_an_ineligible_account_is_marked_invalid_with_googles_reason(live, db, fake_gemini):
    ivan = oauth_persona(
        "ivan", fake_gemini, onboarded=False, ineligible_reason="VALIDATION_REQUIRED"
    )
    response = httpx.post(
        f"{live}/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {ivan.key}"}
    )
    assert response.status_code == 503
    credential = Credential.objects.get(user=ivan.user)
    assert credential.status == Credential.Status.INVALID
    assert "VALIDATION_REQUIRED" in credential.last_error
    assert "https://" in credential.last_error


def test_code_assist_quota_exhaustion_lasts_as_long_as_google_says(live, olga, fake_gemini):
    fake_gemini.behave(refresh_tokens(olga)[0], "code_assist_quota", reset_after="2h0m0s")
    response = httpx.post(
        f"{live}/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {olga.key}"}
    )
    assert response.status_code == 429
    mark = Mark.objects.get()
    assert mark.reason == Mark.Reason.QUOTA_EXHAUSTED
    remaining = mark.until - clock.now()
    assert timedelta(hours=1, minutes=59) < remaining <= timedelta(hours=2)


def test_code_assist_rate_limits_cool_down_briefly(live, olga, fake_gemini):
    fake_gemini.behave(refresh_tokens(olga)[0], "code_assist_rate_limit", retry_delay="7s")
    response = httpx.post(
        f"{live}/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {olga.key}"}
    )
    assert response.status_code == 429
    assert 6 <= int(response.headers["retry-after"]) <= 7
    assert Mark.objects.get().reason == Mark.Reason.RATE_LIMITED


def test_a_terms_of_service_suspension_is_permanent(live, olga, fake_gemini):
    from rotator.credentials import credentials_recheck

    fake_gemini.behave(refresh_tokens(olga)[0], "permission_denied", variant="tos")
    response = httpx.post(
        f"{live}/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {olga.key}"}
    )
    assert response.status_code == 503
    credential = Credential.objects.get(user=olga.user)
    assert credential.status == Credential.Status.SUSPENDED
    assert "Terms of Service" in credential.last_error
    fake_gemini.reset()
    fake_gemini.oauth_account_add(refresh_token=refresh_tokens(olga)[0], project_id="p")
    summary = credentials_recheck(now=clock.now())
    credential.refresh_from_db()
    assert credential.status == Credential.Status.SUSPENDED, "never retried automatically"
    assert summary.restored == 0


def test_an_invalid_api_key_comes_back_when_the_hourly_check_passes(db, fake_gemini):
    from rotator.credentials import credentials_recheck

    pia = persona_create("pia", credentials=1)
    Credential.objects.filter(user=pia.user).update(status="invalid", last_error="was broken")
    assert credentials_recheck(now=clock.now()).restored == 1
    assert Credential.objects.get(user=pia.user).status == Credential.Status.ACTIVE


def test_a_celery_worker_on_the_redis_broker_runs_tokens_refresh(live, olga, fake_gemini):
    """A real worker process, a real Redis broker."""
    from config.celery import app

    broker = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/15"
    database_url = support_database_url()
    queue = f"test-{settings.STATE_KEY_PREFIX}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": settings.SECRET_KEY,
        "CELERY_BROKER_URL": broker,
        "OAUTH_TOKEN_URL": fake_gemini.oauth_token_url,
        "STATE_KEY_PREFIX": settings.STATE_KEY_PREFIX,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
         "--queues", queue, "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip"],
        env=env, cwd=settings.BASE_DIR,
    )  # fmt: skip
    try:
        with app.connection_for_write(broker) as connection:
            app.send_task("rotator.tasks.tokens_refresh_task", connection=connection, queue=queue)
        deadline = time.monotonic() + 45
        refresh_token = refresh_tokens(olga)[0]
        while fake_gemini.oauth_refresh_count(refresh_token) == 0:
            assert time.monotonic() < deadline, "the worker did not refresh the token"
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.2)
        # The fake counts the refresh when it mints the token; the worker stores it after.
        credential = Credential.objects.get(user=olga.user)
        deadline = time.monotonic() + 30
        while credential.access_token_expires_at <= clock.now() + timedelta(minutes=50):
            assert time.monotonic() < deadline, "the refreshed token was not stored"
            time.sleep(0.1)
            credential.refresh_from_db()
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def test_an_api_key_can_be_registered_for_an_oauth_pool(db):
    from django.contrib.auth.models import User

    user = User.objects.create_user("zed")
    _key, secret = api_key_create(user=user)
    assert secret.startswith("rk-")


def test_oauth_tokens_without_googles_shape_are_masked_by_the_secret_itself(live, fake_gemini):
    """Google's tokens start "ya29." and "1//"; redaction must not depend on it."""
    from tests.support.database import database_text

    persona = persona_create("opal", credentials=0)
    refresh_token = "opaque-refresh-token-for-opal-" + "r" * 20
    fake_gemini.oauth_account_add(
        refresh_token=refresh_token, project_id="opal-project", access_token_prefix="opaque-"
    )
    creds = {"refresh_token": refresh_token, "id_token": _id_token("opal@example.com")}
    credential_add(user=persona.user, oauth=oauth_account_parse(creds))
    # Google's CONSUMER_SUSPENDED message quotes the credential it refused: the access token.
    fake_gemini.behave(refresh_token, "permission_denied", variant="suspended")
    response = httpx.post(
        f"{live}/v1/chat/completions",
        json={"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {persona.key}"},
        timeout=30,
    )
    # The only account is out of the pool now: 503, with Google's words kept for operators.
    assert response.status_code == 503
    [access_token] = fake_gemini.oauth_access_tokens(refresh_token)
    stored = database_text()
    assert "has been suspended" in stored
    for secret in (access_token, refresh_token):
        assert secret not in response.text
        # Credentials are stored encrypted: in plain, a secret could only be in an error.
        assert secret not in stored
