"""Failed sign-ins are throttled per client address on every surface that takes a secret."""

import httpx
import pytest
from django.contrib.auth.models import User

from common import clock
from tests.support.processes import Rotator

MASTER = "master-key-for-tests-0123456789"
CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def _three_failures_a_minute(settings):
    settings.SIGNIN_FAILURES_PER_MINUTE = 3
    settings.MASTER_API_KEY = MASTER
    # At the start of a minute, so that no test straddles two windows.
    now = clock.now().timestamp()
    clock.clock_travel(seconds=60 - now % 60 + 0.5)


def _chat(http: httpx.Client, key: str) -> httpx.Response:
    return http.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})


def test_wrong_api_keys_get_429_with_retry_after_once_the_address_used_up_its_failures(http, alice):
    assert [_chat(http, f"rk-guess-{n:020d}").status_code for n in range(3)] == [401] * 3
    refused = _chat(http, "rk-guess-number-four-000000")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["code"] == "signin_throttled"
    # A right guess now would tell the guesser it was right: it is refused the same way.
    assert _chat(http, alice.key).status_code == 429
    clock.clock_travel(seconds=60)
    assert _chat(http, alice.key).status_code == 200


def test_valid_keys_and_missing_keys_are_never_counted(http, alice):
    for _ in range(5):
        assert _chat(http, alice.key).status_code == 200
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 401
    assert _chat(http, alice.key).status_code == 200


def test_a_wrong_master_key_is_throttled_on_the_management_api(http, db):
    wrong = {"authorization": "Bearer not-the-master-key-000000000"}
    assert [http.get("/api/users/", headers=wrong).status_code for _ in range(3)] == [401] * 3
    refused = http.get("/api/users/", headers={"authorization": f"Bearer {MASTER}"})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1


def test_a_wrong_master_key_is_throttled_on_debug_stats(http, db):
    wrong = {"authorization": "Bearer not-the-master-key-000000000"}
    assert [http.get("/debug/stats", headers=wrong).status_code for _ in range(3)] == [401] * 3
    refused = http.get("/debug/stats", headers={"authorization": f"Bearer {MASTER}"})
    assert refused.status_code == 429 and "Retry-After" in refused.headers


def _form_post(http: httpx.Client, page: str, target: str, data: dict[str, str]) -> int:
    http.get(page)
    token = http.cookies["csrftoken"]
    return http.post(target, data={**data, "csrfmiddlewaretoken": token}).status_code


def test_wrong_keys_on_the_stat_sign_in_are_throttled(http, alice):
    statuses = [
        _form_post(http, "/stat", "/stat/signin", {"key": f"rk-wrong-{n:020d}"}) for n in range(4)
    ]
    assert statuses == [403, 403, 403, 429]


def test_wrong_passwords_on_the_admin_sign_in_are_throttled(http, db):
    User.objects.create_superuser("root", password="right-password-for-root")
    wrong = {"username": "root", "password": "wrong", "next": "/admin/"}
    statuses = [_form_post(http, "/admin/login/", "/admin/login/", wrong) for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    right = {"username": "root", "password": "right-password-for-root", "next": "/admin/"}
    assert _form_post(http, "/admin/login/", "/admin/login/", right) == 429


def test_a_short_chosen_api_key_is_refused_naming_the_rule(http, alice):
    operator = {"authorization": f"Bearer {MASTER}"}
    response = http.post(
        "/api/keys/",
        json={"user": alice.user.id, "secret": "sk-twelve-ch"},
        headers=operator,
    )
    assert response.status_code == 400
    assert "24 to 200 characters" in response.text


@pytest.mark.django_db(transaction=True)
def test_a_short_master_key_stops_the_server_naming_the_rule(fake_gemini, tmp_path):
    log = tmp_path / "stderr"
    with log.open("wb") as stderr:
        server = Rotator(fake_gemini, env={"MASTER_API_KEY": "short-master"}, stderr=stderr)
        try:
            assert server.process.wait(timeout=60) != 0
        finally:
            server.stop()
    assert "MASTER_API_KEY must be at least 24 characters" in log.read_text()
