"""Helpers for the stats tests: send chat completions, read Prometheus text."""

from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

MODEL = "gemini-2.5-flash"


@pytest.fixture
def chat(http: httpx.Client) -> Callable[..., httpx.Response]:
    """Sends one OpenAI-style chat completion through the live server with a Rotator key."""

    def send(key: str, *, model: str = MODEL, text: str = "hello there") -> httpx.Response:
        return http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": model, "messages": [{"role": "user", "content": text}]},
        )

    return send


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples named `name` in Prometheus exposition text, as (labels, value)."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
    return sum(
        value
        for sample_labels, value in metric_samples(text, name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )
