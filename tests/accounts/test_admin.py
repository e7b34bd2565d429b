"""The admin: every page masks secrets, and each action and form does what an operator expects."""

import json
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.models import ApiKey, Credential
from accounts.services import credential_add, oauth_account_parse
from common import clock
from rotator.credentials import credential_check
from rotator.models import KeyRateWindow, Mark, PoolState, UpstreamErrorLog
from stats.models import UsageCounter
from tests.conftest import Persona

REFRESH_TOKEN = "1//0gFakeRefreshTokenForAdminTests-abcdefghijklmnop"
CLIENT_SECRET = "GOCSPX-FakeClientSecretForAdmin1234"


@dataclass
class World:
    """Everything secret that exists in the database, and the rows that hold it."""

    alice: Persona
    bob: Persona
    oauth: Credential
    secrets: set[str] = field(default_factory=set)

    def secrets_refresh(self, *extra: str) -> None:
        """Adds every secret now derivable from the database: plaintexts, ciphertexts, digests."""
        self.secrets.update(extra)
        for credential in Credential.objects.all():
            self.secrets.add(credential.secret())
            self.secrets.add(credential.secret_encrypted)
            self.secrets.add(credential.secret_digest)
            for column in ("access_token_encrypted", "oauth_client_secret_encrypted"):
                if getattr(credential, column):
                    self.secrets.add(getattr(credential, column))
        for digest in ApiKey.objects.values_list("digest", flat=True):
            self.secrets.add(digest)
        self.secrets.discard("")

    def leaks(self, html: str) -> list[str]:
        return [secret for secret in self.secrets if secret in html]


@pytest.fixture
def world(alice: Persona, bob: Persona, fake_gemini) -> World:
    now = clock.now()
    fake_gemini.oauth_account_add(refresh_token=REFRESH_TOKEN, email="carol@example.com")
    oauth = credential_add(
        user=alice.user,
        oauth=oauth_account_parse({"refresh_token": REFRESH_TOKEN, "access_token": "ya29.stale"}),
        oauth_client_secret=CLIENT_SECRET,
    ).credential
    assert credential_check(credential=oauth, now=now).ok  # stores an encrypted access token
    oauth.refresh_from_db()
    assert oauth.access_token_encrypted
    first = alice.credentials[0]
    Mark.objects.create(
        credential=first,
        model="gemini-2.5-pro",
        reason=Mark.Reason.RATE_LIMITED,
        until=now + timedelta(minutes=5),
        message="Resource has been exhausted (e.g. check quota).",
    )
    UpstreamErrorLog.objects.create(
        credential=first,
        at=now,
        model="gemini-2.5-pro",
        status=429,
        outcome="rate_limited",
        message="You exceeded your current quota.",
    )
    UsageCounter.objects.create(
        bucket=f"{clock.quota_day(now)}:{alice.api_key.pk}:{first.pk}:gemini-2.5-pro",
        day=clock.quota_day(now),
        user=alice.user,
        api_key=alice.api_key,
        credential=first,
        credential_label=first.display_name,
        model="gemini-2.5-pro",
        requests=7,
        successes=6,
        failures=1,
        total_tokens=1234,
    )
    KeyRateWindow.objects.create(
        api_key=alice.api_key, window="m:1", count=3, expires_at=now + timedelta(minutes=1)
    )
    found = World(alice=alice, bob=bob, oauth=oauth)
    found.secrets_refresh(
        alice.key,
        bob.key,
        REFRESH_TOKEN,
        CLIENT_SECRET,
        "ya29.stale",
        *fake_gemini.oauth_access_tokens(REFRESH_TOKEN),
    )
    return found


def _admin_pages(world: World) -> list[str]:
    """Changelist, change, history and delete pages of every row of every registered model,
    every add form, and the import page."""
    urls = [reverse("admin:index"), reverse("admin:accounts_credential_import")]
    for model in admin.site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls.append(reverse(f"{name}_changelist"))
        urls.append(reverse(f"{name}_add"))
        for pk in model._default_manager.values_list("pk", flat=True):
            urls.append(reverse(f"{name}_change", args=[pk]))
            urls.append(reverse(f"{name}_history", args=[pk]))
            urls.append(reverse(f"{name}_delete", args=[pk]))
    return urls


def _credential_change_data(credential: Credential, **changes: object) -> dict[str, object]:
    shown = UpstreamErrorLog.objects.filter(credential=credential).count()
    data = {
        "label": credential.label,
        "project_label": credential.project_label,
        "enabled": "on" if credential.enabled else "",
        "position": credential.position,
        "oauth_project_id": credential.oauth_project_id,
        "error_log-TOTAL_FORMS": min(shown, 10),
        "error_log-INITIAL_FORMS": min(shown, 10),
        "error_log-MIN_NUM_FORMS": 0,
        "error_log-MAX_NUM_FORMS": 0,
        **changes,
    }
    return {key: value for key, value in data.items() if value != ""}


def test_every_registered_model_has_an_admin_page(world, admin_client):
    registered = {model._meta.label for model in admin.site._registry}
    assert {
        "auth.User",
        "accounts.ApiKey",
        "accounts.Credential",
        "rotator.PoolState",
        "rotator.Mark",
        "rotator.UpstreamErrorLog",
        "stats.UsageCounter",
    } <= registered


def test_no_admin_page_shows_a_secret(world, admin_client):
    # Make some history first, so that history pages have entries to show.
    credential = world.alice.credentials[1]
    url = reverse("admin:accounts_credential_change", args=[credential.pk])
    response = admin_client.post(url, _credential_change_data(credential, label="renamed"))
    assert response.status_code == 302, response.content.decode()[:2000]
    pages = _admin_pages(world)
    assert len(pages) > 40
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code in (200, 403), page
        html = response.content.decode()
        assert world.leaks(html) == [], page


def test_the_admin_history_holds_no_secret(world, admin_client):
    credential = world.alice.credentials[0]
    url = reverse("admin:accounts_credential_change", args=[credential.pk])
    admin_client.post(url, _credential_change_data(credential, label="main key"))
    admin_client.post(
        reverse("admin:accounts_credential_import"),
        {"user": world.bob.user.pk, "text": "AIzaImportedForHistory000000000000000000"},
    )
    world.secrets_refresh("AIzaImportedForHistory000000000000000000")
    entries = list(LogEntry.objects.values_list("object_repr", "change_message"))
    assert len(entries) == 2
    assert world.leaks(json.dumps(entries)) == []


def test_the_credential_list_shows_state_cooldowns_and_usage_today(world, admin_client):
    html = admin_client.get(reverse("admin:accounts_credential_changelist")).content.decode()
    first = world.alice.credentials[0]
    assert first.secret_mask in html
    assert "gemini-2.5-pro: rate_limited until" in html
    assert ">7<" in html  # requests today
    assert "Import credentials" in html


def test_the_credential_page_lists_recent_upstream_errors(world, admin_client):
    first = world.alice.credentials[0]
    url = reverse("admin:accounts_credential_change", args=[first.pk])
    html = admin_client.get(url).content.decode()
    assert "You exceeded your current quota." in html
    assert "gemini-2.5-pro: rate_limited until" in html
    assert "Google restricts third-party use" not in html


def test_an_oauth_credential_page_warns_about_account_suspension(world, admin_client):
    url = reverse("admin:accounts_credential_change", args=[world.oauth.pk])
    html = admin_client.get(url).content.decode()
    assert "Google restricts third-party use of Gemini CLI sign-in" in html
    assert "suspensions are permanent" in html


def test_a_new_api_key_is_shown_once_and_never_again(world, admin_client):
    response = admin_client.post(
        reverse("admin:accounts_apikey_add"),
        {"user": world.bob.user.pk, "name": "ci", "allowed_models": "gemini-2.5-flash"},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    created = ApiKey.objects.get(name="ci")
    secret = response.context["created"][0][1]
    assert secret in response.content.decode()
    assert created.allowed_models == ["gemini-2.5-flash"]
    for page in (
        reverse("admin:accounts_apikey_changelist"),
        reverse("admin:accounts_apikey_change", args=[created.pk]),
        reverse("admin:accounts_apikey_history", args=[created.pk]),
    ):
        assert secret not in admin_client.get(page).content.decode()


def test_an_existing_key_can_be_registered_without_being_echoed_on_error(world, admin_client):
    url = reverse("admin:accounts_apikey_add")
    response = admin_client.post(url, {"user": world.bob.user.pk, "secret": world.alice.key})
    html = response.content.decode()
    assert "already registered" in html
    assert world.alice.key not in html


def test_the_create_key_action_shows_each_new_key_once(world, admin_client):
    response = admin_client.post(
        reverse("admin:auth_user_changelist"),
        {
            "action": "create_api_key",
            "_selected_action": [world.alice.user.pk, world.bob.user.pk],
        },
    )
    assert response.status_code == 200
    created = response.context["created"]
    assert len(created) == 2
    for api_key, secret in created:
        assert secret in response.content.decode()
        assert api_key.prefix == f"{secret[:4]}…{secret[-4:]}"


def test_the_revoke_action_revokes_keys(world, admin_client):
    admin_client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [world.alice.api_key.pk]},
    )
    world.alice.api_key.refresh_from_db()
    assert world.alice.api_key.revoked
    assert world.alice.api_key.revoked_at is not None
    html = admin_client.get(reverse("admin:accounts_apikey_changelist")).content.decode()
    assert "revoked" in html


def test_adding_a_credential_in_a_full_pool_replaces_the_oldest(world, admin_client, settings):
    settings.MAX_CREDENTIALS = 4  # alice has three API keys and an OAuth account
    oldest = world.alice.credentials[0]
    new_key = "AIzaAddedThroughTheAdmin0000000000000000"
    response = admin_client.post(
        reverse("admin:accounts_credential_add"),
        {
            "user": world.alice.user.pk,
            "kind": Credential.Kind.GEMINI_API_KEY,
            "label": "fresh",
            "secret": new_key,
        },
        follow=True,
    )
    html = response.content.decode()
    assert "Added fresh" in html
    assert f"its oldest, {oldest.display_name}, was removed" in html
    assert not Credential.objects.filter(pk=oldest.pk).exists()
    assert Credential.objects.filter(user=world.alice.user).count() == 4
    assert new_key not in html


def test_adding_the_same_credential_twice_is_reported_not_doubled(world, admin_client):
    existing = world.alice.credentials[1]
    response = admin_client.post(
        reverse("admin:accounts_credential_add"),
        {
            "user": world.alice.user.pk,
            "kind": Credential.Kind.GEMINI_API_KEY,
            "secret": existing.secret(),
        },
        follow=True,
    )
    assert "is already in alice&#x27;s pool; nothing added" in response.content.decode()
    assert Credential.objects.filter(user=world.alice.user).count() == 4


def test_an_oauth_file_can_be_added_through_the_admin(world, admin_client):
    document = {"refresh_token": "1//0gAnotherRefreshTokenForUpload-xyzxyzxyz", "token_type": "x"}
    upload = SimpleUploadedFile("oauth_creds.json", json.dumps(document).encode())
    response = admin_client.post(
        reverse("admin:accounts_credential_add"),
        {"user": world.bob.user.pk, "kind": Credential.Kind.GEMINI_OAUTH, "oauth_file": upload},
    )
    assert response.status_code == 302
    added = Credential.objects.get(user=world.bob.user, kind=Credential.Kind.GEMINI_OAUTH)
    assert json.loads(added.secret())["refresh_token"] == document["refresh_token"]


def test_a_rejected_secret_is_not_echoed_back_into_the_form(world, admin_client):
    not_a_key = "this is not a key but is secret-ish 12345"
    response = admin_client.post(
        reverse("admin:accounts_credential_add"),
        {"user": world.bob.user.pk, "kind": Credential.Kind.GEMINI_API_KEY, "secret": not_a_key},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "does not look like a Gemini API key" in html
    assert not_a_key not in html
    broken_json = '{"refresh_token": "1//0gBrokenJsonSecret-aaaaaaaaaaaaaaaaaaaa",'
    response = admin_client.post(
        reverse("admin:accounts_credential_add"),
        {"user": world.bob.user.pk, "kind": Credential.Kind.GEMINI_OAUTH, "secret": broken_json},
    )
    html = response.content.decode()
    assert "must be a JSON object" in html
    assert "1//0gBrokenJsonSecret" not in html


def test_the_import_page_reports_duplicates_and_rejected_lines(world, admin_client):
    fresh = "AIzaPastedIntoTheImportPage0000000000000"
    existing = world.bob.credentials[0].secret()
    text = f"# bob's keys\n{fresh}\n{existing}\n{fresh}\nnot a key at all\n"
    response = admin_client.post(
        reverse("admin:accounts_credential_import"), {"user": world.bob.user.pk, "text": text}
    )
    html = response.content.decode()
    summary = response.context["results"][0][1]
    assert (summary.created, summary.duplicates) == (1, 2)
    assert summary.errors == [
        "line 5: That does not look like a Gemini API key (20 to 200 letters, digits, '.', "
        "'_', '-')."
    ]
    assert "line 5: That does not look like a Gemini API key" in html
    assert Credential.objects.filter(user=world.bob.user).count() == 3
    for secret in (fresh, existing, "not a key at all"):
        assert secret not in html


def test_several_oauth_files_can_be_imported_at_once(world, admin_client):
    tokens = [f"1//0gImportedFile{n}-abcdefghijklmnopqrstuv" for n in range(3)]
    files = [
        SimpleUploadedFile("one.json", json.dumps({"refresh_token": tokens[0]}).encode()),
        SimpleUploadedFile(
            "two.json", json.dumps([{"refresh_token": t} for t in tokens[1:]]).encode()
        ),
        SimpleUploadedFile("bad.json", b"\xff\xfe not text"),
    ]
    response = admin_client.post(
        reverse("admin:accounts_credential_import"),
        {"user": world.bob.user.pk, "uploads": files},
    )
    html = response.content.decode()
    assert [(source, s.created if s else None) for source, s in response.context["results"]] == [
        ("file one.json", 1),
        ("file two.json", 2),
        ("file bad.json", None),
    ]
    assert "not UTF-8 text" in html
    assert Credential.objects.filter(user=world.bob.user, kind="gemini_oauth").count() == 3
    for token in tokens:
        assert token not in html


def test_enable_and_disable_actions_change_the_pool(world, admin_client):
    url = reverse("admin:accounts_credential_changelist")
    ids = [c.pk for c in world.bob.credentials]
    Credential.objects.filter(pk=ids[0]).update(status=Credential.Status.INVALID)
    admin_client.post(url, {"action": "disable", "_selected_action": ids})
    assert not Credential.objects.filter(pk__in=ids, enabled=True).exists()
    admin_client.post(url, {"action": "enable", "_selected_action": ids})
    assert Credential.objects.in_pool().filter(pk__in=ids).count() == 2


def test_clear_cooldowns_action_removes_the_marks(world, admin_client):
    first = world.alice.credentials[0]
    response = admin_client.post(
        reverse("admin:accounts_credential_changelist"),
        {"action": "clear_cooldowns", "_selected_action": [first.pk]},
        follow=True,
    )
    assert "Cleared 1 cooldown mark(s)." in response.content.decode()
    assert not Mark.objects.filter(credential=first).exists()


def test_check_action_reports_upstreams_verdict(world, admin_client, fake_gemini):
    good, bad = world.bob.credentials
    fake_gemini.behave(bad.secret(), "invalid_key")
    response = admin_client.post(
        reverse("admin:accounts_credential_changelist"),
        {"action": "check_upstream", "_selected_action": [good.pk, bad.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert f"{good.display_name}: ok" in html
    assert f"{bad.display_name}: failed" in html
    bad.refresh_from_db()
    assert bad.status == Credential.Status.INVALID
    assert bad.secret() not in html


@pytest.mark.parametrize(
    "changelist", ["admin:auth_user_changelist", "admin:rotator_poolstate_changelist"]
)
def test_the_rotate_action_moves_a_pool_to_its_next_credential(world, admin_client, changelist):
    response = admin_client.post(
        reverse(changelist),
        {"action": "pools_rotate", "_selected_action": [world.bob.user.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "is now first of 2" in html
    assert PoolState.objects.get(user=world.bob.user).rotated_at is not None


def test_a_pool_strategy_change_keeps_the_cursor(world, admin_client):
    state = PoolState.objects.get(user=world.bob.user)
    PoolState.objects.filter(pk=state.pk).update(cursor=41)
    response = admin_client.post(
        reverse("admin:rotator_poolstate_change", args=[state.pk]), {"strategy": "fill_first"}
    )
    assert response.status_code == 302
    state.refresh_from_db()
    assert (state.strategy, state.cursor) == ("fill_first", 41)
