"""Admin for rotation state: pools (strategy, manual rotation), cooldown marks, upstream errors,
and model aliases (routing configuration, edited here).

Marks, cursors and error logs belong to the rotation engine (rotator.pool), so these pages only
read them; changes go through the engine's functions as actions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Model, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from accounts.forms import EgressProxyFields
from accounts.models import Credential
from common import clock
from rotator.models import (
    AlertDelivery,
    KeyRateWindow,
    Mark,
    ModelAlias,
    PoolState,
    UpstreamErrorLog,
)
from rotator.pool import marks_clear, pool_proxy_set, pool_rotate


def until_text(until: datetime, *, now: datetime) -> str:
    """'12:03 UTC' today, 'Jun 04 07:00 UTC' on another day."""
    until = until.astimezone(now.tzinfo)
    if until.date() == now.date():
        return f"{until:%H:%M} UTC"
    return f"{until:%b %d %H:%M} UTC"


class ChangedFieldsOnly:
    """Saves only the fields the operator changed: the request path updates counters, cursors
    and versions of these rows concurrently, and a whole-row save would write stale values
    back over them."""

    def save_model(
        self, request: HttpRequest, obj: Model, form: ModelForm[Any], change: bool
    ) -> None:
        if change:
            obj.save(update_fields=form.changed_data)
        else:
            obj.save()


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # shared by several models
    """Rows written by the rotation engine; operators look, and act through actions."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.action(description="Rotate the selected users' pools (next credential first)")
def pools_rotate(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
) -> None:
    """For User and PoolState rows alike: a pool's primary key is its user's."""
    for row in queryset:
        owner = getattr(row, "user", row)
        result = pool_rotate(user_id=row.pk, now=clock.now())
        if result.first_credential is None:
            modeladmin.message_user(
                request, f"{owner}: no usable credential in the pool.", messages.WARNING
            )
        else:
            modeladmin.message_user(
                request,
                f"{owner}: {result.first_credential.display_name} is now first "
                f"of {result.pool_size}.",
            )


class PoolChangeForm(EgressProxyFields, ModelForm[PoolState]):
    class Meta:
        model = PoolState
        fields = ["strategy"]


@admin.register(PoolState)
class PoolStateAdmin(ChangedFieldsOnly, admin.ModelAdmin[PoolState]):
    form = PoolChangeForm
    list_display = (
        "user", "strategy", "pool_size", "proxy_url_mask", "rotated_at", "cursor", "version",
    )  # fmt: skip
    list_filter = ("strategy",)
    search_fields = ("user__username",)
    list_select_related = ("user",)
    fieldsets = [
        (None, {"fields": ("user", "strategy", "pool_size", "rotated_at", "cursor", "version")}),
        (
            "Egress proxy",
            {
                "fields": ("proxy_url_mask", "proxy_url", "proxy_clear"),
                "description": "For every credential of this pool that names no proxy of its "
                "own: upstream calls and token refreshes go through it.",
            },
        ),
    ]
    readonly_fields = ("user", "pool_size", "rotated_at", "cursor", "version", "proxy_url_mask")
    actions = (pools_rotate,)

    def save_model(
        self, request: HttpRequest, obj: Model, form: ModelForm[Any], change: bool
    ) -> None:
        # The proxy fields are not model fields: pool_proxy_set stores and announces them.
        form.changed_data[:] = [
            name for name in form.changed_data if name not in ("proxy_url", "proxy_clear")
        ]
        super().save_model(request, obj, form, change)
        assert isinstance(form, PoolChangeForm) and isinstance(obj, PoolState)
        url = form.proxy_requested()
        if url is not None:
            pool_proxy_set(user_id=obj.user_id, url=url)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PoolState]:
        in_pool = Q(
            user__credentials__enabled=True,
            user__credentials__status=Credential.Status.ACTIVE,
        )
        pools: QuerySet[PoolState] = super().get_queryset(request)
        return pools.annotate(in_pool=Count("user__credentials", filter=in_pool))

    @admin.display(description="usable credentials", ordering="in_pool")
    def pool_size(self, obj: PoolState) -> int:
        return int(getattr(obj, "in_pool", 0))

    # A pool row is created with its user and carries the version every process compares
    # its snapshot with; deleting it would restart that version and hide changes.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MarkState(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [("active", "Cooling down"), ("lapsed", "Lapsed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Mark]) -> QuerySet[Mark]:
        if self.value() == "active":
            return queryset.filter(until__gt=clock.now())
        if self.value() == "lapsed":
            return queryset.filter(until__lte=clock.now())
        return queryset


@admin.register(Mark)
class MarkAdmin(ReadOnlyAdmin):
    list_display = ("credential", "user", "model", "reason", "until", "active", "message")
    list_filter = (MarkState, "reason", "model")
    search_fields = ("model", "message", "credential__label", "credential__secret_mask")
    list_select_related = ("credential__user",)
    actions = ("clear_cooldowns",)

    @admin.display(ordering="credential__user__username")
    def user(self, obj: Mark) -> str:
        return str(obj.credential.user)

    @admin.display(boolean=True, description="cooling down")
    def active(self, obj: Mark) -> bool:
        return obj.until > clock.now()

    def has_clear_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_credential")

    @admin.action(
        description="Clear every cooldown of the selected marks' credentials",
        permissions=["clear"],
    )
    def clear_cooldowns(self, request: HttpRequest, queryset: QuerySet[Mark]) -> None:
        cleared = marks_clear(credential_ids={m.credential_id for m in queryset})
        self.message_user(request, f"Cleared {cleared} cooldown mark(s).")


@admin.register(UpstreamErrorLog)
class UpstreamErrorLogAdmin(ReadOnlyAdmin):
    list_display = ("at", "credential", "model", "status", "outcome", "message")
    list_filter = ("outcome", "status", "model")
    search_fields = ("message", "model", "credential__label", "credential__secret_mask")
    list_select_related = ("credential",)
    date_hierarchy = "at"


@admin.register(KeyRateWindow)
class KeyRateWindowAdmin(ReadOnlyAdmin):
    """Per-key request windows of the database state backend (empty with Redis)."""

    list_display = ("api_key", "window", "count", "expires_at")
    search_fields = ("api_key__name", "api_key__prefix", "window")
    list_select_related = ("api_key",)


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin[ModelAlias]):
    """Saving or deleting here reaches every server process on its next request (signals)."""

    list_display = ("name", "target", "user", "updated_at")
    list_filter = (("user", admin.EmptyFieldListFilter), "target")
    search_fields = ("name", "target", "user__username")
    list_select_related = ("user",)
    fields = ("user", "name", "target")
    autocomplete_fields = ("user",)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "event",
        "user",
        "credential",
        "model",
        "outcome",
        "attempts",
        "response_status",
        "error",
    )
    list_filter = ("event", "outcome")
    search_fields = ("model", "dedupe_key")
