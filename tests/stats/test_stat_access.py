"""Who sees what on /stat: staff with the permission see every pool, a key holder only their own,
nobody a secret."""

import json

import pytest
from django.contrib.auth.models import Permission, User

from accounts.services import api_key_revoke
from common import clock
from stats.views import SESSION_KEY


def _signed_in(client, persona):
    response = client.post("/stat/signin", {"key": persona.key})
    assert response.status_code == 302
    return client


def _labels(persona):
    """Gives the persona's credentials labels naming their owner (masks all look alike)."""
    for number, credential in enumerate(persona.credentials, start=1):
        credential.label = f"{persona.user.username}-project-{number}"
        credential.save(update_fields=["label"])
    return {c.label for c in persona.credentials}


def test_an_anonymous_visitor_gets_the_sign_in_form_and_no_data(client, alice):
    _labels(alice)
    page = client.get("/stat")
    assert page.status_code == 200
    assert b'name="key"' in page.content
    assert not any(label.encode() in page.content for label in _labels(alice))
    data = client.get("/stat/data.json")
    assert data.status_code == 401
    assert "Sign in" in data.json()["error"]["message"]


def test_a_wrong_key_is_refused_and_never_echoed(client, alice):
    response = client.post("/stat/signin", {"key": "rk-not-a-real-key-0000"})
    assert response.status_code == 403
    assert b"not a valid Rotator API key" in response.content
    assert b"rk-not-a-real-key-0000" not in response.content
    assert client.get("/stat/data.json").status_code == 401


def test_a_key_holder_sees_only_their_own_pool_by_page_and_json(client, alice, bob):
    _labels(alice), _labels(bob)
    _signed_in(client, alice)
    page = client.get("/stat")
    assert page.status_code == 200
    assert all(label.encode() in page.content for label in _labels(alice))
    assert not any(label.encode() in page.content for label in _labels(bob))
    assert b'name="user"' not in page.content  # no user picker

    data = client.get("/stat/data.json").json()
    assert data["user"]["username"] == "alice"
    assert {c["label"] for c in data["credentials"]} == _labels(alice)

    asked_for_bob = client.get(f"/stat/data.json?user={bob.user.id}")
    assert asked_for_bob.status_code == 403
    assert not any(label in asked_for_bob.content.decode() for label in _labels(bob))
    page_for_bob = client.get(f"/stat?user={bob.user.id}", follow=True)
    assert not any(label.encode() in page_for_bob.content for label in _labels(bob))
    assert all(label.encode() in page_for_bob.content for label in _labels(alice))


def test_the_session_keeps_the_key_id_and_never_the_key(client, alice):
    _signed_in(client, alice)
    assert client.session[SESSION_KEY] == alice.api_key.id
    assert alice.key not in json.dumps(dict(client.session.items()))


def test_revoking_the_key_signs_the_browser_out(client, alice):
    _signed_in(client, alice)
    api_key_revoke(api_key=alice.api_key, now=clock.now())
    assert client.get("/stat/data.json").status_code == 401
    assert b'name="key"' in client.get("/stat").content


def test_signing_out_ends_access(client, alice):
    _signed_in(client, alice)
    assert client.post("/stat/signout").status_code == 302
    assert client.get("/stat/data.json").status_code == 401


def test_superusers_see_every_pool_with_a_user_picker(admin_client, alice, bob, charlie):
    _labels(alice), _labels(bob)
    page = admin_client.get("/stat")
    assert page.status_code == 200
    for name in ("alice", "bob", "charlie", "admin"):
        assert f">{name} (".encode() in page.content
    # With no pool of their own, staff first see the largest one.
    assert all(label.encode() in page.content for label in _labels(alice))

    bob_page = admin_client.get(f"/stat?user={bob.user.id}")
    assert all(label.encode() in bob_page.content for label in _labels(bob))
    assert not any(label.encode() in bob_page.content for label in _labels(alice))
    data = admin_client.get(f"/stat/data.json?user={bob.user.id}").json()
    assert {c["label"] for c in data["credentials"]} == _labels(bob)
    empty = admin_client.get(f"/stat/data.json?user={charlie.user.id}").json()
    assert empty["credentials"] == []


def test_a_logged_in_user_who_is_not_staff_still_needs_a_key(client, alice):
    client.force_login(alice.user)
    assert b'name="key"' in client.get("/stat").content
    assert client.get("/stat/data.json").status_code == 401


@pytest.mark.parametrize("path", ["/stat", "/stat/data.json"])
def test_no_secret_is_ever_on_the_page_or_in_its_json(admin_client, client, alice, bob, path):
    secrets = [alice.key, bob.key, *alice.upstream_keys, *bob.upstream_keys]
    for credential in alice.credentials:
        credential.last_error = "API key not valid. Please pass a valid API key."
        credential.status = "invalid"
        credential.save(update_fields=["last_error", "status"])
    staff_view = admin_client.get(f"{path}?user={alice.user.id}").content.decode()
    key_view = _signed_in(client, alice).get(path).content.decode()
    for body in (staff_view, key_view):
        assert "API key not valid" in body
        for secret in secrets:
            assert secret not in body
            assert secret[4:-4] not in body  # not even the unmasked middle


def test_an_unknown_user_is_a_clean_not_found_for_staff(admin_client):
    assert admin_client.get("/stat?user=999999").status_code == 404
    assert admin_client.get("/stat/data.json?user=999999").status_code == 403
    assert User.objects.filter(id=999999).count() == 0


def test_staff_without_the_view_permission_see_only_their_own_pool(client, alice, bob):
    _labels(alice), _labels(bob)
    ops = User.objects.create_user(username="ops", password="ops-password-1", is_staff=True)
    client.force_login(ops)
    page = client.get("/stat")
    assert page.status_code == 200
    assert b'name="user"' not in page.content  # no user picker
    assert not any(label.encode() in page.content for label in _labels(alice) | _labels(bob))

    asked_for_bob = client.get(f"/stat/data.json?user={bob.user.id}")
    assert asked_for_bob.status_code == 403
    assert "accounts.view_credential" in asked_for_bob.json()["error"]["message"]
    assert not any(label in asked_for_bob.content.decode() for label in _labels(bob))
    page_for_bob = client.get(f"/stat?user={bob.user.id}", follow=True)
    assert not any(label.encode() in page_for_bob.content for label in _labels(bob))
    assert client.get("/stat/data.json").json()["user"]["username"] == "ops"


def test_staff_with_the_view_permission_see_other_users_pools(client, alice, bob):
    ops = User.objects.create_user(username="ops", password="ops-password-1", is_staff=True)
    ops.user_permissions.add(Permission.objects.get(codename="view_credential"))
    client.force_login(ops)
    labels = _labels(bob)
    data = client.get(f"/stat/data.json?user={bob.user.id}").json()
    assert {c["label"] for c in data["credentials"]} == labels
    assert b'name="user"' in client.get("/stat").content
