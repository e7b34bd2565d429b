"""What the request path tells the counters: the events, and the hooks that carry them.

The pipeline (rotator) emits; the counters (stats) subscribe when their app is ready. Neither
imports the other, so the apps stay layered one way.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One upstream attempt (or one refused request) to count."""

    day: date
    user_id: int
    api_key_id: int | None
    credential_id: int | None
    credential_label: str
    model: str
    success: bool
    # The name the client asked for, when an alias served it by `model`; "" means `model`.
    requested_model: str = ""
    rate_limited: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class RequestAnswered:
    """One client request answered (or refused), for the metrics."""

    model: str
    dialect: str
    status: int
    credential_label: str
    upstream_seconds: float


class UsageListener(Protocol):
    def __call__(self, event: UsageEvent, *, at: datetime) -> None: ...


class UsageSettler(Protocol):
    async def __call__(self) -> None: ...


class RequestListener(Protocol):
    def __call__(self, event: RequestAnswered) -> None: ...


class CatalogListener(Protocol):
    def __call__(self, models: list[str]) -> None: ...


_usage_listeners: list[UsageListener] = []
_usage_settlers: list[UsageSettler] = []
_catalog_listeners: list[CatalogListener] = []
_request_listeners: list[RequestListener] = []


def usage_listen(listener: UsageListener) -> None:
    """Subscribes `listener` to every usage event (idempotent)."""
    if listener not in _usage_listeners:
        _usage_listeners.append(listener)


def request_listen(listener: RequestListener) -> None:
    """Subscribes `listener` to every answered request (idempotent)."""
    if listener not in _request_listeners:
        _request_listeners.append(listener)


def usage_emit(event: UsageEvent, *, at: datetime) -> None:
    for listener in _usage_listeners:
        listener(event, at=at)


def usage_settle_listen(settler: UsageSettler) -> None:
    """Subscribes `settler`: awaited by `usage_settled` (idempotent)."""
    if settler not in _usage_settlers:
        _usage_settlers.append(settler)


async def usage_settled() -> None:
    """Returns once every usage event emitted so far is stored where a killed process cannot
    lose it. The response path awaits it before an answer's last byte goes out."""
    for settler in _usage_settlers:
        await settler()


def request_emit(event: RequestAnswered) -> None:
    for listener in _request_listeners:
        listener(event)


def catalog_listen(listener: CatalogListener) -> None:
    """Subscribes `listener` to the model ids of every catalogue upstream lists (idempotent)."""
    if listener not in _catalog_listeners:
        _catalog_listeners.append(listener)


def catalog_emit(models: list[str]) -> None:
    for listener in _catalog_listeners:
        listener(models)
