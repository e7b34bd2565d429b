"""Celery tasks: thin adapters over rotator's core functions."""

from typing import Any

from celery import shared_task
from django.conf import settings

from common import clock
from rotator import alerts, oauth, pool, quota, stored_responses


@shared_task
def tokens_refresh_task() -> str:
    return oauth.tokens_refresh(within_seconds=600)


@shared_task
def quotas_reset_task() -> str:
    return pool.quotas_reset(user_id=None, now=clock.now(), force=False).summary


@shared_task
def credentials_recheck_task() -> str:
    from rotator.credentials import credentials_recheck

    return credentials_recheck(now=clock.now()).summary


@shared_task
def quotas_fetch_task() -> str:
    return quota.quotas_fetch(now=clock.now()).summary


@shared_task
def stored_responses_expire_task() -> str:
    deleted = stored_responses.stored_responses_expired_delete(now=clock.now())
    return f"deleted {deleted} expired stored response(s)"


@shared_task(bind=True)
def alert_deliver_task(self: Any, delivery_id: int) -> str:
    if alerts.alert_deliver(delivery_id=delivery_id, now=clock.now()):
        return f"alert {delivery_id} delivered"
    if self.request.retries >= settings.ALERT_RETRIES:
        return f"alert {delivery_id} not delivered after {self.request.retries + 1} attempt(s)"
    # Backoff: ALERT_RETRY_BASE_SECONDS, then twice that, and so on.
    raise self.retry(countdown=settings.ALERT_RETRY_BASE_SECONDS * 2**self.request.retries)
