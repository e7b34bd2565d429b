"""Management API: users and the Rotator API keys they hold."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.secrets import digest
from common import clock

MASTER = "master-key-for-tests-0123456789"


@pytest.fixture
def api(settings, db) -> APIClient:
    settings.MASTER_API_KEY = MASTER
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    return client


# ---------------------------------------------------------------------------------- users


def test_users_are_listed_with_how_many_keys_and_credentials_they_hold(api, alice, bob, charlie):
    response = api.get("/api/users/", {"ordering": "username"})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    rows = {row["username"]: row for row in body["results"]}
    assert [row["username"] for row in body["results"]] == ["alice", "bob", "charlie"]
    assert (rows["alice"]["api_keys"], rows["alice"]["credentials"]) == (1, 3)
    assert (rows["charlie"]["api_keys"], rows["charlie"]["credentials"]) == (1, 0)


def test_the_user_list_pages_with_limit_and_offset(api, alice, bob, charlie):
    first = api.get("/api/users/", {"limit": 2, "ordering": "-username"}).json()
    assert [row["username"] for row in first["results"]] == ["charlie", "bob"]
    assert first["next"]
    second = api.get("/api/users/", {"limit": 2, "offset": 2, "ordering": "-username"}).json()
    assert [row["username"] for row in second["results"]] == ["alice"]
    assert second["next"] is None


def test_users_can_be_searched_and_filtered_by_staff_status(api, alice, bob):
    User.objects.create_user(username="ops", is_staff=True)
    assert [r["username"] for r in api.get("/api/users/", {"search": "AL"}).json()["results"]] == [
        "alice"
    ]
    staff = api.get("/api/users/", {"is_staff": "true"}).json()["results"]
    assert [row["username"] for row in staff] == ["ops"]


def test_a_bad_filter_value_is_a_400_naming_the_field(api, alice):
    response = api.get("/api/users/", {"is_staff": "perhaps", "ordering": "password"})
    assert response.status_code == 400
    assert set(response.json()) == {"is_staff", "ordering"}


def test_a_user_is_created_without_a_password_and_without_staff_rights(api):
    response = api.post("/api/users/", {"username": "dave"}, format="json")
    assert response.status_code == 201
    assert response.json()["username"] == "dave"
    assert response.json()["api_keys"] == 0
    dave = User.objects.get(username="dave")
    assert not dave.is_staff
    assert not dave.has_usable_password()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "username"),
        ({"username": "alice"}, "username"),
        ({"username": "no spaces please"}, "username"),
        ({"username": ["dave"]}, "username"),
        ({"username": "dave", "email": "not-an-address"}, "email"),
    ],
)
def test_a_bad_user_is_refused_field_by_field_and_nothing_is_created(api, alice, payload, field):
    before = User.objects.count()
    response = api.post("/api/users/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert User.objects.count() == before


def test_one_user_is_shown_by_id_and_an_unknown_id_is_a_json_404(api, alice):
    response = api.get(f"/api/users/{alice.user.id}/")
    assert response.status_code == 200
    assert response.json()["credentials"] == 3
    missing = api.get("/api/users/999999/")
    assert missing.status_code == 404
    assert missing.json()["detail"]


def test_an_unknown_api_route_answers_in_json(api):
    response = api.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert "Unknown API route" in response.json()["detail"]


# ------------------------------------------------------------------------------- API keys


def test_a_created_key_shows_its_secret_once_and_only_its_mask_afterwards(api, charlie):
    response = api.post("/api/keys/", {"user": charlie.user.id, "name": "ci"}, format="json")
    assert response.status_code == 201
    created = response.json()
    secret = created["secret"]
    assert ApiKey.objects.get(id=created["id"]).digest == digest(secret)
    assert created["prefix"] == ApiKey.objects.get(id=created["id"]).prefix
    assert secret not in created["prefix"]
    listed = api.get("/api/keys/", {"user": charlie.user.id})
    shown = api.get(f"/api/keys/{created['id']}/")
    for later in (listed, shown):
        assert later.status_code == 200
        assert secret not in later.content.decode()
        assert "secret" not in later.content.decode()


def test_a_key_carries_its_limits_allowed_models_and_expiry(api, charlie):
    expires = (clock.now() + timedelta(days=30)).replace(microsecond=0)
    response = api.post(
        "/api/keys/",
        {
            "user": charlie.user.id,
            "name": "limited",
            "allowed_models": ["models/gemini-2.5-flash"],
            "requests_per_minute": 10,
            "requests_per_day": 500,
            "expires_at": expires.isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201
    api_key = ApiKey.objects.get(id=response.json()["id"])
    assert api_key.allowed_models == ["gemini-2.5-flash"]
    assert (api_key.requests_per_minute, api_key.requests_per_day) == (10, 500)
    assert api_key.expires_at == expires
    listed = api.get("/api/keys/", {"search": "limited"}).json()["results"]
    assert listed[0]["allowed_models"] == ["gemini-2.5-flash"]
    assert listed[0]["last_used_at"] is None


def test_a_key_clients_already_use_can_be_registered(api, charlie):
    response = api.post(
        "/api/keys/",
        {"user": charlie.user.id, "secret": "sk-legacy-client-key-0001"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["secret"] == "sk-legacy-client-key-0001"
    assert ApiKey.objects.filter(digest=digest("sk-legacy-client-key-0001")).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "user"),
        ({"user": 999999}, "user"),
        ({"user": "alice"}, "user"),
        ({"user": "{alice}", "requests_per_minute": 0}, "requests_per_minute"),
        ({"user": "{alice}", "requests_per_day": "lots"}, "requests_per_day"),
        ({"user": "{alice}", "allowed_models": "gemini-2.5-flash"}, "allowed_models"),
        ({"user": "{alice}", "expires_at": "next tuesday"}, "expires_at"),
        ({"user": "{alice}", "secret": "has spaces in it"}, "secret"),
        ({"user": "{alice}", "secret": "short"}, "secret"),
    ],
)
def test_a_bad_key_request_is_refused_field_by_field_and_nothing_is_created(
    api, alice, payload, field
):
    payload = {k: alice.user.id if v == "{alice}" else v for k, v in payload.items()}
    before = ApiKey.objects.count()
    response = api.post("/api/keys/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert ApiKey.objects.count() == before


def test_registering_a_secret_that_is_already_registered_is_a_400(api, alice, bob):
    response = api.post("/api/keys/", {"user": bob.user.id, "secret": alice.key}, format="json")
    assert response.status_code == 400
    assert "already registered" in str(response.json())
    assert alice.key not in response.content.decode()
    assert bob.user.api_keys.count() == 1


def test_keys_are_filtered_by_user_revocation_and_whether_usable(api, alice, bob):
    api.post(f"/api/keys/{bob.api_key.id}/revoke/")
    by_user = api.get("/api/keys/", {"user": alice.user.id}).json()["results"]
    assert [row["id"] for row in by_user] == [alice.api_key.id]
    revoked = api.get("/api/keys/", {"revoked": "true"}).json()["results"]
    assert [row["id"] for row in revoked] == [bob.api_key.id]
    usable = api.get("/api/keys/", {"active": "true"}).json()["results"]
    assert [row["id"] for row in usable] == [alice.api_key.id]
    unusable = api.get("/api/keys/", {"active": "false"}).json()["results"]
    assert [row["id"] for row in unusable] == [bob.api_key.id]


def test_an_expired_key_is_not_listed_as_usable(api, alice):
    ApiKey.objects.filter(id=alice.api_key.id).update(expires_at=clock.now() + timedelta(hours=1))
    assert api.get("/api/keys/", {"active": "true"}).json()["count"] == 1
    clock.clock_travel(seconds=2 * 3600)
    assert api.get("/api/keys/", {"active": "true"}).json()["count"] == 0


def test_a_revoked_key_says_so_and_when(api, alice):
    response = api.post(f"/api/keys/{alice.api_key.id}/revoke/")
    assert response.status_code == 200
    assert response.json()["revoked"] is True
    assert response.json()["revoked_at"]
    alice.api_key.refresh_from_db()
    assert alice.api_key.revoked


def test_revoking_or_showing_an_unknown_key_is_a_404(api, db):
    assert api.post("/api/keys/999999/revoke/").status_code == 404
    assert api.get("/api/keys/999999/").status_code == 404


def test_a_key_created_through_the_api_serves_requests_and_stops_when_revoked(
    live, http, settings, alice
):
    settings.MASTER_API_KEY = MASTER
    operator = {"Authorization": f"Bearer {MASTER}"}
    created = http.post(
        "/api/keys/", json={"user": alice.user.id, "name": "script"}, headers=operator
    )
    assert created.status_code == 201
    secret = created.json()["secret"]
    chat = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    client_headers = {"Authorization": f"Bearer {secret}"}
    assert http.post("/v1/chat/completions", json=chat, headers=client_headers).status_code == 200
    revoked = http.post(f"/api/keys/{created.json()['id']}/revoke/", headers=operator)
    assert revoked.status_code == 200
    refused = http.post("/v1/chat/completions", json=chat, headers=client_headers)
    assert refused.status_code == 401
