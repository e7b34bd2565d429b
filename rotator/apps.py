"""App config for rotator."""

from django.apps import AppConfig


class RotatorConfig(AppConfig):
    name = "rotator"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from rotator import (
            signals,  # noqa: F401  (connects pool invalidation)
            throttle,  # noqa: F401  (connects the failed-sign-in receiver)
        )
