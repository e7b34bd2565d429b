"""Remaining quota: Code Assist's figures for OAuth accounts (beat, admin, API) and the estimate
for API keys from the limits Google states in 429s, on /stat and in the admin."""

import json

import pytest
from rest_framework.test import APIClient

from accounts.models import Credential
from common import clock
from rotator.models import Mark, QuotaReading
from rotator.tasks import quotas_fetch_task
from tests.rotator.test_oauth import oauth_persona, refresh_tokens

MASTER = "master-key-for-tests-0123456789"
FLASH = "gemini-2.5-flash"
PRO = "gemini-2.5-pro"


@pytest.fixture
def api(settings, db) -> APIClient:
    settings.MASTER_API_KEY = MASTER
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    return client


@pytest.fixture
def olga(db, fake_gemini):
    persona = oauth_persona("olga", fake_gemini, project_id="olga-project")
    # As discovery stores it after the account's first request.
    Credential.objects.filter(id=persona.credentials[0].id).update(oauth_project_id="olga-project")
    persona.credentials[0].refresh_from_db()
    return persona


def _stat_json(client, persona) -> dict:
    assert client.post("/stat/signin", {"key": persona.key}).status_code == 302
    return client.get("/stat/data.json").json()


def test_the_api_reads_an_oauth_accounts_quota_from_code_assist_and_stores_it(
    api, olga, fake_gemini
):
    fake_gemini.oauth_account(refresh_tokens(olga)[0]).requests_by_model[PRO] = 25
    credential = olga.credentials[0]
    response = api.post(f"/api/credentials/{credential.id}/quota/")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    pro = next(b for b in body["buckets"] if b["model"] == PRO)
    # The fake's Code Assist allows 100 Pro requests a day; 25 are spent.
    assert pro["remaining_fraction"] == pytest.approx(0.75)
    assert pro["remaining_amount"] == 75
    assert pro["reset_at"] > clock.now().isoformat()
    sent = [r for r in fake_gemini.requests if r.path.endswith(":retrieveUserQuota")]
    assert sent[-1].body == {"project": "olga-project"}
    assert (
        QuotaReading.objects.filter(credential=credential, model=PRO).get().remaining_amount == 75
    )


def test_an_api_key_credential_has_no_quota_endpoint_and_says_so(api, alice, fake_gemini):
    response = api.post(f"/api/credentials/{alice.credentials[0].id}/quota/")
    assert response.status_code == 200
    assert response.json() == {
        "ok": False,
        "message": "only Gemini CLI OAuth accounts report their quota",
        "buckets": [],
    }
    assert not [r for r in fake_gemini.requests if r.dialect == "code_assist"]


def test_an_account_whose_project_is_not_known_yet_is_not_asked(api, db, fake_gemini):
    persona = oauth_persona("nina", fake_gemini, project_id="nina-project")
    response = api.post(f"/api/credentials/{persona.credentials[0].id}/quota/")
    assert response.json()["ok"] is False
    assert "project not known yet" in response.json()["message"]
    assert not [r for r in fake_gemini.requests if r.path.endswith(":retrieveUserQuota")]


def test_the_beat_task_reads_every_usable_oauth_account_and_replaces_old_readings(
    olga, alice, fake_gemini
):
    credential = olga.credentials[0]
    QuotaReading.objects.create(
        credential=credential,
        model="gemini-retired-model",
        source=QuotaReading.Source.REPORTED,
        remaining_fraction=0.5,
        fetched_at=clock.now(),
    )
    assert quotas_fetch_task() == "read the quota of 1 OAuth account(s), 0 failed"
    models = set(QuotaReading.objects.filter(credential=credential).values_list("model", flat=True))
    assert PRO in models and "gemini-retired-model" not in models
    # alice's pool holds API keys only: nothing to read there.
    assert not QuotaReading.objects.filter(credential__user=alice.user).exists()


def test_a_refused_refresh_token_is_reported_as_a_failed_read(olga, fake_gemini):
    fake_gemini.oauth_account_revoke(refresh_tokens(olga)[0])
    assert quotas_fetch_task() == "read the quota of 0 OAuth account(s), 1 failed"
    assert not QuotaReading.objects.exists()


def test_stat_shows_each_accounts_quota_bar_with_its_reset_time(client, olga, fake_gemini):
    fake_gemini.oauth_account(refresh_tokens(olga)[0]).requests_by_model[PRO] = 95
    quotas_fetch_task()
    data = _stat_json(client, olga)
    (group,) = data["quota"]
    bars = {bar["model"]: bar for bar in group["credentials"][0]["bars"]}
    assert bars[PRO]["percent"] == 5 and bars[PRO]["estimate"] is False
    page = client.get("/stat").content.decode()
    assert 'data-model="gemini-2.5-pro"' in page and "5% left" in page
    assert "quota-fill low" in page  # under a tenth: drawn as running out
    assert f'resets <time datetime="{bars[PRO]["reset_at"]}">' in page


def test_the_admin_action_reads_the_quota_and_the_change_form_shows_it(
    admin_client, olga, fake_gemini
):
    credential = olga.credentials[0]
    response = admin_client.post(
        "/admin/accounts/credential/",
        {"action": "read_quota", "_selected_action": [credential.id]},
        follow=True,
    )
    assert "example.com (1//0…rrrr): read 7 quota bucket(s)" in response.content.decode()
    page = admin_client.get(f"/admin/accounts/credential/{credential.id}/change/").content.decode()
    assert "gemini-2.5-pro: 100%" in page


@pytest.mark.django_db(transaction=True)
def test_an_api_keys_quota_is_estimated_from_the_limit_google_stated_in_a_429(
    live, http, alice, fake_gemini, client
):
    serving, *others = alice.credentials
    Credential.objects.filter(id__in=[c.id for c in others]).update(enabled=False)
    Credential.objects.filter(id=serving.id).update(project_label="alpha")
    chat = {"model": FLASH, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {alice.key}"}
    for _ in range(3):
        assert http.post("/v1/chat/completions", headers=headers, json=chat).status_code == 200
    fake_gemini.behave(serving.secret(), "quota_day", model=FLASH, times=1, limit="10")
    assert http.post("/v1/chat/completions", headers=headers, json=chat).status_code == 429

    mark = Mark.objects.get(credential=serving, model=FLASH)
    assert mark.quota_value == 10
    data = _stat_json(client, alice)
    (group,) = data["quota"]
    assert group["project"] == "alpha"
    (bar,) = group["credentials"][0]["bars"]
    # Three served, the refused one not counted against the quota.
    assert (bar["estimate"], bar["used"], bar["limit"], bar["percent"]) == (True, 3, 10, 70)
    assert bar["reset_at"] == clock.daily_reset_next(clock.now()).isoformat()
    page = client.get("/stat").content.decode()
    assert "estimate" in page and "(3 of 10 used)" in page
    # The limit outlives the mark, which the daily reset deletes.
    mark.delete()
    assert _stat_json(client, alice)["quota"][0]["credentials"][0]["bars"][0]["limit"] == 10


def test_no_secret_of_an_oauth_account_reaches_the_quota_section(client, olga):
    quotas_fetch_task()
    data = _stat_json(client, olga)
    assert data["quota"]
    page = client.get("/stat").content.decode()
    stored = json.loads(olga.credentials[0].secret())
    olga.credentials[0].refresh_from_db()
    access = olga.credentials[0].access_token_encrypted
    for secret in (stored["refresh_token"], access):
        assert secret not in page and secret not in json.dumps(data)
