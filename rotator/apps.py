"""App config for rotator."""

from django.apps import AppConfig


class RotatorConfig(AppConfig):
    name = "rotator"
    default_auto_field = "django.db.models.BigAutoField"
