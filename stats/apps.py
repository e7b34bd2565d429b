"""App config for stats."""

from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "stats"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The request path emits; the counters listen (common.events keeps the apps layered).
        from common.events import catalog_listen, request_listen, usage_listen, usage_settle_listen
        from stats.metrics import models_known_add, request_observe
        from stats.usage import usage_record, usage_settled

        usage_listen(usage_record)
        usage_settle_listen(usage_settled)
        request_listen(request_observe)
        catalog_listen(models_known_add)
