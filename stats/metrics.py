"""Prometheus metrics for /metrics: request counts, upstream latency, credential states.

With PROMETHEUS_MULTIPROC_DIR set (scripts/serve sets it), counters and the histogram are
prometheus-client's multiprocess values: every worker on the host writes its own file there,
and any worker's scrape adds them all up, so one scrape shows the host's totals. Without it
they live in this process's memory and each worker exposes only its own numbers. The
credential gauges are read from the database at scrape time, the same in every worker.
"""

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from common import clock
from common.events import RequestAnswered
from stats.selectors import credential_states

REGISTRY = CollectorRegistry(auto_describe=False)

REQUESTS = Counter(
    "rotator_requests",
    "Client requests answered, by model, dialect, HTTP status and the credential that served "
    "the last attempt (masked).",
    ["model", "dialect", "status", "credential"],
    registry=REGISTRY,
)
UPSTREAM_SECONDS = Histogram(
    "rotator_upstream_seconds",
    "Time spent waiting on upstream per client request (all attempts; streams until the "
    "first content).",
    ["model", "dialect"],
    # Generations range from a fraction of a second to minutes for thinking models.
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)


class _CredentialStates(Collector):
    """Gauges computed from the database at each scrape: pool × model × state."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "rotator_credentials",
            "Enabled credentials per pool and model that are available, rate_limited, "
            "exhausted (daily quota), invalid, suspended (by Google), or unavailable (model "
            "not found or circuit breaker open). Models: those served today or marked.",
            labels=["pool", "model", "state"],
        )
        for row in credential_states(now=clock.now()):
            family.add_metric([row.pool, row.model, row.state], row.count)
        yield family


REGISTRY.register(_CredentialStates())


def _registry_to_scrape() -> CollectorRegistry:
    # prometheus-client chose its value class from this variable when it was imported.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    registry.register(_CredentialStates())
    return registry


def request_observe(event: RequestAnswered) -> None:
    """Counts one answered client request and its upstream wait (subscribed to the request
    log's events); requests that never reached upstream (upstream_seconds 0) are counted but
    add nothing to the latency histogram."""
    model = event.model or "-"
    REQUESTS.labels(
        model=model,
        dialect=event.dialect,
        status=str(event.status),
        credential=event.credential_label or "-",
    ).inc()
    if event.upstream_seconds > 0:
        UPSTREAM_SECONDS.labels(model=model, dialect=event.dialect).observe(event.upstream_seconds)


def metrics_render() -> bytes:
    """The exposition text: every worker's counts when multiprocess, else this process's
    (reads the database for the gauges)."""
    return generate_latest(_registry_to_scrape())
