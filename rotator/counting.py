"""Every attempt and every refusal becomes one usage event: the single place the request path
counts."""

from common import clock
from common.events import UsageEvent, usage_emit
from rotator.classify import Outcome, Verdict
from rotator.context import RequestContext
from rotator.pool import CredentialView


def attempt_count(
    ctx: RequestContext,
    credential: CredentialView | None,
    *,
    success: bool,
    verdict: Verdict | None = None,
    rate_limited: bool = False,
    usage: tuple[int, int, int] | None = None,
) -> None:
    """Records one usage event for the request's key, model and quota day: an attempt on
    `credential`, or (credential None) a refusal before any credential was tried."""
    now = clock.now()
    prompt, completion, total = usage or (0, 0, 0)
    if verdict is not None:
        rate_limited = verdict.outcome in (Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED)
    usage_emit(
        UsageEvent(
            day=clock.quota_day(now),
            user_id=ctx.key.user_id,
            api_key_id=ctx.key.id,
            credential_id=credential.id if credential else None,
            credential_label=credential.display_name if credential else "",
            model=ctx.model,
            requested_model=ctx.requested_model or ctx.model,
            success=success,
            rate_limited=rate_limited,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
        ),
        at=now,
    )
