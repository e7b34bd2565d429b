"""Celery tasks: thin adapters over rotator's core functions."""

from celery import shared_task

from common import clock
from rotator import oauth, pool, quota


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
