"""The config endpoints of the Cloudflare Workers Rotator replaces: /v1/config/update and
/v1/config/rotate, guarded by MASTER_API_KEY, answering errors in the OpenAI dialect."""

import json

import openai
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.models import ApiKey, Credential
from accounts.secrets import digest, mask

MASTER = "master-key-for-tests-0123456789"
USER_KEY = "sk-workers-user-key-0001"
GEMINI_KEYS = ["AIzaWorkersKeyNumberOne" + "a" * 16, "AIzaWorkersKeyNumberTwo" + "b" * 16]


@pytest.fixture
def master(settings, db) -> APIClient:
    settings.MASTER_API_KEY = MASTER
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    return client


def oauth_account(refresh_token: str = "1//workers-refresh-token-0001", **extra: object) -> dict:
    return {
        "access_token": "ya29.an-old-access-token",
        "refresh_token": refresh_token,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "token_type": "Bearer",
        "expiry_date": 1_700_000_000_000,
        **extra,
    }


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# --------------------------------------------------------------------------------- update


def test_a_new_key_creates_its_user_and_pool(master):
    response = master.post(
        "/v1/config/update", {"apiKey": USER_KEY, "geminiApiKey": GEMINI_KEYS[0]}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["userCreated"] is True
    assert body["poolSize"] == 1
    assert [(c["action"], c["kind"]) for c in body["credentials"]] == [
        ("created", "gemini_api_key")
    ]
    assert body["credentials"][0]["credential"] == mask(GEMINI_KEYS[0])
    api_key = ApiKey.objects.get(digest=digest(USER_KEY))
    assert body["user"] == api_key.user.username
    assert api_key.user.username.startswith("user-")
    assert not api_key.user.has_usable_password()
    assert [c.secret() for c in api_key.user.credentials.all()] == [GEMINI_KEYS[0]]


def test_the_answer_never_contains_a_secret(master):
    response = master.post(
        "/v1/config/update",
        {"apiKey": USER_KEY, "gcpServiceAccount": oauth_account(), "geminiApiKeys": GEMINI_KEYS},
        format="json",
    )
    text = response.content.decode()
    for secret in [USER_KEY, MASTER, *GEMINI_KEYS, "1//workers-refresh-token-0001", "ya29"]:
        assert secret not in text


def test_a_known_key_adds_to_its_users_existing_pool(master, alice):
    response = master.post(
        "/v1/config/update",
        {"apiKey": alice.key, "gcpServiceAccount": oauth_account()},
        format="json",
    )
    body = response.json()
    assert body["userCreated"] is False
    assert body["user"] == "alice"
    assert body["poolSize"] == 4
    added = alice.user.credentials.get(kind=Credential.Kind.GEMINI_OAUTH)
    assert json.loads(added.secret())["refresh_token"] == "1//workers-refresh-token-0001"


def test_the_same_refresh_token_updates_and_the_same_api_key_is_a_duplicate(master):
    first = {"apiKey": USER_KEY, "gcpServiceAccount": oauth_account(), "geminiApiKeys": GEMINI_KEYS}
    master.post("/v1/config/update", first, format="json")
    again = {
        "apiKey": USER_KEY,
        "gcpServiceAccount": oauth_account(projectId="another-project"),
        "geminiApiKey": GEMINI_KEYS[1],
    }
    body = master.post("/v1/config/update", again, format="json").json()
    assert [c["action"] for c in body["credentials"]] == ["updated", "duplicate"]
    assert body["poolSize"] == 3
    assert "1 updated" in body["message"] and "1 duplicate" in body["message"]
    oauth = Credential.objects.get(kind=Credential.Kind.GEMINI_OAUTH)
    assert oauth.oauth_project_id == "another-project"


def test_a_full_pool_replaces_its_oldest_credential(master, settings, alice):
    settings.MAX_CREDENTIALS = 3
    oldest = alice.credentials[0]
    body = master.post(
        "/v1/config/update", {"apiKey": alice.key, "geminiApiKey": GEMINI_KEYS[0]}, format="json"
    ).json()
    assert body["credentials"][0]["action"] == "replaced"
    assert body["credentials"][0]["replaced"] == oldest.display_name
    assert body["poolSize"] == 3
    assert not Credential.objects.filter(id=oldest.id).exists()


def test_a_disabled_account_is_stored_but_kept_out_of_the_pool(master):
    master.post(
        "/v1/config/update",
        {"apiKey": USER_KEY, "gcpServiceAccount": oauth_account(disabled=True)},
        format="json",
    )
    assert Credential.objects.get().enabled is False


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"geminiApiKey": GEMINI_KEYS[0]}, "apiKey"),
        ({"apiKey": "short", "geminiApiKey": GEMINI_KEYS[0]}, "apiKey"),
        ({"apiKey": "has a space in it", "geminiApiKey": GEMINI_KEYS[0]}, "apiKey"),
        ({"apiKey": ["a", "list"], "geminiApiKey": GEMINI_KEYS[0]}, "apiKey"),
        (
            {"apiKey": USER_KEY, "gcpServiceAccount": {"access_token": "ya29.x"}},
            "gcpServiceAccount",
        ),
        ({"apiKey": USER_KEY, "gcpServiceAccount": "not json"}, "gcpServiceAccount"),
        ({"apiKey": USER_KEY, "geminiApiKey": "not-a-gemini-key"}, "geminiApiKey"),
        ({"apiKey": USER_KEY, "geminiApiKeys": [GEMINI_KEYS[0], "bad key!"]}, "geminiApiKeys.1"),
        ({"apiKey": USER_KEY, "geminiApiKeys": GEMINI_KEYS[0]}, "geminiApiKeys"),
        ({"apiKey": USER_KEY}, None),
        (
            {"apiKey": USER_KEY, "gcpServiceAccount": oauth_account(disabled="false")},
            "gcpServiceAccount",
        ),
        (
            {"apiKey": USER_KEY, "gcpServiceAccount": oauth_account(projectId="p\x00roject")},
            "gcpServiceAccount",
        ),
        (
            {"apiKey": USER_KEY, "gcpServiceAccount": oauth_account(projectId="p" * 201)},
            "gcpServiceAccount",
        ),
        (
            {"apiKey": USER_KEY, "gcpServiceAccounts": [oauth_account(), {"scope": "x"}]},
            "gcpServiceAccounts.1",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(master, payload, param):
    response = master.post("/v1/config/update", payload, format="json")
    assert response.status_code == 400
    error = _error(response)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert User.objects.count() == 0
    assert ApiKey.objects.count() == 0
    assert Credential.objects.count() == 0
    for secret in (USER_KEY, *GEMINI_KEYS):
        assert secret not in error["message"]


def test_a_body_that_is_not_json_is_a_400_in_the_openai_dialect(master):
    response = master.post("/v1/config/update", "{oops", content_type="application/json")
    assert response.status_code == 400
    assert _error(response)["message"]


def test_the_wrong_method_is_a_405_in_the_openai_dialect(master):
    response = master.get("/v1/config/update")
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


# ---------------------------------------------------------------------------------- guard


def test_without_a_master_key_configured_the_endpoints_say_so(settings, db):
    settings.MASTER_API_KEY = ""
    client = APIClient()
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer some-guess-123456"}):
        for path in ("/v1/config/update", "/v1/config/rotate"):
            response = client.post(path, {"apiKey": USER_KEY}, format="json", **headers)
            assert response.status_code == 403
            error = _error(response)
            assert "MASTER_API_KEY is not configured" in error["message"]
            assert error["type"] == "permission_error"


def test_a_wrong_master_key_is_a_401_that_repeats_no_key(settings, db):
    settings.MASTER_API_KEY = MASTER
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer wrong-master-key-9876")
    for path in ("/v1/config/update", "/v1/config/rotate"):
        response = client.post(path, {"apiKey": USER_KEY}, format="json")
        assert response.status_code == 401
        text = response.content.decode()
        assert "wrong-master-key-9876" not in text and MASTER not in text
        assert _error(response)["message"]
    assert User.objects.count() == 0


def test_a_missing_master_key_is_a_401(settings, db):
    settings.MASTER_API_KEY = MASTER
    response = APIClient().post("/v1/config/rotate", {"apiKey": USER_KEY}, format="json")
    assert response.status_code == 401


def test_a_staff_session_is_not_enough_for_the_config_endpoints(settings, admin_client):
    settings.MASTER_API_KEY = MASTER
    response = admin_client.post(
        "/v1/config/rotate", {"apiKey": USER_KEY}, content_type="application/json"
    )
    assert response.status_code == 401


# --------------------------------------------------------------------------------- rotate


def test_rotating_advances_the_pool_and_names_the_credential_now_first(master, alice):
    first = master.post("/v1/config/rotate", {"apiKey": alice.key}, format="json")
    assert first.status_code == 200
    second = master.post("/v1/config/rotate", {"apiKey": alice.key}, format="json")
    ids = [c.id for c in alice.credentials]
    firsts = [first.json()["credentialId"], second.json()["credentialId"]]
    assert all(first_id in ids for first_id in firsts)
    assert ids.index(firsts[1]) == (ids.index(firsts[0]) + 1) % 3
    assert first.json()["credential"] == alice.credentials[ids.index(firsts[0])].display_name
    assert first.json()["poolSize"] == 3
    for secret in [alice.key, *alice.upstream_keys]:
        assert secret not in first.content.decode()


def test_rotating_an_empty_pool_names_no_credential(master, charlie):
    body = master.post("/v1/config/rotate", {"apiKey": charlie.key}, format="json").json()
    assert (body["credential"], body["credentialId"], body["poolSize"]) == (None, None, 0)


@pytest.mark.parametrize(
    "payload", [{}, {"apiKey": "sk-nobody-has-this-key"}, {"apiKey": 42}, {"apiKey": None}]
)
def test_rotating_needs_a_known_key(master, alice, payload):
    response = master.post("/v1/config/rotate", payload, format="json")
    assert response.status_code == 400
    assert _error(response)["param"] == "apiKey"


# ------------------------------------------------------------------- served without middleware


def test_the_live_endpoints_answer_json_on_the_proxy_path(live, http, settings):
    settings.MASTER_API_KEY = MASTER
    refused = http.post("/v1/config/update", json={"apiKey": USER_KEY})
    assert refused.status_code == 401
    assert _error(refused)["message"]
    bad = http.post(
        "/v1/config/update",
        json={"apiKey": USER_KEY},
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert bad.status_code == 400
    assert _error(bad)["type"] == "invalid_request_error"


def test_migrated_workers_config_serves_chat_completions(live, http, settings, fake_gemini):
    """The Workers' environment (API_KEYS, GCP_SERVICE_ACCOUNT, ACCOUNTS) posted through
    /v1/config/update becomes pools that answer chat completions."""
    settings.MASTER_API_KEY = MASTER
    operator = {"Authorization": f"Bearer {MASTER}"}
    environment = {
        "API_KEYS": ",".join(GEMINI_KEYS),
        "GCP_SERVICE_ACCOUNT": json.dumps(oauth_account("1//gcp-service-account-token")),
        "ACCOUNTS": json.dumps(
            [
                {"refresh_token": "1//accounts-entry-one", "disabled": False, "projectId": "p-one"},
                {"refresh_token": "1//accounts-entry-two", "disabled": True, "projectId": "p-two"},
            ]
        ),
    }
    fake_gemini.oauth_account_add(refresh_token="1//gcp-service-account-token")
    fake_gemini.oauth_account_add(refresh_token="1//accounts-entry-one", project_id="p-one")
    fake_gemini.oauth_account_add(refresh_token="1//accounts-entry-two", project_id="p-two")

    # Keys clients already use are registered as they are: 24 characters at least.
    keys_user = "sk-keys-user-0001-migrated"
    oauth_user = "sk-oauth-user-0001-migrated"
    accounts_user = "sk-acc-0001-migrated-key"
    posts = [
        {"apiKey": keys_user, "geminiApiKeys": environment["API_KEYS"].split(",")},
        {"apiKey": oauth_user, "gcpServiceAccount": environment["GCP_SERVICE_ACCOUNT"]},
        *(
            {"apiKey": accounts_user, "gcpServiceAccount": a}
            for a in json.loads(environment["ACCOUNTS"])
        ),
    ]
    for payload in posts:
        response = http.post("/v1/config/update", json=payload, headers=operator)
        assert response.status_code == 200, response.text
    assert Credential.objects.filter(user__api_keys__digest=digest(accounts_user)).count() == 2

    def chat(user_key: str) -> str:
        client = openai.OpenAI(base_url=f"{live}/v1", api_key=user_key, max_retries=0)
        completion = client.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "migrated?"}]
        )
        return completion.choices[0].message.content or ""

    assert chat(keys_user)
    assert {r.secret for r in fake_gemini.requests} <= set(GEMINI_KEYS)
    assert chat(oauth_user)
    assert fake_gemini.oauth_refresh_count("1//gcp-service-account-token") >= 1
    assert chat(accounts_user)
    assert fake_gemini.oauth_refresh_count("1//accounts-entry-one") >= 1
    # The account the Workers had disabled stays out of rotation.
    assert fake_gemini.oauth_refresh_count("1//accounts-entry-two") == 0
