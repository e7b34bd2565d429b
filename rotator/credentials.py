"""Credential operations that involve the pool or upstream: enable and disable (the pool's
cache follows), health checks (one cheap upstream call) and the hourly re-check."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from django.conf import settings

from accounts.models import Credential
from rotator.classify import Outcome, Verdict, upstream_answer_classify
from rotator.oauth import token_refresh
from rotator.pool import credential_invalidate, credential_restore, pool_invalidate
from rotator.upstream import upstream_client_sync_for


def credentials_enable(*, credential_ids: Iterable[int], enabled: bool) -> int:
    """Enables or disables credentials; enabling also clears an invalid status. Returns count."""
    rows = Credential.objects.filter(id__in=list(credential_ids))
    users = set(rows.values_list("user_id", flat=True))
    changes: dict[str, Any] = {"enabled": enabled}
    if enabled:
        changes["status"] = Credential.Status.ACTIVE
    count = rows.update(**changes)
    for user_id in users:
        pool_invalidate(user_id=user_id)
    return count


@dataclass(frozen=True, slots=True)
class CheckResult:
    credential_id: int
    ok: bool
    message: str

    @property
    def summary(self) -> str:
        return ("ok" if self.ok else "failed") + (f": {self.message}" if self.message else "")


def credential_check(*, credential: Credential, now: datetime) -> CheckResult:
    """Asks upstream whether a credential works with one cheap call (a one-model list for an
    API key, a token refresh for an OAuth account). A pass restores an invalid credential; a
    definite refusal marks it invalid with upstream's newest message."""
    verdict: Verdict
    if credential.kind == Credential.Kind.GEMINI_OAUTH:
        result = token_refresh(credential_id=credential.id, margin_seconds=None, stale_token=None)
        verdict = result if isinstance(result, Verdict) else Verdict(Outcome.OK)
    else:
        secret = credential.secret()
        try:
            response = upstream_client_sync_for(credential).get(
                f"{settings.GEMINI_UPSTREAM_URL}/models",
                params={"pageSize": 1},
                headers={"x-goog-api-key": secret},
                timeout=settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS,
            )
            verdict = upstream_answer_classify(
                status=response.status_code, body=response.content, secrets=(secret,), api_key=True
            )
        except httpx.HTTPError as exc:
            verdict = Verdict(
                Outcome.TRANSIENT, message=f"upstream unreachable: {type(exc).__name__}"
            )
    if verdict.outcome is Outcome.OK:
        if credential.status == Credential.Status.INVALID:
            credential_restore(credential_id=credential.id)
        return CheckResult(credential_id=credential.id, ok=True, message="")
    if verdict.outcome in (Outcome.INVALID, Outcome.SUSPENDED, Outcome.UNAUTHENTICATED):
        credential_invalidate(
            credential_id=credential.id,
            message=verdict.message,
            status=None,
            now=now,
            suspended=verdict.outcome is Outcome.SUSPENDED,
        )
    return CheckResult(credential_id=credential.id, ok=False, message=verdict.message)


@dataclass(frozen=True, slots=True)
class RecheckSummary:
    checked: int
    restored: int

    @property
    def summary(self) -> str:
        return f"re-checked {self.checked} invalid credential(s), {self.restored} restored"


def credentials_recheck(*, now: datetime) -> RecheckSummary:
    """Re-checks every enabled invalid credential (the hourly beat task)."""
    invalid = Credential.objects.filter(enabled=True, status=Credential.Status.INVALID)
    restored = checked = 0
    for credential in invalid:
        checked += 1
        if credential_check(credential=credential, now=now).ok:
            restored += 1
    return RecheckSummary(checked=checked, restored=restored)
