"""`/` tells a visitor what this server is, where to go, and the base URL for each client."""

import re

import httpx


def test_the_landing_page_fills_in_the_servers_own_address_for_every_client(live, http):
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for link in ('href="/stat"', 'href="/admin/"', 'href="/api/docs/"'):
        assert link in page
    assert f'base_url="{live}/v1",' in page
    assert f'"base_url": "{live}"' in page
    assert f'base_url = "{live}/v1"' in page and 'wire_api = "responses"' in page
    assert f"ANTHROPIC_BASE_URL={live}\n" in page


def test_the_landing_page_uses_the_address_the_visitor_used(live):
    # Another name for the same server (a proxy's, a LAN address): the page follows the Host.
    with httpx.Client(base_url=live, headers={"host": "gateway.example:8443"}) as client:
        page = client.get("/").text
    assert "http://gateway.example:8443/v1" in page
    assert "127.0.0.1" not in page


def test_a_host_header_that_is_no_host_name_never_reaches_the_page(live):
    with httpx.Client(base_url=live, headers={"host": 'x"><script>alert(1)</script>'}) as client:
        response = client.get("/")
    assert response.status_code == 400
    assert "<script>alert" not in response.text


def test_the_landing_page_loads_nothing_from_anywhere(live, http):
    page = http.get("/").text
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert "@import" not in page and "url(" not in page


def test_clients_probing_the_root_with_head_get_an_answer(live, http):
    assert http.head("/").status_code == 200
