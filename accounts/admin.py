"""Admin for users, Rotator API keys and upstream credentials: the operators' main UI.

Secrets are write-only here: pages show `secret_mask` / `prefix` and never the encrypted
columns or digests; a new API key's secret is shown once, on the page that creates it.
Every action is a thin call to accounts.services or rotator.pool.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Model, Prefetch, QuerySet
from django.forms import BaseInlineFormSet, Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from rest_framework.authtoken.models import TokenProxy

from accounts import services
from accounts.forms import (
    OAUTH_WARNING,
    ApiKeyChangeForm,
    ApiKeyCreateForm,
    CredentialAddForm,
    CredentialChangeForm,
    CredentialImportForm,
)
from accounts.models import ApiKey, Credential
from common import clock
from rotator import credentials, quota
from rotator.admin import ChangedFieldsOnly, pools_rotate, until_text
from rotator.models import Mark, QuotaReading, UpstreamErrorLog
from rotator.pool import marks_clear
from stats.admin import requests_on

User = get_user_model()

RECENT_ERRORS_SHOWN = 10
LAST_ERROR_COLUMN_CHARS = 80


def _keys_created_page(
    request: HttpRequest, *, modeladmin: admin.ModelAdmin[Any], created: list[tuple[ApiKey, str]]
) -> HttpResponse:
    """The one page that ever shows a key's secret; browsers are told not to keep it."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": ApiKey._meta,
        "title": "API key created" if len(created) == 1 else "API keys created",
        "created": created,
    }
    response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
    add_never_cache_headers(response)
    return response


def _form_page(
    request: HttpRequest,
    *,
    modeladmin: admin.ModelAdmin[Any],
    form: Form,
    title: str,
    submit_label: str,
    template: str = "admin/accounts/form_page.html",
    **extra: Any,
) -> HttpResponse:
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.opts,
        "title": title,
        "form": form,
        "media": modeladmin.media + form.media,
        "submit_label": submit_label,
        **extra,
    }
    return TemplateResponse(request, template, context)


# ------------------------------------------------------------------------------------- users

# DRF's token admin lists token keys in plain text (its model stores them so); operators
# manage API access with Rotator keys and MASTER_API_KEY instead.
if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)

if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class RotatorUserAdmin(UserAdmin):  # type: ignore[type-arg]  # the stubs' own User
    list_display = (
        "username",
        "email",
        "is_staff",
        "is_active",
        "api_keys_count",
        "credentials_count",
        "last_login",
    )
    actions = (pools_rotate, "create_api_key")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        users: QuerySet[Any] = super().get_queryset(request)
        annotated: QuerySet[Any] = users.annotate(
            keys_count=Count("api_keys", distinct=True),
            pool_count=Count("credentials", distinct=True),
        )
        return annotated

    @admin.display(description="API keys", ordering="keys_count")
    def api_keys_count(self, obj: Any) -> int:
        return int(obj.keys_count)

    @admin.display(description="credentials", ordering="pool_count")
    def credentials_count(self, obj: Any) -> int:
        return int(obj.pool_count)

    @admin.action(description="Create an API key for each selected user", permissions=["add_key"])
    def create_api_key(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        created = [services.api_key_create(user=user, name="created in admin") for user in queryset]
        for api_key, _secret in created:
            self.log_addition(request, api_key, [{"added": {}}])
        return _keys_created_page(request, modeladmin=self, created=created)

    def has_add_key_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.add_apikey")


# ----------------------------------------------------------------------------------- API keys


class KeyState(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [("usable", "Usable"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = clock.now()
        if self.value() == "usable":
            return queryset.filter(pk__in=ApiKey.objects.active(now=now))
        if self.value() == "revoked":
            return queryset.filter(revoked=True)
        if self.value() == "expired":
            return queryset.filter(revoked=False, expires_at__lte=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ChangedFieldsOnly, admin.ModelAdmin[ApiKey]):
    form = ApiKeyChangeForm
    list_display = (
        "__str__",
        "user",
        "state",
        "models",
        "limits",
        "usage_today",
        "created_at",
        "last_used_at",
        "expires_at",
    )
    list_filter = (KeyState, "user")
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    fields = (
        "user",
        "name",
        "prefix",
        "state",
        "expires_at",
        "allowed_models",
        "requests_per_minute",
        "requests_per_day",
        "usage_today",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = (
        "user",
        "prefix",
        "state",
        "usage_today",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ("revoke",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        keys: QuerySet[ApiKey] = super().get_queryset(request)
        return keys.annotate(today=requests_on(day=clock.quota_day(clock.now()), owner="api_key"))

    @admin.display(description="state")
    def state(self, obj: ApiKey) -> str:
        if obj.revoked:
            return "revoked"
        return "expired" if obj.is_expired(clock.now()) else "usable"

    @admin.display(description="models")
    def models(self, obj: ApiKey) -> str:
        return ", ".join(obj.allowed_models) if obj.allowed_models else "all"

    @admin.display(description="limits")
    def limits(self, obj: ApiKey) -> str:
        parts = []
        if obj.requests_per_minute:
            parts.append(f"{obj.requests_per_minute}/min")
        if obj.requests_per_day:
            parts.append(f"{obj.requests_per_day}/day")
        return ", ".join(parts) or "-"

    @admin.display(description="requests today", ordering="today")
    def usage_today(self, obj: ApiKey) -> int:
        return int(getattr(obj, "today", 0))

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = ApiKeyCreateForm(request.POST)
            if form.is_valid():
                try:
                    api_key, secret = services.api_key_create(**form.service_arguments())
                except ValidationError as exc:
                    form.add_error(None, exc)
                else:
                    self.log_addition(request, api_key, [{"added": {}}])
                    return _keys_created_page(request, modeladmin=self, created=[(api_key, secret)])
        else:
            form = ApiKeyCreateForm(initial={"user": request.GET.get("user")})
        return _form_page(
            request,
            modeladmin=self,
            form=form,
            title="Add API key",
            submit_label="Create key",
            intro="The key's secret is shown once, on the next page, and never again.",
        )

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        now = clock.now()
        revoked = 0
        for api_key in queryset.filter(revoked=False):
            services.api_key_revoke(api_key=api_key, now=now)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).")


# -------------------------------------------------------------------------------- credentials


class RecentErrorsFormSet(BaseInlineFormSet):  # type: ignore[type-arg]
    """Only the newest few rows; slicing here because the inline filters its queryset by the
    credential afterwards, which Django refuses on a sliced queryset."""

    def get_queryset(self) -> Any:
        if not hasattr(self, "_recent"):
            self._recent = super().get_queryset()[:RECENT_ERRORS_SHOWN]
        return self._recent


class RecentErrorsInline(admin.TabularInline):  # type: ignore[type-arg]
    model = UpstreamErrorLog
    formset = RecentErrorsFormSet
    fields = ("at", "model", "status", "outcome", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = f"Recent upstream errors (newest {RECENT_ERRORS_SHOWN})"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _added_message(added: services.CredentialAdded) -> tuple[str, int]:
    credential = added.credential
    where = f"{credential.user}'s pool"
    if added.action == "duplicate":
        return f"{credential.display_name} is already in {where}; nothing added.", messages.WARNING
    if added.action == "updated":
        text = f"{credential.display_name} was already in {where}; its OAuth JSON was updated."
        return text, messages.SUCCESS
    text = f"Added {credential.display_name} to {where}."
    if added.action == "replaced":
        text += f" The pool was full, so its oldest, {added.replaced_label}, was removed."
    return text, messages.SUCCESS


@admin.register(Credential)
class CredentialAdmin(ChangedFieldsOnly, admin.ModelAdmin[Credential]):
    list_display = (
        "__str__",
        "user",
        "kind",
        "secret_mask",
        "status",
        "enabled",
        "position",
        "project_label",
        "cooldowns",
        "usage_today",
        "last_error_short",
        "requests_since_rotation",
    )
    list_display_links = ("__str__",)
    list_filter = ("status", "enabled", "kind", "user")
    search_fields = ("label", "secret_mask", "project_label", "oauth_project_id", "user__username")
    list_select_related = ("user",)
    ordering = ("user__username", "position", "id")
    readonly_fields = (
        "user",
        "kind",
        "secret_mask",
        "status",
        "cooldowns",
        "usage_today",
        "quota_left",
        "proxy_url_mask",
        "last_error",
        "last_error_at",
        "last_used_at",
        "created_at",
        "requests_total",
        "requests_since_rotation",
        "oauth_client_id",
        "access_token_expires_at",
    )
    # Never in a form, editable or not: see the module docstring.
    exclude = (
        "proxy_url_encrypted",
        "secret_encrypted",
        "secret_digest",
        "access_token_encrypted",
        "oauth_client_secret_encrypted",
    )
    form = CredentialChangeForm
    inlines = (RecentErrorsInline,)
    actions = ("enable", "disable", "clear_cooldowns", "check_upstream", "read_quota")
    change_form_template = "admin/accounts/credential/change_form.html"
    change_list_template = "admin/accounts/credential/change_list.html"

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets: list[tuple[str | None, dict[str, Any]]] = [
            (
                None,
                {
                    "fields": (
                        "user",
                        "kind",
                        "secret_mask",
                        "label",
                        "project_label",
                        "enabled",
                        "position",
                    )
                },
            ),
            (
                "Egress proxy",
                {"fields": ("proxy_url_mask", "proxy_url", "proxy_clear")},
            ),
            (
                "State",
                {
                    "fields": (
                        "status",
                        "cooldowns",
                        "usage_today",
                        "quota_left",
                        "last_error",
                        "last_error_at",
                        "last_used_at",
                        "requests_total",
                        "requests_since_rotation",
                        "created_at",
                    )
                },
            ),
        ]
        if obj is not None and obj.kind == Credential.Kind.GEMINI_OAUTH:
            fieldsets.append(
                (
                    "OAuth",
                    {"fields": ("oauth_project_id", "oauth_client_id", "access_token_expires_at")},
                )
            )
        return fieldsets

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        # The proxy is write-only: its form fields are not model fields; they set two that are.
        proxy_fields = form.proxy_changes()
        if change:
            fields = [
                name for name in form.changed_data if name not in ("proxy_url", "proxy_clear")
            ]
            obj.save(update_fields=[*fields, *proxy_fields])
        else:
            obj.save()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Credential]:
        now = clock.now()
        active_marks = Mark.objects.filter(until__gt=now).order_by("until")
        credentials: QuerySet[Credential] = super().get_queryset(request)
        return credentials.annotate(
            today=requests_on(day=clock.quota_day(now), owner="credential")
        ).prefetch_related(Prefetch("marks", queryset=active_marks, to_attr="active_marks"))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="accounts_credential_import"), *super().get_urls()]

    @admin.display(description="cooldowns")
    def cooldowns(self, obj: Credential) -> str:
        now = clock.now()
        marks = getattr(obj, "active_marks", None)
        if marks is None:
            marks = list(obj.marks.filter(until__gt=now).order_by("until"))
        if not marks:
            return "-"
        return "; ".join(
            f"{mark.model}: {mark.reason} until {until_text(mark.until, now=now)}" for mark in marks
        )

    @admin.display(description="requests today", ordering="today")
    def usage_today(self, obj: Credential) -> int:
        return int(getattr(obj, "today", 0))

    @admin.display(description="quota left (as Google reported it)")
    def quota_left(self, obj: Credential) -> str:
        now = clock.now()
        readings = obj.quota_readings.filter(source=QuotaReading.Source.REPORTED).order_by("model")
        parts = []
        for reading in readings:
            left = (
                "?" if reading.remaining_fraction is None else f"{reading.remaining_fraction:.0%}"
            )
            reset = f", resets {until_text(reading.reset_at, now=now)}" if reading.reset_at else ""
            parts.append(f"{reading.model}: {left}{reset}")
        return "; ".join(parts) or "-"

    @admin.display(description="last error", ordering="last_error_at")
    def last_error_short(self, obj: Credential) -> str:
        if len(obj.last_error) <= LAST_ERROR_COLUMN_CHARS:
            return obj.last_error or "-"
        return obj.last_error[: LAST_ERROR_COLUMN_CHARS - 1] + "…"

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "oauth_warning": OAUTH_WARNING}
        return super().change_view(request, object_id, form_url, extra)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = CredentialAddForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    added = services.credential_add(**form.service_arguments())
                except ValidationError as exc:
                    form.add_error(None, exc)
                else:
                    return self._added_response(request, added)
        else:
            form = CredentialAddForm(initial={"user": request.GET.get("user")})
        return _form_page(
            request,
            modeladmin=self,
            form=form,
            title="Add credential",
            submit_label="Add to pool",
            warning=f"OAuth accounts: {OAUTH_WARNING}",
        )

    def _added_response(
        self, request: HttpRequest, added: services.CredentialAdded
    ) -> HttpResponseRedirect:
        text, level = _added_message(added)
        self.message_user(request, text, level)
        if added.action in ("created", "replaced"):
            self.log_addition(request, added.credential, [{"added": {}}])
        elif added.action == "updated":
            self.log_change(request, added.credential, "Replaced the OAuth JSON.")
        url = reverse("admin:accounts_credential_change", args=[added.credential.pk])
        return HttpResponseRedirect(url)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Bulk import: one summary per source (the pasted text, each uploaded file)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        results: list[tuple[str, services.ImportSummary | None]] = []
        if request.method == "POST":
            form = CredentialImportForm(request.POST, request.FILES)
            if form.is_valid():
                user = form.cleaned_data["user"]
                for source, text in form.sources():
                    summary = None
                    if text is not None:
                        summary = services.credentials_import_text(user=user, text=text)
                    results.append((source, summary))
                self.log_change(
                    request,
                    user,
                    "Imported credentials: "
                    + "; ".join(
                        f"{source}: {summary.summary if summary else 'not UTF-8 text'}"
                        for source, summary in results
                    ),
                )
                # A fresh form: the page must not carry the pasted secrets back.
                form = CredentialImportForm(initial={"user": user.pk})
        else:
            form = CredentialImportForm(initial={"user": request.GET.get("user")})
        return _form_page(
            request,
            modeladmin=self,
            form=form,
            title="Import credentials",
            submit_label="Import",
            template="admin/accounts/credential/import.html",
            warning=f"OAuth accounts: {OAUTH_WARNING}",
            intro="The same credential twice is reported as a duplicate, not added again. A "
            "pool at MAX_CREDENTIALS drops its oldest credential for each one added.",
            results=results,
        )

    @admin.action(description="Enable (an invalid one returns to the pool)", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        count = credentials.credentials_enable(credential_ids=ids, enabled=True)
        self.message_user(request, f"Enabled {count} credential(s).")

    @admin.action(description="Disable", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        count = credentials.credentials_enable(credential_ids=ids, enabled=False)
        self.message_user(request, f"Disabled {count} credential(s).")

    @admin.action(description="Clear cooldowns (every model)", permissions=["change"])
    def clear_cooldowns(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        cleared = marks_clear(credential_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Cleared {cleared} cooldown mark(s).")

    @admin.action(description="Check against upstream", permissions=["change"])
    def check_upstream(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for credential in queryset:
            result = credentials.credential_check(credential=credential, now=clock.now())
            level = messages.SUCCESS if result.ok else messages.WARNING
            self.message_user(request, f"{credential.display_name}: {result.summary}", level)

    @admin.action(description="Read remaining quota (OAuth accounts)", permissions=["change"])
    def read_quota(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        for credential in queryset:
            result = quota.credential_quota_fetch(credential=credential, now=clock.now())
            level = messages.SUCCESS if result.ok else messages.WARNING
            self.message_user(request, f"{credential.display_name}: {result.summary}", level)
