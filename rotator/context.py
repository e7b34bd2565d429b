"""The request context that travels through the pipeline, and the one log line it ends as."""

import logging
import time
from dataclasses import dataclass, field

from common.events import RequestAnswered, request_emit
from rotator.pool import CredentialView, KeyView

logger = logging.getLogger("rotator.request")


@dataclass(slots=True)
class RequestContext:
    """One client request as it moves through the pipeline; ends as one log line."""

    request_id: str
    # The codec's NAME: openai_chat, openai_responses, anthropic_messages, gemini_native.
    dialect: str
    key: KeyView
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float = 0.0
    attempts: int = 0
    # The Gemini model called, counted and marked; the name the client sent, when an alias
    # (rotator.aliases) mapped it to another.
    model: str = ""
    requested_model: str = ""
    # The alias table version `model` was resolved with, while unconfirmed: the first pick
    # checks it against the shared one (rotator.aliases.Resolution), then it is cleared.
    aliases_version_unconfirmed: int | None = None
    credential: CredentialView | None = None
    status: int = 0
    usage: tuple[int, int, int] | None = None

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000)


def request_log(ctx: RequestContext) -> None:
    """One structured line per request (never a secret: masks and prefixes only), and the
    same facts for /metrics."""
    prompt, completion, total = ctx.usage or (0, 0, 0)
    credential_label = ctx.credential.display_name if ctx.credential else "-"
    request_emit(
        RequestAnswered(
            model=ctx.model,
            dialect=ctx.dialect,
            status=ctx.status,
            credential_label=credential_label,
            upstream_seconds=ctx.upstream_seconds,
        )
    )
    logger.info(
        "request_id=%s key=%s credential=%s model=%s dialect=%s attempts=%d status=%d "
        "latency_ms=%.1f overhead_ms=%.2f tokens=%d/%d/%d",
        ctx.request_id,
        ctx.key.prefix,
        credential_label,
        ctx.model or "-",
        ctx.dialect,
        ctx.attempts,
        ctx.status,
        (time.perf_counter() - ctx.started) * 1000,
        ctx.overhead_ms(),
        prompt,
        completion,
        total,
    )
