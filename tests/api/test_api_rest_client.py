"""The whole management API driven as a generic REST client would, over real HTTP."""

import httpx
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from common import clock
from stats.usage import usage_flush

MASTER = "master-key-for-tests-0123456789"
KEYS = ["AIzaRestClientKeyNumber" + str(n) + "z" * 16 for n in range(1, 4)]
CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hello"}]}


def test_a_rest_client_manages_users_keys_and_credentials_end_to_end(live, http, settings):
    settings.MASTER_API_KEY = MASTER
    api = httpx.Client(base_url=f"{live}/api", headers={"Authorization": f"Bearer {MASTER}"})

    # Create: 201 with the new object; the same username again is a 400 naming the field.
    user = api.post("/users/", json={"username": "dora", "email": "dora@example.com"})
    assert user.status_code == 201
    dora = user.json()["id"]
    taken = api.post("/users/", json={"username": "dora"})
    assert (taken.status_code, list(taken.json())) == (400, ["username"])

    # A key's secret is in the answer that creates it, and never again.
    created = api.post("/keys/", json={"user": dora, "name": "ci"})
    assert created.status_code == 201
    key_id, secret = created.json()["id"], created.json()["secret"]
    shown = api.get(f"/keys/{key_id}/")
    assert shown.status_code == 200
    assert "secret" not in shown.json()
    assert secret not in shown.text
    assert secret not in api.get("/keys/", params={"user": dora}).text

    # One credential, then two more and a bad line in one bulk import.
    first = api.post("/credentials/", json={"user": dora, "api_key": KEYS[0]})
    assert (first.status_code, first.json()["action"]) == (201, "created")
    credential = first.json()["credential"]["id"]
    imported = api.post(
        "/credentials/import/",
        json={"user": dora, "text": f"{KEYS[1]}\n{KEYS[2]}\nnot a key\n{KEYS[0]}\n"},
    )
    assert imported.status_code == 200
    counts = imported.json()
    assert (counts["created"], counts["duplicates"]) == (2, 1)
    assert [line.split(":")[0] for line in counts["rejected"]] == ["line 3"]

    # Lists filter, order and page as DRF does.
    listed = api.get(
        "/credentials/",
        params={"user": dora, "kind": "gemini_api_key", "ordering": "-position", "limit": 2},
    )
    assert listed.status_code == 200
    page = listed.json()
    assert page["count"] == 3
    assert len(page["results"]) == 2
    assert page["next"]
    positions = [row["position"] for row in page["results"]]
    assert positions == sorted(positions, reverse=True)
    assert api.get("/credentials/", params={"user": dora, "status": "invalid"}).json()["count"] == 0
    assert api.get("/credentials/", params={"status": "broken"}).status_code == 400

    # The key serves requests; PATCH changes only the fields sent.
    client = httpx.Client(base_url=live, headers={"Authorization": f"Bearer {secret}"})
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    patched = api.patch(f"/keys/{key_id}/", json={"allowed_models": ["models/gemini-2.5-pro"]})
    assert patched.status_code == 200
    assert (patched.json()["allowed_models"], patched.json()["name"]) == (["gemini-2.5-pro"], "ci")
    assert api.get(f"/keys/{key_id}/").json()["allowed_models"] == ["gemini-2.5-pro"]
    assert api.patch(f"/keys/{key_id}/", json={"allowed_models": []}).status_code == 200
    assert api.patch(f"/keys/{key_id}/", json={"requests_per_minute": 0}).status_code == 400

    relabelled = api.patch(f"/credentials/{credential}/", json={"label": "team key"})
    assert (relabelled.status_code, relabelled.json()["label"]) == (200, "team key")

    # Actions on items.
    disabled = api.post(f"/credentials/{credential}/disable/")
    assert (disabled.status_code, disabled.json()["enabled"]) == (200, False)
    assert api.post(f"/credentials/{credential}/enable/").json()["enabled"] is True
    checked = api.post(f"/credentials/{credential}/check/")
    assert (checked.status_code, checked.json()["ok"]) == (200, True)
    assert api.post(f"/credentials/{credential}/clear-marks/").json() == {"cleared": 0}
    rotated = api.post(f"/users/{dora}/rotate/")
    assert (rotated.status_code, rotated.json()["pool_size"]) == (200, 3)
    assert api.get("/marks/", params={"user": dora}).json()["count"] == 0

    # Usage of the requests above, by model, for today.
    usage_flush()
    today = clock.quota_day(clock.now()).isoformat()
    usage = api.get(
        "/usage/", params={"user": dora, "since": today, "until": today, "group_by": "model"}
    )
    assert usage.status_code == 200
    assert [(row["model"], row["requests"]) for row in usage.json()["results"]] == [
        ("gemini-2.5-flash", 1)
    ]

    # 403: signed in, but without the permission (staff is not enough).
    ops = User.objects.create_user(username="ops", is_staff=True)
    token = Token.objects.create(user=ops)
    staff = httpx.Client(base_url=f"{live}/api", headers={"Authorization": f"Token {token.key}"})
    assert staff.post("/keys/", json={"user": dora}).status_code == 403
    assert staff.get("/credentials/").status_code == 403

    # Revoke, then delete: 204, and the item is gone (404).
    revoked = api.post(f"/keys/{key_id}/revoke/")
    assert (revoked.status_code, revoked.json()["revoked"]) == (200, True)
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 401
    assert api.delete(f"/credentials/{credential}/").status_code == 204
    assert api.get(f"/credentials/{credential}/").status_code == 404
    assert api.delete(f"/keys/{key_id}/").status_code == 204
    assert api.get(f"/keys/{key_id}/").status_code == 404
    assert api.delete(f"/users/{dora}/").status_code == 204
    assert api.get(f"/users/{dora}/").status_code == 404
    assert api.get("/credentials/", params={"user": dora}).json()["count"] == 0

    # Verb routes are gone; a method a route does not serve is a 405.
    assert api.post("/keys/create/", json={"user": 1}).status_code == 404
    assert api.put(f"/users/{dora}/", json={}).status_code == 405
    for session in (api, client, staff):
        session.close()
