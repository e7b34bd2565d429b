"""Celery tasks: thin adapters over stats' core functions."""

from celery import shared_task

from common import clock
from stats.retention import usage_prune


@shared_task
def usage_prune_task() -> str:
    return usage_prune(now=clock.now()).summary
