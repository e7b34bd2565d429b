"""Management API: the upstream credentials in each user's pool."""

import base64
import json

import pytest
from rest_framework.test import APIClient

from accounts.models import Credential
from accounts.secrets import mask

MASTER = "master-key-for-tests-0123456789"
NEW_KEY = "AIzaNewKeyForTheApiTests" + "q" * 15


@pytest.fixture
def api(settings, db) -> APIClient:
    settings.MASTER_API_KEY = MASTER
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    return client


def _id_token(email: str) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"email": email}).encode()).decode()
    return f"header.{payload.rstrip('=')}.signature"


def oauth_json(refresh_token: str = "1//refresh-token-of-dora-0001", **extra: object) -> dict:
    return {
        "access_token": "ya29.short-lived-access-token",
        "refresh_token": refresh_token,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "token_type": "Bearer",
        "id_token": _id_token("dora@example.com"),
        "expiry_date": 1_700_000_000_000,
        **extra,
    }


def test_an_api_key_credential_is_added_and_shown_masked(api, charlie):
    response = api.post(
        "/api/credentials/",
        {"user": charlie.user.id, "api_key": NEW_KEY, "label": "team key"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["action"] == "created"
    assert body["credential"]["secret_mask"] == mask(NEW_KEY)
    assert body["credential"]["kind"] == "gemini_api_key"
    assert body["credential"]["label"] == "team key"
    assert NEW_KEY not in response.content.decode()
    stored = Credential.objects.get(id=body["credential"]["id"])
    assert stored.secret() == NEW_KEY
    assert NEW_KEY not in stored.secret_encrypted


def test_credentials_are_listed_and_shown_without_their_secrets(api, alice):
    listed = api.get("/api/credentials/", {"user": alice.user.id})
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [c.id for c in alice.credentials]
    shown = api.get(f"/api/credentials/{alice.credentials[0].id}/")
    assert shown.json()["secret_mask"] == alice.credentials[0].secret_mask
    for response in (listed, shown):
        for secret in alice.upstream_keys:
            assert secret not in response.content.decode()


def test_the_same_api_key_twice_is_reported_as_a_duplicate_not_doubled(api, alice):
    response = api.post(
        "/api/credentials/",
        {"user": alice.user.id, "api_key": alice.upstream_keys[0]},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["action"] == "duplicate"
    assert alice.user.credentials.count() == 3


def test_an_oauth_account_is_added_with_its_email_as_label(api, charlie):
    response = api.post(
        "/api/credentials/",
        {"user": charlie.user.id, "oauth": oauth_json(), "project_label": "proj-a"},
        format="json",
    )
    assert response.status_code == 201
    credential = response.json()["credential"]
    assert credential["kind"] == "gemini_oauth"
    assert credential["label"] == "dora@example.com"
    assert credential["project_label"] == "proj-a"
    assert "1//refresh-token-of-dora-0001" not in response.content.decode()
    assert "ya29" not in response.content.decode()


def test_an_oauth_account_given_as_a_json_string_is_accepted(api, charlie):
    response = api.post(
        "/api/credentials/",
        {"user": charlie.user.id, "oauth": json.dumps(oauth_json())},
        format="json",
    )
    assert response.status_code == 201


def test_the_same_refresh_token_again_updates_the_account(api, charlie):
    api.post("/api/credentials/", {"user": charlie.user.id, "oauth": oauth_json()}, format="json")
    again = api.post(
        "/api/credentials/",
        {"user": charlie.user.id, "oauth": oauth_json(projectId="moved-project")},
        format="json",
    )
    assert again.status_code == 200
    assert again.json()["action"] == "updated"
    assert again.json()["credential"]["oauth_project_id"] == "moved-project"
    assert charlie.user.credentials.count() == 1


def test_a_full_pool_replaces_its_oldest_credential(api, settings, alice):
    settings.MAX_CREDENTIALS = 3
    oldest = alice.credentials[0]
    response = api.post(
        "/api/credentials/", {"user": alice.user.id, "api_key": NEW_KEY}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["action"] == "replaced"
    assert response.json()["replaced_label"] == oldest.display_name
    assert alice.user.credentials.count() == 3
    assert not Credential.objects.filter(id=oldest.id).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"api_key": "not a key"}, "api_key"),
        ({"api_key": "short"}, "api_key"),
        ({"api_key": 12345}, "api_key"),
        ({"oauth": {"access_token": "ya29.no-refresh"}}, "oauth"),
        ({"oauth": "{not json"}, "oauth"),
        ({"oauth": ["a", "list"]}, "oauth"),
        ({"oauth": {"refresh_token": "1//x", "id_token": _id_token("d" * 200 + "@a.b")}}, "oauth"),
        ({"oauth": {"refresh_token": "1//x", "expiry_date": "tomorrow"}}, "oauth"),
        ({}, "non_field_errors"),
        ({"api_key": NEW_KEY, "oauth": {"refresh_token": "1//x"}}, "non_field_errors"),
        ({"api_key": NEW_KEY, "user": 999999}, "user"),
        ({"api_key": NEW_KEY, "user": None}, "user"),
        ({"api_key": NEW_KEY, "label": "x" * 201}, "label"),
    ],
)
def test_bad_credential_input_is_a_400_naming_the_field_and_writes_nothing(
    api, charlie, payload, field
):
    payload = {"user": charlie.user.id, **payload}
    response = api.post("/api/credentials/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Credential.objects.count() == 0


def test_a_credential_can_be_disabled_and_enabled_again(api, alice):
    target = alice.credentials[1]
    disabled = api.post(f"/api/credentials/{target.id}/disable/")
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert target.id not in Credential.objects.in_pool().values_list("id", flat=True)
    enabled = api.post(f"/api/credentials/{target.id}/enable/")
    assert enabled.json()["enabled"] is True
    assert target.id in Credential.objects.in_pool().values_list("id", flat=True)


def test_enabling_an_invalid_credential_returns_it_to_the_pool(api, alice):
    target = alice.credentials[0]
    Credential.objects.filter(id=target.id).update(status=Credential.Status.INVALID)
    response = api.post(f"/api/credentials/{target.id}/enable/")
    assert response.json()["status"] == "active"


def test_a_check_against_upstream_marks_a_refused_key_invalid_and_a_working_one_back(
    api, alice, fake_gemini
):
    target = alice.credentials[0]
    fake_gemini.behave(target.secret(), "invalid_key")
    failed = api.post(f"/api/credentials/{target.id}/check/")
    assert failed.status_code == 200
    assert failed.json()["ok"] is False
    assert failed.json()["message"]
    assert failed.json()["credential"]["status"] == "invalid"
    assert target.secret() not in failed.content.decode()
    fake_gemini.reset()
    passed = api.post(f"/api/credentials/{target.id}/check/")
    assert passed.json()["ok"] is True
    assert passed.json()["credential"]["status"] == "active"


def test_an_oauth_account_is_checked_by_refreshing_its_token(api, charlie, fake_gemini):
    fake_gemini.oauth_account_add(refresh_token="1//refresh-token-of-dora-0001")
    created = api.post(
        "/api/credentials/", {"user": charlie.user.id, "oauth": oauth_json()}, format="json"
    ).json()
    response = api.post(f"/api/credentials/{created['credential']['id']}/check/")
    assert response.json()["ok"] is True
    assert fake_gemini.oauth_refresh_count("1//refresh-token-of-dora-0001") == 1


def test_a_deleted_credential_is_gone_from_the_pool(api, alice):
    target = alice.credentials[2]
    response = api.delete(f"/api/credentials/{target.id}/")
    assert response.status_code == 204
    assert not Credential.objects.filter(id=target.id).exists()
    assert api.get(f"/api/credentials/{target.id}/").status_code == 404


@pytest.mark.parametrize("verb", ["enable", "disable", "check", "clear-marks"])
def test_acting_on_an_unknown_credential_is_a_404(api, db, verb):
    assert api.post(f"/api/credentials/999999/{verb}/").status_code == 404
    assert api.delete("/api/credentials/999999/").status_code == 404
    assert api.patch("/api/credentials/999999/", {}, format="json").status_code == 404


def test_credentials_are_filtered_by_kind_status_enabled_and_search(api, alice, bob):
    Credential.objects.filter(id=bob.credentials[0].id).update(
        status=Credential.Status.INVALID, enabled=False, label="broken one"
    )
    api.post("/api/credentials/", {"user": bob.user.id, "oauth": oauth_json()}, format="json")

    def ids(**query: str) -> list[int]:
        return [row["id"] for row in api.get("/api/credentials/", query).json()["results"]]

    assert ids(status="invalid") == [bob.credentials[0].id]
    assert ids(enabled="false") == [bob.credentials[0].id]
    assert len(ids(kind="gemini_oauth")) == 1
    assert ids(search="broken") == [bob.credentials[0].id]
    assert len(ids(user=str(alice.user.id), kind="gemini_api_key")) == 3
    newest_first = ids(ordering="-created_at")
    assert newest_first[0] not in [c.id for c in alice.credentials + bob.credentials]


def test_a_bad_credential_filter_is_a_400(api, db):
    response = api.get("/api/credentials/", {"kind": "password", "user": "me"})
    assert response.status_code == 400
    assert set(response.json()) == {"kind", "user"}
