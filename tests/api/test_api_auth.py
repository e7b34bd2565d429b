"""Who may use the management API: the master key, a session or a DRF token of a user holding
the operation's permission (tests/api/test_api_permissions.py has the permission rules)."""

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

MASTER = "master-key-for-tests-0123456789"


@pytest.fixture
def anonymous(settings) -> APIClient:
    settings.MASTER_API_KEY = MASTER
    return APIClient()


def test_the_master_key_opens_the_api(anonymous, alice):
    anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    response = anonymous.get("/api/users/")
    assert response.status_code == 200
    assert [user["username"] for user in response.json()["results"]] == ["alice"]


def test_a_wrong_master_key_is_refused_without_being_repeated(anonymous, db):
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer guess-the-master-key-42")
    response = anonymous.get("/api/users/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "guess-the-master-key-42" not in response.content.decode()
    assert MASTER not in response.content.decode()


def test_a_request_without_credentials_is_asked_to_authenticate(anonymous, db):
    response = anonymous.get("/api/credentials/")
    assert response.status_code == 401


def test_without_a_configured_master_key_a_bearer_token_is_refused_with_the_reason(settings, db):
    settings.MASTER_API_KEY = ""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer anything-at-all-123")
    response = client.get("/api/users/")
    assert response.status_code == 403
    assert "MASTER_API_KEY is not configured" in response.json()["detail"]


def test_a_superuser_session_opens_the_api(admin_client, alice):
    response = admin_client.get("/api/users/")
    assert response.status_code == 200
    assert "alice" in [user["username"] for user in response.json()["results"]]


def test_a_session_of_a_user_who_is_not_staff_is_forbidden(client, alice):
    client.force_login(alice.user)
    response = client.get("/api/users/")
    assert response.status_code == 403


def test_a_drf_token_of_a_user_with_the_view_permission_opens_the_list(db):
    staff = User.objects.create_user(username="ops", password="ops-password-1", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    token = Token.objects.create(user=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/keys/").status_code == 200


def test_a_token_of_a_user_who_is_not_staff_is_forbidden(alice):
    token = Token.objects.create(user=alice.user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/keys/").status_code == 403


def test_a_session_must_send_the_csrf_token_to_change_anything(db):
    ops = User.objects.create_user(username="ops", password="ops-password-1", is_staff=True)
    ops.user_permissions.add(Permission.objects.get(codename="add_user"))
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="ops", password="ops-password-1")
    response = client.post("/api/users/", {"username": "dave"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not User.objects.filter(username="dave").exists()


def test_a_users_own_rotator_key_does_not_open_the_api(anonymous, alice):
    anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {alice.key}")
    assert anonymous.get("/api/users/").status_code == 401
