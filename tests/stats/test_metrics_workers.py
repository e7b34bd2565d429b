"""/metrics adds up every worker's counts when workers share PROMETHEUS_MULTIPROC_DIR."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import persona_create
from tests.support.processes import Rotator

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-for-tests-0123456789"
CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "count me"}]}


def _requests_counted(server: Rotator) -> float:
    response = httpx.get(
        f"{server.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "rotator_requests"
        for sample in family.samples
        if sample.name == "rotator_requests_total"
    )


def test_one_scrape_counts_the_requests_every_worker_answered(fake_gemini, tmp_path):
    olive = persona_create("olive", credentials=2)
    env = {"METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    servers = [Rotator(fake_gemini, env=env) for _ in range(2)]
    try:
        for server in servers:
            server.wait_answering()
        statuses = [
            httpx.post(
                f"{servers[number % 2].url}/v1/chat/completions",
                json=CHAT,
                headers={"authorization": f"Bearer {olive.key}"},
                timeout=30,
            ).status_code
            for number in range(10)
        ]
        scraped = [_requests_counted(server) for server in servers]
    finally:
        for server in servers:
            server.stop()
    assert statuses == [200] * 10
    assert scraped == [10, 10]
