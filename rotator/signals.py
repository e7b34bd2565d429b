"""Any saved or deleted credential, key or pool setting invalidates that pool everywhere;
any saved or deleted model alias, the alias table everywhere.

Signals rather than explicit calls because admin forms, the REST API and commands all save
these models; bulk `update()` calls (counters, tokens) deliberately do not fire them. They
live here, not in accounts, because the pool cache is rotator's.
"""

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiKey, Credential
from rotator.aliases import aliases_invalidate
from rotator.models import ModelAlias, PoolState
from rotator.pool import pool_invalidate


@receiver([post_save, post_delete], sender=Credential)
@receiver([post_save, post_delete], sender=ApiKey)
def pool_changed(sender: type, instance: Credential | ApiKey, **kwargs: Any) -> None:
    if kwargs.get("created") and sender is Credential:
        # A user's first credential starts their pool: its row is where the admin rotates it.
        PoolState.objects.get_or_create(user_id=instance.user_id)
    pool_invalidate(user_id=instance.user_id)


@receiver(post_save, sender=PoolState)
def pool_settings_changed(sender: type, instance: PoolState, created: bool, **kwargs: Any) -> None:
    if not created:
        pool_invalidate(user_id=instance.user_id)


@receiver([post_save, post_delete], sender=ModelAlias)
def alias_changed(sender: type, instance: ModelAlias, **kwargs: Any) -> None:
    aliases_invalidate()
