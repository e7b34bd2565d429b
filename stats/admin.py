"""Admin for usage counters (read-only), and the 'usage today' column other admins show."""

from datetime import date

from django.contrib import admin
from django.db.models import BigIntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from rotator.admin import ReadOnlyAdmin
from stats.models import UsageCounter


def requests_on(*, day: date, owner: str) -> Coalesce:
    """An annotation: requests counted on quota day `day` for the row's `owner`
    ('credential' or 'api_key'), 0 when none."""
    total = (
        UsageCounter.objects.filter(**{owner: OuterRef("pk")}, day=day)
        .values(owner)
        .annotate(total=Sum("requests"))
        .values("total")
    )
    return Coalesce(Subquery(total), Value(0), output_field=BigIntegerField())


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = (
        "day",
        "user",
        "api_key",
        "credential_label",
        "model",
        "requested_model",
        *UsageCounter.COUNT_FIELDS,
    )
    list_filter = ("day", "model", "user")
    search_fields = (
        "model",
        "requested_model",
        "credential_label",
        "user__username",
        "api_key__name",
    )
    list_select_related = ("user", "api_key")
    date_hierarchy = "day"
    # `bucket` is the counter's internal natural key; the columns above say the same.
    exclude = ("bucket",)
