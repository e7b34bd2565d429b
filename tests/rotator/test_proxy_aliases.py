"""Model aliases through real HTTP and the official SDKs: the client's name shown back, the
Gemini model called, counted and listed, changes seen at once by every server process."""

import importlib
import json

import anthropic
import httpx
import openai
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from common import clock
from rotator.models import ModelAlias
from stats.models import UsageCounter
from stats.selectors import stat_dashboard
from stats.usage import usage_flush
from tests.conftest import persona_create
from tests.rotator.test_oauth import oauth_persona
from tests.rotator.test_proxy_anthropic import CLAUDE_CODE_REQUEST
from tests.support.processes import Rotator

MASTER = "rotator-master-key-for-alias-tests"
HELLO = [{"role": "user", "content": "hello there friend"}]


def default_aliases_install() -> None:
    """The data migration's default set (the test database is emptied between live tests)."""
    migration = importlib.import_module("rotator.migrations.0005_default_aliases")
    for name, target in migration.DEFAULT_ALIASES:
        ModelAlias.objects.get_or_create(user=None, name=name, defaults={"target": target})


def upstream_models(fake_gemini) -> list[str]:
    return [r.model for r in fake_gemini.requests if r.model]


def test_a_claude_code_request_is_served_by_the_default_alias_and_shows_its_own_name(
    live, alice, fake_gemini
):
    default_aliases_install()
    claude = anthropic.Anthropic(base_url=live, api_key=alice.key, max_retries=0)
    message = claude.messages.create(
        model="claude-sonnet-4-5-20250929", max_tokens=256, messages=HELLO
    )
    assert message.model == "claude-sonnet-4-5-20250929"
    assert message.content[0].type == "text" and message.content[0].text
    with claude.messages.stream(
        model="claude-3-5-haiku-20241022", max_tokens=64, messages=HELLO
    ) as stream:
        final = stream.get_final_message()
    assert final.model == "claude-3-5-haiku-20241022"
    assert upstream_models(fake_gemini) == ["gemini-2.5-pro", "gemini-2.5-flash"]


def test_usage_rows_record_the_gemini_model_and_the_name_asked_for(
    live, settings, alice, fake_gemini
):
    settings.MASTER_API_KEY = MASTER
    default_aliases_install()
    claude = anthropic.Anthropic(base_url=live, api_key=alice.key, max_retries=0)
    claude.messages.create(model="claude-opus-4-1-20250805", max_tokens=64, messages=HELLO)
    chat = openai.OpenAI(base_url=f"{live}/v1", api_key=alice.key, max_retries=0)
    chat.chat.completions.create(model="gemini-2.5-pro", messages=HELLO)
    usage_flush()
    rows = {
        (row.requested_model, row.model, row.successes)
        for row in UsageCounter.objects.filter(user=alice.user)
    }
    assert rows == {
        ("claude-opus-4-1-20250805", "gemini-2.5-pro", 1),
        ("gemini-2.5-pro", "gemini-2.5-pro", 1),
    }
    summed = httpx.get(
        f"{live}/api/usage/",
        params={"group_by": "requested_model,model", "ordering": "requested_model"},
        headers={"authorization": f"Bearer {MASTER}"},
    ).json()["results"]
    assert [(row["requested_model"], row["model"], row["requests"]) for row in summed] == [
        ("claude-opus-4-1-20250805", "gemini-2.5-pro", 1),
        ("gemini-2.5-pro", "gemini-2.5-pro", 1),
    ]
    # /stat's "Model aliases today" card reads this.
    aliased = stat_dashboard(user_id=alice.user.id, now=clock.now())["aliased"]
    assert [(a["requested_model"], a["model"], a["requests"]) for a in aliased] == [
        ("claude-opus-4-1-20250805", "gemini-2.5-pro", 1)
    ]


def test_a_users_alias_wins_over_a_global_one(live, alice, bob, fake_gemini):
    ModelAlias.objects.create(name="gpt-4o*", target="gemini-2.5-flash")
    ModelAlias.objects.create(user=alice.user, name="gpt-4o*", target="gemini-2.5-pro")
    for persona in (alice, bob):
        client = openai.OpenAI(base_url=f"{live}/v1", api_key=persona.key, max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert answer.model == "gpt-4o-mini"
        responses = client.responses.create(model="gpt-4o", input="hello there")
        assert responses.model == "gpt-4o"
    assert upstream_models(fake_gemini) == ["gemini-2.5-pro"] * 2 + ["gemini-2.5-flash"] * 2


def test_an_unknown_name_without_an_alias_behaves_as_before(live, alice, fake_gemini):
    default_aliases_install()
    client = openai.OpenAI(base_url=f"{live}/v1", api_key=alice.key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="claude-instant-1", messages=HELLO)
    assert set(upstream_models(fake_gemini)) == {"claude-instant-1"}


def test_the_models_lists_show_the_exact_aliases_a_user_may_call(live, alice, bob):
    default_aliases_install()
    ModelAlias.objects.create(name="claude-sonnet-4-5", target="gemini-2.5-pro")
    ModelAlias.objects.create(user=alice.user, name="claude-haiku-4-5", target="gemini-2.5-flash")
    claude = anthropic.Anthropic(base_url=live, api_key=alice.key, max_retries=0)
    models = {model.id: model for model in claude.models.list()}
    assert {"claude-sonnet-4-5", "claude-haiku-4-5"} <= set(models)
    assert models["claude-sonnet-4-5"].type == "model"
    assert "Gemini 2.5 Pro" in models["claude-sonnet-4-5"].display_name
    assert not any("*" in name for name in models)  # patterns name no model
    assert claude.models.retrieve("claude-haiku-4-5").id == "claude-haiku-4-5"
    bobs = {m.id for m in openai.OpenAI(base_url=f"{live}/v1", api_key=bob.key).models.list()}
    assert "claude-sonnet-4-5" in bobs and "claude-haiku-4-5" not in bobs
    native = httpx.get(f"{live}/v1beta/models", headers={"x-goog-api-key": bob.key}).json()
    assert "models/claude-sonnet-4-5" in {m["name"] for m in native["models"]}


def test_a_keys_allowed_models_name_gemini_models_or_the_alias_itself(live, fake_gemini):
    ModelAlias.objects.create(name="claude-*", target="gemini-2.5-pro")
    by_target = persona_create("tara", credentials=1, allowed_models=["gemini-2.5-pro"])
    by_alias = persona_create("aldo", credentials=1, allowed_models=["claude-opus-4-1"])
    elsewhere = persona_create("ezra", credentials=1, allowed_models=["gemini-2.5-flash"])
    for persona in (by_target, by_alias):
        claude = anthropic.Anthropic(base_url=live, api_key=persona.key, max_retries=0)
        claude.messages.create(model="claude-opus-4-1", max_tokens=16, messages=HELLO)
    claude = anthropic.Anthropic(base_url=live, api_key=elsewhere.key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError, match="claude-opus-4-1"):
        claude.messages.create(model="claude-opus-4-1", max_tokens=16, messages=HELLO)
    assert upstream_models(fake_gemini) == ["gemini-2.5-pro"] * 2


@pytest.mark.django_db(transaction=True)
def test_an_alias_made_through_the_api_takes_effect_at_once_in_another_process(fake_gemini):
    hana = persona_create("hana", credentials=2)
    servers = [Rotator(fake_gemini, env={"MASTER_API_KEY": MASTER}) for _ in range(2)]
    try:
        for server in servers:
            server.wait_answering()
        api, proxy = (f"http://127.0.0.1:{server.port}" for server in servers)
        chat = openai.OpenAI(base_url=f"{proxy}/v1", api_key=hana.key, max_retries=0)
        with pytest.raises(openai.NotFoundError):  # the proxy has read the aliases: none
            chat.chat.completions.create(model="house-model", messages=HELLO)
        master = {"authorization": f"Bearer {MASTER}"}
        created = httpx.post(
            f"{api}/api/aliases/",
            json={"name": "house-*", "target": "gemini-2.5-flash"},
            headers=master,
        )
        assert created.status_code == 201, created.text
        assert created.json()["user"] is None
        answer = chat.chat.completions.create(model="house-model", messages=HELLO)
        assert answer.model == "house-model"
        changed = httpx.patch(
            f"{api}/api/aliases/{created.json()['id']}/",
            json={"target": "gemini-2.5-pro"},
            headers=master,
        )
        assert changed.status_code == 200, changed.text
        chat.chat.completions.create(model="house-model", messages=HELLO)
        assert (
            httpx.delete(f"{api}/api/aliases/{created.json()['id']}/", headers=master).status_code
            == 204
        )
        # Deleted: no longer served by gemini-2.5-pro (the name itself is still marked as
        # missing upstream from the first request, so the pool refuses it without asking).
        with pytest.raises(openai.APIStatusError):
            chat.chat.completions.create(model="house-model", messages=HELLO)
    finally:
        for server in servers:
            server.stop()
    served = upstream_models(fake_gemini)
    assert set(served[:-2]) == {"house-model"}  # before the alias: the name itself, tried
    assert served[-2:] == ["gemini-2.5-flash", "gemini-2.5-pro"]


def test_the_api_refuses_a_duplicate_or_a_malformed_alias(live, settings, alice):
    settings.MASTER_API_KEY = MASTER
    master = {"authorization": f"Bearer {MASTER}"}
    body = {"name": "claude-x-*", "target": "gemini-2.5-pro"}
    assert httpx.post(f"{live}/api/aliases/", json=body, headers=master).status_code == 201
    duplicate = httpx.post(f"{live}/api/aliases/", json=body, headers=master)
    assert duplicate.status_code == 400
    mine = httpx.post(f"{live}/api/aliases/", json={**body, "user": alice.user.id}, headers=master)
    assert mine.status_code == 201 and mine.json()["user"] == alice.user.id
    for bad in (
        {"name": "a b", "target": "gemini-2.5-pro"},
        {"name": "x", "target": "gem*"},
        {"name": "x"},
    ):
        assert httpx.post(f"{live}/api/aliases/", json=bad, headers=master).status_code == 400
    listed = httpx.get(f"{live}/api/aliases/", params={"is_global": "true"}, headers=master)
    assert [a["name"] for a in listed.json()["results"]] == ["claude-x-*"]


def test_an_alias_saved_in_the_admin_serves_the_next_request(live, alice, fake_gemini, client):
    operator = User.objects.create_superuser(username="root", password="root-password-1")
    client.force_login(operator)
    added = client.post(
        reverse("admin:rotator_modelalias_add"),
        {"user": alice.user.id, "name": "house-*", "target": "gemini-2.5-pro"},
    )
    assert added.status_code == 302, added.content
    chat = openai.OpenAI(base_url=f"{live}/v1", api_key=alice.key, max_retries=0)
    assert chat.chat.completions.create(model="house-a", messages=HELLO).model == "house-a"
    duplicate = client.post(
        reverse("admin:rotator_modelalias_add"),
        {"user": alice.user.id, "name": "house-*", "target": "gemini-2.5-flash"},
    )
    assert duplicate.status_code == 200
    assert b"This user already has an alias with this name." in duplicate.content
    alias = ModelAlias.objects.get()
    changed = client.post(
        reverse("admin:rotator_modelalias_change", args=[alias.id]),
        {"user": alice.user.id, "name": "house-*", "target": "gemini-2.5-flash"},
    )
    assert changed.status_code == 302
    chat.chat.completions.create(model="house-b", messages=HELLO)
    assert upstream_models(fake_gemini) == ["gemini-2.5-pro", "gemini-2.5-flash"]


@pytest.mark.parametrize("kind", ["api_key", "oauth"])
def test_the_recorded_claude_code_request_is_served_under_its_own_model_name(
    live, db, fake_gemini, kind
):
    default_aliases_install()
    if kind == "api_key":
        persona = persona_create("cody", credentials=2)
    else:
        persona = oauth_persona("olga", fake_gemini, project_id="olga-project")
    body = json.loads(CLAUDE_CODE_REQUEST.read_text())
    assert body["model"] == "claude-sonnet-4-5-20250929"
    claude = anthropic.Anthropic(base_url=live, auth_token=persona.key, max_retries=0)
    core = {key: body.pop(key) for key in ("model", "max_tokens", "messages")}
    body.pop("stream")
    with claude.messages.stream(**core, extra_body=body) as stream:
        final = stream.get_final_message()
    assert final.model == "claude-sonnet-4-5-20250929"
    assert final.content[-1].type == "text"
    assert upstream_models(fake_gemini) == ["gemini-2.5-pro"]


def test_an_alias_changed_elsewhere_serves_the_next_request_without_a_read_of_its_own(
    live, fake_gemini
):
    """The server confirms its alias table inside the pick, not with a read per request: an
    alias saved while it holds an older table (the signal only raises the shared version, as
    a save in another process does) still decides the very next request, streamed or not,
    and lifts a refusal made on the older table."""
    tara = persona_create("tara", credentials=2, allowed_models=["gemini-2.5-pro"])
    chat = openai.OpenAI(base_url=f"{live}/v1", api_key=tara.key, max_retries=0)
    chat.chat.completions.create(model="gemini-2.5-pro", messages=HELLO)  # table read: empty
    with pytest.raises(openai.PermissionDeniedError):
        chat.chat.completions.create(model="house-model", messages=HELLO)
    alias = ModelAlias.objects.create(name="house-*", target="gemini-2.5-pro")
    assert chat.chat.completions.create(model="house-model", messages=HELLO).model == "house-model"

    ModelAlias.objects.filter(pk=alias.pk).update(target="gemini-2.5-flash")
    alias.refresh_from_db()
    alias.save()  # the signal: the shared version rises, this process's table is now older
    tara.api_key.allowed_models = []
    tara.api_key.save()
    chat.chat.completions.create(model="house-model", messages=HELLO)

    alias.target = "gemini-2.5-pro"
    alias.save()
    streamed = chat.chat.completions.create(model="house-model", messages=HELLO, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert upstream_models(fake_gemini) == [
        "gemini-2.5-pro",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-pro",
    ]
