"""Per-credential egress proxies: exactly the configured credentials' upstream calls and token
refreshes go through their proxy, one pooled client per distinct proxy, the URL never shown."""

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from accounts.models import Credential
from accounts.secrets import encrypt, mask
from rotator.upstream import (
    upstream_client_sync_for,
    upstream_proxied_clients,
    upstream_proxied_forget,
)
from tests.rotator.test_oauth import oauth_persona
from tests.support.proxy import EgressProxy

MASTER = "master-key-for-tests-0123456789"
CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(autouse=True)
def _no_proxied_clients() -> Iterator[None]:
    upstream_proxied_forget()
    yield
    upstream_proxied_forget()


@pytest.fixture
def proxy() -> Iterator[EgressProxy]:
    with EgressProxy() as running:
        yield running


@pytest.fixture
def api(settings) -> APIClient:
    settings.MASTER_API_KEY = MASTER
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    return client


def _proxy_set(api: APIClient, credential: Credential, url: str) -> dict:
    response = api.patch(f"/api/credentials/{credential.id}/", {"proxy_url": url}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_only_the_credentials_that_name_a_proxy_send_their_calls_through_it(
    live, http, alice, api, proxy, fake_gemini
):
    url = proxy.http_url.replace("http://", "http://rotator:proxy-pass-0001@")
    first, second, third = alice.credentials
    for credential in (first, second):
        shown = _proxy_set(api, credential, url)
        assert shown["proxy_url_mask"] == mask(url)
        assert "proxy-pass-0001" not in str(shown)
    headers = {"authorization": f"Bearer {alice.key}"}
    for _ in range(6):
        assert http.post("/v1/chat/completions", headers=headers, json=CHAT).status_code == 200

    through = [line.rsplit(" ", 1)[-1] for line in proxy.seen]
    served = {c.secret(): len(fake_gemini.requests_for(c.secret())) for c in alice.credentials}
    # Round robin over three: each served some; every call of the two went through the proxy,
    # none of the third's did.
    assert all(served.values())
    assert sorted(through) == sorted(
        [first.secret()] * served[first.secret()] + [second.secret()] * served[second.secret()]
    )
    assert third.secret() not in through
    # Two credentials, one proxy: one pooled client.
    assert upstream_proxied_clients() == [url]


@pytest.mark.django_db(transaction=True)
def test_an_oauth_accounts_token_refresh_and_code_assist_calls_use_its_socks5_proxy(
    live, http, api, proxy, fake_gemini
):
    olga = oauth_persona("olga", fake_gemini, project_id="olga-project")
    _proxy_set(api, olga.credentials[0], proxy.socks_url)
    headers = {"authorization": f"Bearer {olga.key}"}
    assert http.post("/v1/chat/completions", headers=headers, json=CHAT).status_code == 200
    paths = [r.path for r in fake_gemini.requests]
    assert "/token" in paths and any(p.endswith(":generateContent") for p in paths)
    # The fake serves every endpoint on one port: each connection to it went through SOCKS5
    # (the token refresh's blocking client and the request path's async one: at least two).
    assert len(proxy.seen) >= 2
    assert set(proxy.seen) == {f"SOCKS 127.0.0.1:{urlsplit(fake_gemini.url).port}"}


def test_removing_the_proxy_sends_the_credential_direct_again(api, alice):
    credential = alice.credentials[0]
    _proxy_set(api, credential, "socks5://127.0.0.1:1080")
    cleared = _proxy_set(api, credential, "")
    assert cleared["proxy_url_mask"] == ""
    credential.refresh_from_db()
    assert credential.proxy_url_encrypted == ""


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1:21", "http://", "not a url", "socks5://host:port"]
)
def test_a_url_that_is_not_a_proxy_is_refused_without_being_echoed(api, alice, url):
    response = api.patch(
        f"/api/credentials/{alice.credentials[0].id}/", {"proxy_url": url}, format="json"
    )
    assert response.status_code == 400
    assert "proxy" in response.json()["proxy_url"][0].lower()
    if url != "http://":  # too short to tell apart from the help text's examples
        assert url not in response.content.decode()


def test_the_admin_sets_the_proxy_write_only_and_shows_it_masked(admin_client, alice):
    credential = alice.credentials[0]
    secret_url = "http://ops:admin-proxy-pass@127.0.0.1:3128"
    page = f"/admin/accounts/credential/{credential.id}/change/"
    response = admin_client.post(
        page,
        {
            "label": "with proxy",
            "project_label": "",
            "enabled": "on",
            "position": credential.position,
            "proxy_url": secret_url,
            # The recent-errors inline's management form.
            "error_log-TOTAL_FORMS": "0",
            "error_log-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    credential.refresh_from_db()
    assert credential.label == "with proxy" and credential.proxy_url_mask == mask(secret_url)
    shown = admin_client.get(page).content.decode()
    assert mask(secret_url) in shown and "admin-proxy-pass" not in shown
    assert (
        "admin-proxy-pass" not in admin_client.get("/admin/accounts/credential/").content.decode()
    )


@dataclass
class _Proxied:
    proxy_url_encrypted: str


def test_proxied_clients_are_reused_per_url_and_bounded(settings):
    settings.UPSTREAM_PROXY_CLIENTS_MAX = 2
    urls = [f"http://127.0.0.1:{port}" for port in (3001, 3002, 3003)]
    first = upstream_client_sync_for(_Proxied(encrypt(urls[0])))
    assert upstream_client_sync_for(_Proxied(encrypt(urls[0]))) is first
    for url in urls[1:]:
        upstream_client_sync_for(_Proxied(encrypt(url)))
    assert upstream_proxied_clients() == urls[1:]
    assert first.is_closed


@pytest.mark.django_db(transaction=True)
def test_a_dead_proxy_fails_its_credential_without_the_url_reaching_clients_logs_or_stat(
    live, http, alice, api, caplog, client
):
    first = alice.credentials[0]
    Credential.objects.filter(id__in=[c.id for c in alice.credentials[1:]]).update(enabled=False)
    # Nothing listens on port 9 of loopback (discard): the proxy is down.
    dead = "http://rotator:dead-proxy-pass-7@127.0.0.1:9"
    _proxy_set(api, first, dead)
    headers = {"authorization": f"Bearer {alice.key}"}
    with caplog.at_level("DEBUG"):
        answer = http.post("/v1/chat/completions", headers=headers, json=CHAT)
    assert answer.status_code in (502, 503)
    assert client.post("/stat/signin", {"key": alice.key}).status_code == 302
    seen = [answer.text, caplog.text, client.get("/stat").content.decode()]
    seen += list(first.error_log.values_list("message", flat=True))
    for text in seen:
        assert "dead-proxy-pass-7" not in text and dead not in text


# ------------------------------------------------------------------ a whole pool's proxy


def _pool_proxy_set(api: APIClient, user_id: int, url: str) -> dict:
    response = api.post(f"/api/users/{user_id}/pool-proxy/", {"proxy_url": url}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_a_pools_proxy_carries_every_credential_without_one_of_its_own(
    live, http, alice, bob, api, fake_gemini
):
    with EgressProxy() as pool_proxy, EgressProxy() as own_proxy:
        headers = {"authorization": f"Bearer {alice.key}"}
        # Warm: the pool is cached before the proxy is set, as on a running server.
        assert http.post("/v1/chat/completions", headers=headers, json=CHAT).status_code == 200
        url = pool_proxy.http_url.replace("http://", "http://pool:pool-pass-0002@")
        shown = _pool_proxy_set(api, alice.user.id, url)
        assert shown == {"proxy_url_mask": mask(url)}
        own = alice.credentials[2]
        _proxy_set(api, own, own_proxy.http_url)
        fake_gemini.reset()
        for _ in range(6):
            assert http.post("/v1/chat/completions", headers=headers, json=CHAT).status_code == 200
        bob_headers = {"authorization": f"Bearer {bob.key}"}
        assert http.post("/v1/chat/completions", headers=bob_headers, json=CHAT).status_code == 200

        through_pool = [line.rsplit(" ", 1)[-1] for line in pool_proxy.seen]
        through_own = [line.rsplit(" ", 1)[-1] for line in own_proxy.seen]
    served = {c.secret(): len(fake_gemini.requests_for(c.secret())) for c in alice.credentials}
    assert all(served.values())
    first, second, _ = alice.credentials
    # The two without a proxy of their own took the pool's; the third kept its own; bob's
    # pool, which names none, went direct.
    assert sorted(through_pool) == sorted(
        [first.secret()] * served[first.secret()] + [second.secret()] * served[second.secret()]
    )
    assert through_own == [own.secret()] * served[own.secret()]
    assert not set(bob.upstream_keys) & {*through_pool, *through_own}


def test_a_pools_proxy_is_shown_masked_removed_with_an_empty_value_and_checked(api, alice):
    secret_url = "socks5://ops:pool-secret-9@127.0.0.1:1080"
    assert _pool_proxy_set(api, alice.user.id, secret_url) == {"proxy_url_mask": mask(secret_url)}
    refused = api.post(
        f"/api/users/{alice.user.id}/pool-proxy/", {"proxy_url": "ftp://x:21"}, format="json"
    )
    assert refused.status_code == 400 and "ftp://x:21" not in refused.content.decode()
    assert _pool_proxy_set(api, alice.user.id, "") == {"proxy_url_mask": ""}
    from rotator.models import PoolState

    assert PoolState.objects.get(user=alice.user).proxy_url_encrypted == ""


def test_setting_a_pools_proxy_needs_the_permission_to_change_pools(alice, bob):
    from django.contrib.auth.models import Permission

    operator = bob.user
    operator.user_permissions.add(
        Permission.objects.get(codename="view_user"), Permission.objects.get(codename="change_user")
    )
    client = APIClient()
    client.force_login(operator)
    path = f"/api/users/{alice.user.id}/pool-proxy/"
    body = {"proxy_url": "http://127.0.0.1:3128"}
    assert client.post(path, body, format="json").status_code == 403
    operator.user_permissions.add(Permission.objects.get(codename="change_poolstate"))
    operator = type(operator).objects.get(pk=operator.pk)  # permissions are cached per object
    client.force_login(operator)
    assert client.post(path, body, format="json").status_code == 200


def test_the_admin_sets_a_pools_proxy_write_only(admin_client, alice):
    from rotator.models import PoolState

    PoolState.objects.get_or_create(user=alice.user)
    secret_url = "http://ops:pool-admin-pass@127.0.0.1:3128"
    page = f"/admin/rotator/poolstate/{alice.user.id}/change/"
    response = admin_client.post(page, {"strategy": "round_robin", "proxy_url": secret_url})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert PoolState.objects.get(user=alice.user).proxy_url_mask == mask(secret_url)
    shown = admin_client.get(page).content.decode()
    assert mask(secret_url) in shown and "pool-admin-pass" not in shown
    listing = admin_client.get("/admin/rotator/poolstate/").content.decode()
    assert "pool-admin-pass" not in listing
    response = admin_client.post(page, {"strategy": "round_robin", "proxy_clear": "on"})
    assert response.status_code == 302
    assert PoolState.objects.get(user=alice.user).proxy_url_mask == ""
