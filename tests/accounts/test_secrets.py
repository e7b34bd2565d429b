"""Secrets at rest: API keys kept only as SHA-256 digests, credentials encrypted, both refused
or unreadable when they should be."""

import hashlib
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet

from accounts.models import ApiKey, Credential
from accounts.secrets import SecretUnreadable, decrypt, encrypt, mask
from accounts.services import api_key_create, api_key_revoke, credential_add
from common import clock
from common.errors import AuthenticationFailed
from rotator import pool
from tests.support.database import database_text


@pytest.fixture
def fernet_key_restored():
    """The Fernet is cached per key value, so the settings fixture's restore is enough."""
    yield


def test_an_api_key_is_stored_as_its_sha256_digest_and_nowhere_in_plain(alice):
    assert alice.api_key.digest == hashlib.sha256(alice.key.encode()).hexdigest()
    assert alice.api_key.prefix == f"{alice.key[:4]}…{alice.key[-4:]}"
    everything = database_text()
    assert alice.api_key.digest in everything  # the search does see the table
    assert alice.key not in everything


def test_a_registered_existing_key_is_not_stored_either(charlie):
    api_key, secret = api_key_create(user=charlie.user, secret="sk-clients-already-use-this-1")
    assert secret == "sk-clients-already-use-this-1"
    assert api_key.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in database_text()


def test_a_key_is_found_by_its_digest_with_one_query(alice, bob, django_assert_num_queries):
    # The lookup the request path runs (on its ORM threads) for a key it has not cached.
    with django_assert_num_queries(1):
        key = pool._api_key_fetch(hashlib.sha256(bob.key.encode()).hexdigest())
    assert key is not None
    assert (key.id, key.user_id) == (bob.api_key.pk, bob.user.pk)


@pytest.mark.django_db(transaction=True)
def test_a_key_is_authenticated_by_its_digest(alice, bob):
    key = async_to_sync(pool.api_key_authenticate)(presented=bob.key, now=clock.now())
    assert (key.id, key.user_id) == (bob.api_key.pk, bob.user.pk)


def test_an_unknown_key_is_refused(alice):
    with pytest.raises(AuthenticationFailed, match="Invalid API key"):
        async_to_sync(pool.api_key_authenticate)(presented=alice.key + "x", now=clock.now())


def test_upstream_credentials_are_encrypted_at_rest(alice):
    everything = database_text()
    for credential in alice.credentials:
        assert credential.secret_encrypted in everything
    for upstream_key in alice.upstream_keys:
        assert upstream_key not in everything


def test_encryption_round_trips(alice):
    token = encrypt('{"refresh_token": "1//0g-round-trip"}')
    assert "round-trip" not in token
    assert decrypt(token) == '{"refresh_token": "1//0g-round-trip"}'
    stored = Credential.objects.get(pk=alice.credentials[0].pk)
    assert stored.secret() == "AIzaFakeAlice01" + "x" * 27


def test_another_encryption_key_cannot_read_stored_credentials(
    alice, settings, fernet_key_restored
):
    settings.ROTATOR_ENCRYPTION_KEY = Fernet.generate_key().decode()
    mine = encrypt("AIzaEncryptedUnderTheConfiguredKey000000")
    assert decrypt(mine) == "AIzaEncryptedUnderTheConfiguredKey000000"
    stored = Credential.objects.get(pk=alice.credentials[0].pk)
    with pytest.raises(SecretUnreadable):
        stored.secret()
    settings.ROTATOR_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(SecretUnreadable):
        decrypt(mine)


def test_a_mask_never_shows_more_than_eight_characters():
    assert mask("AIzaSyA1234567890abcdefghijklmnopqx9Qk") == "AIza…x9Qk"
    assert mask("short-sec") == "…ec"
    assert mask("") == ""


def test_credentials_show_only_their_mask(charlie):
    credential = credential_add(
        user=charlie.user, api_key="AIzaShownOnlyMasked00000000000000000abcd", label="main"
    ).credential
    assert str(credential) == "main (AIza…abcd)"
    assert credential.secret_mask == "AIza…abcd"


def _models_status(http, key: str) -> tuple[int, dict]:
    response = http.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    return response.status_code, response.json()


def test_a_revoked_key_is_refused_over_http(live, http, alice):
    api_key_revoke(api_key=ApiKey.objects.get(pk=alice.api_key.pk), now=clock.now())
    status, body = _models_status(http, alice.key)
    assert status == 401
    assert body["error"]["message"] == "This API key has been revoked."
    assert body["error"]["code"] == "invalid_api_key"


def test_a_key_revoked_while_in_use_is_refused_on_its_next_request(live, http, alice):
    headers = {"Authorization": f"Bearer {alice.key}"}
    chat = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hello"}]}
    assert http.post("/v1/chat/completions", json=chat, headers=headers).status_code == 200
    api_key_revoke(api_key=ApiKey.objects.get(pk=alice.api_key.pk), now=clock.now())
    response = http.post("/v1/chat/completions", json=chat, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "This API key has been revoked."


def test_an_expired_key_is_refused_over_http(live, http, alice):
    _, secret = api_key_create(
        user=alice.user, name="one hour", expires_at=clock.now() + timedelta(hours=1)
    )
    assert _models_status(http, secret)[0] == 200
    clock.clock_travel(seconds=2 * 3600)
    status, body = _models_status(http, secret)
    assert status == 401
    assert body["error"]["message"] == "This API key has expired."
    assert body["error"]["type"]
    # alice's other key never expires.
    assert _models_status(http, alice.key)[0] == 200
