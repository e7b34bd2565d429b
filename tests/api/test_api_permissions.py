"""Staff is not operator: each /api/ operation needs the Django permission docs/api.md names."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission, User
from rest_framework.test import APIClient

from accounts.models import ApiKey, Credential
from common import clock
from rotator.models import Mark, ModelAlias

MASTER = "master-key-for-tests-0123456789"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ROW = re.compile(r"^\| [^|]+ \| `(GET|POST|PATCH|DELETE) (/api/\S+)` \| `(\w+\.\w+)` \|$")


def documented() -> list[tuple[str, str, str]]:
    """(method, path, permission) rows of the permission table in docs/api.md."""
    rows = [match.groups() for line in DOCS.read_text().splitlines() if (match := ROW.match(line))]
    return [(method, path, permission) for method, path, permission in rows]


DOCUMENTED = documented()


@pytest.fixture
def ops(db) -> User:
    """A staff member with no permission at all: the admin refuses him every model."""
    return User.objects.create_user(username="ops", password="ops-password-1", is_staff=True)


@pytest.fixture
def ops_client(ops) -> APIClient:
    client = APIClient()
    client.force_login(ops)
    return client


def _grant(user: User, permission: str) -> None:
    app_label, codename = permission.split(".")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
    )


def _url(path: str, alice, bob, charlie) -> str:
    mark = Mark.objects.create(
        credential=bob.credentials[0],
        model="gemini-2.5-pro",
        reason=Mark.Reason.RATE_LIMITED,
        until=clock.now() + timedelta(minutes=5),
    )
    ids = {
        "users": charlie.user.id,
        "keys": charlie.api_key.id,
        "credentials": bob.credentials[0].id,
        "marks": mark.id,
        "aliases": ModelAlias.objects.create(name="claude-x-*", target="gemini-2.5-pro").id,
    }
    return path.replace("{id}", str(ids.get(path.split("/")[2], 0)))


def test_the_docs_name_a_permission_for_every_operation_in_the_schema(client, db):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operations = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        if path.startswith("/api/")
        for method in item
    }
    assert operations == {(method, path) for method, path, _ in DOCUMENTED}


@pytest.mark.parametrize(("method", "path", "permission"), DOCUMENTED)
def test_each_operation_needs_exactly_its_documented_permission(
    ops, ops_client, settings, alice, bob, charlie, method, path, permission
):
    url = _url(path, alice, bob, charlie)
    refused = ops_client.generic(method, url, "{}", content_type="application/json")
    assert refused.status_code == 403
    assert permission in refused.json()["detail"]

    _grant(ops, permission)
    allowed = ops_client.generic(method, url, "{}", content_type="application/json")
    # 400 for an empty body where fields are required: past the permission check.
    assert allowed.status_code in (200, 201, 204, 400), allowed.content


@pytest.mark.parametrize(("method", "path", "permission"), DOCUMENTED)
def test_the_master_key_may_call_every_operation(
    settings, alice, bob, charlie, method, path, permission
):
    settings.MASTER_API_KEY = MASTER
    master = APIClient()
    master.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    response = master.generic(
        method, _url(path, alice, bob, charlie), "{}", content_type="application/json"
    )
    assert response.status_code in (200, 201, 204, 400), response.content


# ------------------------------------- what a staff member without permissions did before


def test_a_staff_user_without_permissions_cannot_list_credentials(ops_client, alice, bob):
    response = ops_client.get("/api/credentials/")
    assert response.status_code == 403
    assert "accounts.view_credential" in response.json()["detail"]
    assert alice.credentials[0].secret_mask not in response.content.decode()


def test_a_staff_user_without_permissions_cannot_mint_a_key_on_another_users_account(
    ops_client, bob
):
    response = ops_client.post("/api/keys/", {"user": bob.user.id}, format="json")
    assert response.status_code == 403
    assert "secret" not in response.json()
    assert ApiKey.objects.filter(user=bob.user).count() == 1


def test_a_staff_user_without_permissions_cannot_disable_another_users_credential(ops_client, bob):
    target = bob.credentials[0]
    response = ops_client.post(f"/api/credentials/{target.id}/disable/")
    assert response.status_code == 403
    assert Credential.objects.get(id=target.id).enabled


def test_a_staff_user_without_permissions_cannot_list_users(ops_client, alice):
    response = ops_client.get("/api/users/")
    assert response.status_code == 403
    assert "alice" not in response.content.decode()


# ---------------------------------------------------------------- what permissions grant


def test_the_view_permission_reads_but_does_not_change(ops, ops_client, bob):
    _grant(ops, "accounts.view_credential")
    assert ops_client.get("/api/credentials/").json()["count"] == 2
    target = bob.credentials[0]
    assert ops_client.post(f"/api/credentials/{target.id}/disable/").status_code == 403
    assert ops_client.delete(f"/api/credentials/{target.id}/").status_code == 403
    assert Credential.objects.filter(id=target.id, enabled=True).exists()


def test_a_permission_granted_through_a_group_counts(ops, ops_client, bob):
    operators = Group.objects.create(name="operators")
    operators.permissions.add(Permission.objects.get(codename="change_credential"))
    ops.groups.add(operators)
    target = bob.credentials[0]
    assert ops_client.post(f"/api/credentials/{target.id}/disable/").status_code == 200
    assert not Credential.objects.get(id=target.id).enabled


def test_a_permission_works_without_staff_status_and_not_for_an_inactive_user(alice, bob):
    _grant(alice.user, "accounts.view_apikey")
    client = APIClient()
    client.force_login(alice.user)
    assert client.get("/api/keys/").status_code == 200
    alice.user.is_active = False
    alice.user.save(update_fields=["is_active"])
    assert client.get("/api/keys/").status_code in (401, 403)


def test_a_method_a_route_does_not_serve_is_a_405_not_a_403(ops_client, bob):
    response = ops_client.put(f"/api/credentials/{bob.credentials[0].id}/", {}, format="json")
    assert response.status_code == 405
