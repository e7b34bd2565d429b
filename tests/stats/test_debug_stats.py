"""/debug/stats: requests per credential since the last rotation and in total, behind the
master key."""

from common import clock
from rotator.pool import pool_rotate

MASTER = "master-key-for-debug-stats-0123456789"


def test_it_says_it_is_not_configured_without_a_master_key(live, http, settings):
    settings.MASTER_API_KEY = ""
    response = http.get("/debug/stats", headers={"authorization": f"Bearer {MASTER}"})
    assert response.status_code == 403
    assert "not configured" in response.json()["error"]["message"]


def test_a_missing_or_wrong_master_key_is_refused(live, http, settings, alice):
    settings.MASTER_API_KEY = MASTER
    assert http.get("/debug/stats").status_code == 401
    wrong = http.get("/debug/stats", headers={"authorization": "Bearer not-the-master-key"})
    assert wrong.status_code == 401
    # A Rotator API key is not the master key.
    as_user = http.get("/debug/stats", headers={"authorization": f"Bearer {alice.key}"})
    assert as_user.status_code == 401


def test_it_counts_requests_per_credential_since_rotation_and_in_total(
    live, http, settings, alice, bob, chat
):
    settings.MASTER_API_KEY = MASTER
    for n in range(4):
        assert chat(alice.key, text=f"question {n}").status_code == 200
    assert chat(bob.key).status_code == 200
    auth = {"authorization": f"Bearer {MASTER}"}

    before = http.get("/debug/stats", headers=auth).json()
    assert before["total_requests"] == 5
    by_user: dict[str, list[dict]] = {}
    for row in before["credentials"]:
        by_user.setdefault(row["user"], []).append(row)
    assert sum(r["requests_total"] for r in by_user["alice"]) == 4
    assert sum(r["requests_since_rotation"] for r in by_user["alice"]) == 4
    assert sum(r["requests_total"] for r in by_user["bob"]) == 1
    assert len(by_user["alice"]) == 3 and len(by_user["bob"]) == 2

    pool_rotate(user_id=alice.user.id, now=clock.now())
    assert chat(alice.key).status_code == 200
    after = http.get("/debug/stats", headers=auth).json()
    alice_rows = [r for r in after["credentials"] if r["user"] == "alice"]
    assert sum(r["requests_since_rotation"] for r in alice_rows) == 1
    assert sum(r["requests_total"] for r in alice_rows) == 5
    assert after["total_requests"] == 6
    (alice_pool,) = [p for p in after["pools"] if p["user"] == "alice"]
    assert alice_pool["rotated_at"] is not None


def test_it_shows_credentials_masked_only(live, http, settings, alice):
    settings.MASTER_API_KEY = MASTER
    response = http.get("/debug/stats", headers={"authorization": f"Bearer {MASTER}"})
    for secret in [alice.key, *alice.upstream_keys]:
        assert secret not in response.text
    shown = {row["credential"] for row in response.json()["credentials"]}
    assert shown == {c.secret_mask for c in alice.credentials}
