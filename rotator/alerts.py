"""Operator alerts: a signed webhook when a credential dies or a pool has none left for a model.

One alert per state change (a unique dedupe key per change), each delivery recorded. With
ALERT_VIA_CELERY (the default when a broker is configured) a worker delivers and retries with
backoff; without, delivery is inline with ALERT_TIMEOUT_SECONDS and one attempt.
"""

import hashlib
import hmac
import logging
import time
from datetime import datetime
from typing import Any

import httpx
import orjson
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import Credential
from rotator.models import AlertDelivery

logger = logging.getLogger("rotator.alerts")

_DELIVER_TASK = "rotator.tasks.alert_deliver_task"
# Pool-empty checks run on refused requests: remember raised keys so a burst of refusals
# costs one database write, not one per request.
_raised: set[str] = set()
_RAISED_MAX = 10_000


def _enabled() -> bool:
    return bool(settings.ALERT_WEBHOOK_URL)


def _deliver_later(delivery_id: int) -> None:
    """Hands the delivery to a Celery worker (which retries with backoff)."""
    tasks = current_app.tasks
    if _DELIVER_TASK not in tasks:
        # Outside a worker the task modules are imported on first need (Celery's own
        # autodiscovery hook), not when Django starts.
        current_app.loader.import_default_modules()
    tasks[_DELIVER_TASK].apply_async(args=[delivery_id])


def alert_raise(
    *,
    event: str,
    dedupe_key: str,
    user_id: int | None,
    credential_id: int | None,
    model: str,
    message: str,
    now: datetime,
) -> AlertDelivery | None:
    """Records and sends an alert unless one with `dedupe_key` was raised before (or no
    ALERT_WEBHOOK_URL is set). Returns the new delivery, else None. Never raises for a
    webhook that fails: the delivery records it."""
    if not _enabled() or dedupe_key in _raised:
        return None
    credential = (
        Credential.objects.filter(id=credential_id).only("label", "secret_mask", "user_id").first()
        if credential_id
        else None
    )
    payload: dict[str, Any] = {
        "event": event,
        "at": now.isoformat(),
        "user": user_id,
        "credential": (
            {"id": credential.id, "name": credential.display_name} if credential else None
        ),
        "model": model,
        "message": message,
    }
    try:
        with transaction.atomic():
            delivery = AlertDelivery.objects.create(
                event=event,
                dedupe_key=dedupe_key[:300],
                user_id=user_id,
                credential_id=credential_id,
                model=model,
                payload=payload,
                created_at=now,
            )
    except IntegrityError:
        delivery = None  # another process raised it first
    if len(_raised) >= _RAISED_MAX:
        _raised.clear()
    _raised.add(dedupe_key)
    if delivery is None:
        return None
    try:
        if settings.ALERT_VIA_CELERY:
            _deliver_later(delivery.id)
        else:
            alert_deliver(delivery_id=delivery.id, now=now)
    except Exception as exc:  # an alert must never break the request that raised it
        logger.exception("alert %s could not be dispatched", delivery.id)
        AlertDelivery.objects.filter(id=delivery.id).update(
            outcome=AlertDelivery.Outcome.FAILED, error=f"not dispatched: {type(exc).__name__}"
        )
    return delivery


def pool_empty_alert(
    *, user_id: int, model: str, version: int, back_at: datetime | None, now: datetime
) -> AlertDelivery | None:
    """Alerts that a pool has no usable credential for `model`: none at all (`back_at` None;
    one alert per pool version, which changes with the credentials), or all cooling down
    until `back_at` (one alert per such period)."""
    if back_at is None:
        key = f"pool_empty:{user_id}:*:v{version}"
        message = "The pool has no enabled, valid credential left."
    else:
        key = f"pool_empty:{user_id}:{model}:{back_at:%Y%m%dT%H%M}"
        message = f"Every credential is rate-limited or exhausted until {back_at:%H:%M} UTC."
    return alert_raise(
        event=AlertDelivery.Event.POOL_EMPTY,
        dedupe_key=key,
        user_id=user_id,
        credential_id=None,
        model=model if back_at is not None else "",
        message=message,
        now=now,
    )


def alert_body(*, payload: dict[str, Any], style: str) -> bytes:
    """The webhook body: Rotator's JSON, or Slack's {"text"} or Discord's {"content"}."""
    if style == "json":
        return orjson.dumps(payload)
    credential = payload.get("credential") or {}
    text = f"Rotator: {payload['event'].replace('_', ' ')}"
    if credential:
        text += f" ({credential.get('name')})"
    if payload.get("model"):
        text += f" for {payload['model']}"
    if payload.get("message"):
        text += f": {payload['message']}"
    return orjson.dumps({"text": text} if style == "slack" else {"content": text})


def alert_signature(*, body: bytes, timestamp: str) -> str:
    """`sha256=<hex>` of HMAC-SHA256(ALERT_WEBHOOK_SECRET, "<timestamp>." + body): receivers
    recompute it and compare in constant time; the timestamp lets them refuse replays."""
    mac = hmac.new(
        settings.ALERT_WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    )
    return f"sha256={mac.hexdigest()}"


def alert_deliver(*, delivery_id: int, now: datetime) -> bool:
    """Posts one recorded alert to ALERT_WEBHOOK_URL and records the outcome (status, error,
    attempts). Returns whether the receiver took it (a 2xx)."""
    delivery = AlertDelivery.objects.get(id=delivery_id)
    if delivery.outcome == AlertDelivery.Outcome.SENT:
        return True
    body = alert_body(payload=delivery.payload, style=settings.ALERT_WEBHOOK_FORMAT)
    timestamp = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "user-agent": "Rotator-Alerts/1",
        "x-rotator-event": delivery.event,
        "x-rotator-delivery": str(delivery.id),
        "x-rotator-timestamp": timestamp,
    }
    if settings.ALERT_WEBHOOK_SECRET:
        headers["x-rotator-signature"] = alert_signature(body=body, timestamp=timestamp)
    status: int | None = None
    error = ""
    try:
        response = httpx.post(
            settings.ALERT_WEBHOOK_URL,
            content=body,
            headers=headers,
            timeout=settings.ALERT_TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
        )
        status = response.status_code
        if not 200 <= status <= 299:
            error = f"receiver answered {status}"
    except httpx.HTTPError as exc:
        error = f"receiver unreachable: {type(exc).__name__}"
    ok = not error
    AlertDelivery.objects.filter(id=delivery_id).update(
        outcome=AlertDelivery.Outcome.SENT if ok else AlertDelivery.Outcome.FAILED,
        attempts=delivery.attempts + 1,
        response_status=status,
        error=error,
        delivered_at=now if ok else None,
    )
    if not ok:
        logger.warning("alert %s not delivered: %s", delivery_id, error)
    return ok


def process_alerts_forget() -> None:
    _raised.clear()
