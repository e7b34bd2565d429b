"""Remaining quota of Gemini CLI OAuth accounts, read from Code Assist's retrieveUserQuota."""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from django.conf import settings
from django.db import transaction
from django.utils.dateparse import parse_datetime

from accounts.models import Credential
from rotator.alerts import alert_raise
from rotator.classify import Outcome, Verdict, upstream_answer_classify
from rotator.models import AlertDelivery, QuotaReading
from rotator.oauth import token_refresh
from rotator.upstream import upstream_client_sync_for

logger = logging.getLogger("rotator.quota")

# gemini-cli shows bucket gemini-3-flash as gemini-3.5-flash (the model it serves).
_BUCKET_MODEL_ALIASES = {"gemini-3-flash": "gemini-3.5-flash"}


@dataclass(frozen=True, slots=True)
class QuotaFetched:
    credential_id: int
    ok: bool
    # How many (model) buckets were stored.
    buckets: int
    message: str

    @property
    def summary(self) -> str:
        if self.ok:
            return f"read {self.buckets} quota bucket(s)"
        return f"quota not read: {self.message}"


def _bucket_reading(bucket: Any, *, now: datetime) -> dict[str, Any] | None:
    """One retrieveUserQuota bucket as QuotaReading fields; None without a model. Every field
    is optional on the wire, and remainingAmount is an int64 written as a decimal string."""
    if not isinstance(bucket, dict) or not isinstance(bucket.get("modelId"), str):
        return None
    model = bucket["modelId"].removeprefix("models/")
    fraction = bucket.get("remainingFraction")
    amount = bucket.get("remainingAmount")
    reset = bucket.get("resetTime")
    reset_at = parse_datetime(reset) if isinstance(reset, str) else None
    return {
        "model": _BUCKET_MODEL_ALIASES.get(model, model),
        "remaining_fraction": (
            min(max(float(fraction), 0.0), 1.0)
            if isinstance(fraction, int | float) and not isinstance(fraction, bool)
            else None
        ),
        "remaining_amount": int(amount) if isinstance(amount, str) and amount.isdigit() else None,
        "token_type": str(bucket.get("tokenType") or "")[:40],
        "reset_at": reset_at if reset_at is not None and reset_at.tzinfo is not None else None,
        "fetched_at": now,
    }


def _quota_request(*, credential: Credential) -> list[Any] | Verdict:
    token = token_refresh(
        credential_id=credential.id,
        margin_seconds=settings.OAUTH_REFRESH_MARGIN_SECONDS,
        stale_token=None,
    )
    if isinstance(token, Verdict):
        return token
    try:
        response = upstream_client_sync_for(credential).post(
            f"{settings.CODE_ASSIST_UPSTREAM_URL}:retrieveUserQuota",
            headers={"authorization": f"Bearer {token[0]}", "content-type": "application/json"},
            content=orjson.dumps({"project": credential.oauth_project_id}),
        )
    except httpx.HTTPError as exc:
        return Verdict(Outcome.TRANSIENT, message=f"Code Assist unreachable: {type(exc).__name__}")
    if response.status_code != 200:
        return upstream_answer_classify(
            status=response.status_code, body=response.content, secrets=(token[0],)
        )
    try:
        buckets = orjson.loads(response.content).get("buckets") or []
    except (orjson.JSONDecodeError, AttributeError):
        return Verdict(
            Outcome.TRANSIENT, message="Code Assist sent a quota answer that is not JSON"
        )
    return buckets if isinstance(buckets, list) else []


def credential_quota_fetch(*, credential: Credential, now: datetime) -> QuotaFetched:
    """Reads an OAuth account's remaining quota per model from Code Assist and replaces its
    stored readings with them. Returns what happened; never raises for upstream trouble and
    marks nothing (a refused token is the token refresh's and the request path's to report).
    API keys have no such endpoint: their remaining quota is estimated on /stat."""
    if credential.kind != Credential.Kind.GEMINI_OAUTH:
        return QuotaFetched(
            credential.id, False, 0, "only Gemini CLI OAuth accounts report their quota"
        )
    if not credential.oauth_project_id:
        # Discovery (loadCodeAssist, onboarding) runs on the account's first request.
        return QuotaFetched(
            credential.id, False, 0, "Code Assist project not known yet (send one request)"
        )
    result = _quota_request(credential=credential)
    if isinstance(result, Verdict):
        return QuotaFetched(credential.id, False, 0, result.message or result.outcome.value)
    readings = [r for b in result if (r := _bucket_reading(b, now=now)) is not None]
    with transaction.atomic():
        stored = QuotaReading.objects.filter(
            credential_id=credential.id, source=QuotaReading.Source.REPORTED
        )
        stored.exclude(model__in=[r["model"] for r in readings]).delete()
        for reading in readings:
            QuotaReading.objects.update_or_create(
                credential_id=credential.id,
                model=reading["model"],
                source=QuotaReading.Source.REPORTED,
                defaults={name: value for name, value in reading.items() if name != "model"},
            )
    for reading in readings:
        quota_low_alert(credential=credential, reading=reading, now=now)
    return QuotaFetched(credential.id, True, len(readings), "")


def quota_low_alert(*, credential: Credential, reading: dict[str, Any], now: datetime) -> None:
    """Alerts once per (credential, model, reset) when at least ALERT_QUOTA_USED_SHARE of
    the daily quota is used."""
    share = settings.ALERT_QUOTA_USED_SHARE
    fraction = reading.get("remaining_fraction")
    if not share or fraction is None or 1.0 - fraction < share:
        return
    reset_at = reading.get("reset_at")
    period = reset_at.isoformat() if reset_at else now.date().isoformat()
    alert_raise(
        event=AlertDelivery.Event.QUOTA_LOW,
        dedupe_key=f"quota_low:{credential.id}:{reading['model']}:{period}",
        user_id=credential.user_id,
        credential_id=credential.id,
        model=str(reading["model"]),
        message=f"{1.0 - fraction:.0%} of the daily quota is used"
        + (f"; it resets at {reset_at.astimezone(UTC):%H:%M} UTC." if reset_at else "."),
        now=now,
    )


@dataclass(frozen=True, slots=True)
class QuotasFetched:
    read: int
    failed: int

    @property
    def summary(self) -> str:
        return f"read the quota of {self.read} OAuth account(s), {self.failed} failed"


def quotas_fetch(*, now: datetime) -> QuotasFetched:
    """Reads the remaining quota of every usable OAuth account (the beat task)."""
    read = failed = 0
    accounts = Credential.objects.in_pool().filter(kind=Credential.Kind.GEMINI_OAUTH)
    for credential in accounts:
        if credential_quota_fetch(credential=credential, now=now).ok:
            read += 1
        else:
            failed += 1
    if failed:
        logger.info("quota read failed for %d OAuth account(s)", failed)
    return QuotasFetched(read=read, failed=failed)
