"""Pool rules for adding and importing credentials: circular replacement, duplicates, rejects."""

import json

import pytest
from django.core.exceptions import ValidationError

from accounts.models import ApiKey, Credential
from accounts.services import (
    api_key_create,
    api_key_update,
    credential_add,
    credentials_import_env,
    credentials_import_text,
    oauth_account_parse,
)
from common import clock
from rotator.credentials import credential_check, credentials_enable


def _key(n: int) -> str:
    return f"AIzaServiceTestKey{n:04d}" + "y" * 20


def test_a_full_pool_replaces_its_oldest_credential(alice, settings):
    settings.MAX_CREDENTIALS = 3
    oldest = alice.credentials[0]
    added = credential_add(user=alice.user, api_key=_key(4), label="fourth")
    assert added.action == "replaced"
    assert added.replaced_label == oldest.display_name
    pool = list(Credential.objects.filter(user=alice.user).order_by("position"))
    assert [c.pk for c in pool] == [
        alice.credentials[1].pk,
        alice.credentials[2].pk,
        added.credential.pk,
    ]
    added = credential_add(user=alice.user, api_key=_key(5))
    assert added.replaced_label == alice.credentials[1].display_name
    assert Credential.objects.filter(user=alice.user).count() == 3


def test_a_pool_below_its_limit_only_grows(bob, settings):
    settings.MAX_CREDENTIALS = 3
    added = credential_add(user=bob.user, api_key=_key(1))
    assert (added.action, added.replaced_label) == ("created", "")
    assert Credential.objects.filter(user=bob.user).count() == 3


def test_the_same_api_key_twice_is_reported_not_doubled(alice):
    again = credential_add(user=alice.user, api_key=alice.upstream_keys[0])
    assert again.action == "duplicate"
    assert again.credential.pk == alice.credentials[0].pk
    assert Credential.objects.filter(user=alice.user).count() == 3


def test_the_same_key_may_sit_in_two_users_pools(alice, bob):
    added = credential_add(user=bob.user, api_key=alice.upstream_keys[0])
    assert added.action == "created"


def test_the_same_oauth_account_twice_updates_it(charlie):
    first = credential_add(
        user=charlie.user, oauth=oauth_account_parse({"refresh_token": "1//0g-first-refresh"})
    )
    again = credential_add(
        user=charlie.user,
        oauth=oauth_account_parse({"refresh_token": "1//0g-first-refresh", "projectId": "p-1"}),
    )
    assert (first.action, again.action) == ("created", "updated")
    assert again.credential.pk == first.credential.pk
    assert Credential.objects.get(pk=first.credential.pk).oauth_project_id == "p-1"


def test_an_import_counts_duplicates_and_gives_reasons_without_secrets(bob):
    text = "\n".join(
        [
            "# comment lines and blank lines are skipped",
            _key(1),
            "",
            _key(1),
            bob.upstream_keys[0],
            "AIza short",
        ]
    )
    summary = credentials_import_text(user=bob.user, text=text)
    assert (summary.created, summary.duplicates, summary.replaced) == (1, 2, 0)
    assert len(summary.errors) == 1
    assert summary.errors[0].startswith("line 6: That does not look like a Gemini API key")
    assert "AIza short" not in summary.summary
    assert Credential.objects.filter(user=bob.user).count() == 3


def test_an_import_of_oauth_json_takes_an_object_or_an_array(charlie):
    one = credentials_import_text(user=charlie.user, text=json.dumps({"refresh_token": "1//0g-a"}))
    many = credentials_import_text(
        user=charlie.user,
        text=json.dumps([{"refresh_token": "1//0g-a"}, {"refresh_token": "1//0g-b"}, {"x": 1}]),
    )
    assert (one.created, many.created, many.updated) == (1, 1, 1)
    assert many.errors == ["item 3: OAuth credentials need a refresh_token."]


def test_the_environment_of_the_replaced_systems_is_imported(charlie):
    environ = {
        "API_KEYS": f"{_key(1)}, {_key(2)},,{_key(1)}",
        "ACCOUNTS": json.dumps(
            [
                {"refresh_token": "1//0g-account-one", "disabled": False, "projectId": "proj-1"},
                {"refresh_token": "1//0g-account-two", "disabled": True},
            ]
        ),
        "GCP_SERVICE_ACCOUNT": json.dumps({"refresh_token": "1//0g-service"}),
        "GCP_SERVICE_ACCOUNT_2": json.dumps({"refresh_token": "1//0g-service-2"}),
        "GCP_SERVICE_ACCOUNT_10": "not json",
        "UNRELATED": _key(9),
    }
    summary = credentials_import_env(user=charlie.user, environ=environ)
    assert (summary.created, summary.duplicates) == (6, 1)
    assert summary.errors == ["GCP_SERVICE_ACCOUNT_10: OAuth credentials must be a JSON object."]
    oauth = Credential.objects.filter(user=charlie.user, kind=Credential.Kind.GEMINI_OAUTH)
    assert oauth.filter(enabled=False).count() == 1
    assert oauth.get(oauth_project_id="proj-1")


def test_a_registered_key_cannot_be_registered_twice(alice, bob):
    with pytest.raises(ValidationError, match="already registered"):
        api_key_create(user=bob.user, secret=alice.key)
    assert ApiKey.objects.count() == 2


def test_enabling_returns_an_invalid_credential_to_the_pool(bob):
    credential = bob.credentials[0]
    Credential.objects.filter(pk=credential.pk).update(status=Credential.Status.INVALID)
    assert credentials_enable(credential_ids=[credential.pk], enabled=True) == 1
    assert Credential.objects.in_pool().filter(pk=credential.pk).exists()


def test_a_check_marks_a_refused_key_invalid_and_restores_it_when_it_works(bob, fake_gemini):
    credential = bob.credentials[0]
    fake_gemini.behave(credential.secret(), "invalid_key", times=1)
    result = credential_check(credential=credential, now=clock.now())
    assert not result.ok
    assert credential.secret() not in result.message
    credential.refresh_from_db()
    assert credential.status == Credential.Status.INVALID
    assert credential_check(credential=credential, now=clock.now()).ok
    credential.refresh_from_db()
    assert credential.status == Credential.Status.ACTIVE


def test_a_key_update_changes_only_what_it_names_and_stores_models_bare(alice):
    api_key_update(
        api_key=alice.api_key, allowed_models=["models/gemini-2.5-pro", "gemini-2.5-flash"]
    )
    stored = ApiKey.objects.get(id=alice.api_key.id)
    assert stored.allowed_models == ["gemini-2.5-pro", "gemini-2.5-flash"]
    assert stored.name == "alice's key"
    assert stored.digest == alice.api_key.digest
    with pytest.raises(ValueError, match="digest"):
        api_key_update(api_key=alice.api_key, digest="0" * 64)
