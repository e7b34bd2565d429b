"""Any saved or deleted credential, key or pool setting invalidates that pool everywhere.

Signals rather than explicit calls because admin forms, the REST API and commands all save
these models; bulk `update()` calls (counters, tokens) deliberately do not fire them.
"""

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiKey, Credential
from rotator.models import PoolState


@receiver([post_save, post_delete], sender=Credential)
@receiver([post_save, post_delete], sender=ApiKey)
def pool_changed(sender: type, instance: Credential | ApiKey, **kwargs: Any) -> None:
    from rotator.pool import pool_invalidate

    pool_invalidate(user_id=instance.user_id)


@receiver(post_save, sender=PoolState)
def pool_settings_changed(sender: type, instance: PoolState, created: bool, **kwargs: Any) -> None:
    if not created:
        from rotator.pool import pool_invalidate

        pool_invalidate(user_id=instance.user_id)
