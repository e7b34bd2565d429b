"""Prometheus metrics for /metrics: request counts, upstream latency, credential states.

With PROMETHEUS_MULTIPROC_DIR set (scripts/serve sets it), counters and the histogram are
prometheus-client's multiprocess values: every worker on the host writes its own file there,
and any worker's scrape adds them all up, so one scrape shows the host's totals. Without it
they live in this process's memory and each worker exposes only its own numbers. The
credential gauges are read from the database at scrape time, the same in every worker.
"""

import os
from collections.abc import Iterable, Iterator

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


# The label of every model this process has not seen upstream serve: client input must not
# mint a series per made-up name.
OTHER_MODEL = "other"
# Models upstream answered with a 2xx, or listed for a pool: real models, a few dozen at most.
_known_models: set[str] = set()


def models_known_add(models: Iterable[str]) -> None:
    """Lets these models (a pool's catalogue) label metrics under their own names."""
    _known_models.update(model.removeprefix("models/") for model in models)


def model_label(*, model: str, status: int) -> str:
    """The label for `model` in the request metrics: its name once upstream has served it (a
    2xx now, or earlier in this process) or listed it, else OTHER_MODEL; "-" for none."""
    if not model:
        return "-"
    if 200 <= status < 300:
        _known_models.add(model)
    return model if model in _known_models else OTHER_MODEL


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
    label = model_label(model=event.model, status=event.status)
    names = (label, event.dialect, str(event.status), event.credential_label or "-")
    counter = _request_counters.get(names)
    if counter is None:
        counter = _request_counters[names] = REQUESTS.labels(*names)
    counter.inc()
    if event.upstream_seconds > 0:
        histogram = _upstream_histograms.get(names[:2])
        if histogram is None:
            histogram = _upstream_histograms[names[:2]] = UPSTREAM_SECONDS.labels(*names[:2])
        histogram.observe(event.upstream_seconds)


# Each label set's child, as labels() returned it: labels() checks its arguments and takes a
# lock on every call, once per request. The label sets are bounded (model_label), so are these.
_request_counters: dict[tuple[str, str, str, str], Counter] = {}
_upstream_histograms: dict[tuple[str, str], Histogram] = {}


def metrics_render() -> bytes:
    """The exposition text: every worker's counts when multiprocess, else this process's
    (reads the database for the gauges)."""
    return generate_latest(_registry_to_scrape())
