"""Reads for the management API: filtered, ordered lists and usage sums.

Filters arrive already validated (the views' FilterSerializers); an absent filter is None.
"""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, F, Max, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from accounts.models import ApiKey, Credential
from rotator.models import Mark, ModelAlias
from stats.models import UsageCounter

USAGE_GROUPS = ("day", "user", "api_key", "credential", "model", "requested_model")
USAGE_SUMS = UsageCounter.COUNT_FIELDS


def _ordered(queryset: QuerySet[Any], ordering: str | None, default: str) -> QuerySet[Any]:
    field = ordering or default
    if field.lstrip("-") == "id":
        return queryset.order_by(field)
    # "id" breaks ties so that pages never overlap or skip rows with equal sort values.
    return queryset.order_by(field, "id")


def users_list(
    *,
    username: str | None = None,
    search: str | None = None,
    is_staff: bool | None = None,
    is_active: bool | None = None,
    ordering: str | None = None,
) -> QuerySet[User]:
    """Users with how many API keys and credentials each has."""
    users = User.objects.annotate(
        api_key_count=Count("api_keys", distinct=True),
        credential_count=Count("credentials", distinct=True),
    )
    if username is not None:
        users = users.filter(username=username)
    if search:
        users = users.filter(Q(username__icontains=search) | Q(email__icontains=search))
    if is_staff is not None:
        users = users.filter(is_staff=is_staff)
    if is_active is not None:
        users = users.filter(is_active=is_active)
    return _ordered(users, ordering, "id")


def user_get(*, user_id: int) -> User | None:
    return users_list().filter(id=user_id).first()


def api_keys_list(
    *,
    user: int | None = None,
    revoked: bool | None = None,
    active: bool | None = None,
    now: datetime,
    search: str | None = None,
    ordering: str | None = None,
) -> QuerySet[ApiKey]:
    """API keys; `active` keeps those usable at `now` (neither revoked nor expired), or those
    that are not."""
    keys = ApiKey.objects.all()
    if user is not None:
        keys = keys.filter(user_id=user)
    if revoked is not None:
        keys = keys.filter(revoked=revoked)
    if active is not None:
        usable = ApiKey.objects.active(now=now).values("id")
        keys = keys.filter(id__in=usable) if active else keys.exclude(id__in=usable)
    if search:
        keys = keys.filter(Q(name__icontains=search) | Q(prefix__icontains=search))
    return _ordered(keys, ordering, "-created_at")


def credentials_list(
    *,
    user: int | None = None,
    kind: str | None = None,
    status: str | None = None,
    enabled: bool | None = None,
    project_label: str | None = None,
    search: str | None = None,
    ordering: str | None = None,
) -> QuerySet[Credential]:
    credentials = Credential.objects.all()
    if user is not None:
        credentials = credentials.filter(user_id=user)
    if kind is not None:
        credentials = credentials.filter(kind=kind)
    if status is not None:
        credentials = credentials.filter(status=status)
    if enabled is not None:
        credentials = credentials.filter(enabled=enabled)
    if project_label is not None:
        credentials = credentials.filter(project_label=project_label)
    if search:
        credentials = credentials.filter(
            Q(label__icontains=search) | Q(secret_mask__icontains=search)
        )
    if ordering is None:
        return credentials.order_by("user_id", "position", "id")
    return _ordered(credentials, ordering, "id")


def marks_list(
    *,
    user: int | None = None,
    credential: int | None = None,
    model: str | None = None,
    reason: str | None = None,
    active: bool | None = None,
    now: datetime,
    ordering: str | None = None,
) -> QuerySet[Mark]:
    """Availability marks; `active` keeps those in force at `now`, or those that have lapsed
    (lapsed marks linger until the daily cleanup and no longer count)."""
    marks = Mark.objects.select_related("credential")
    if user is not None:
        marks = marks.filter(credential__user_id=user)
    if credential is not None:
        marks = marks.filter(credential_id=credential)
    if model is not None:
        marks = marks.filter(model=model.removeprefix("models/"))
    if reason is not None:
        marks = marks.filter(reason=reason)
    if active is not None:
        marks = marks.filter(until__gt=now) if active else marks.filter(until__lte=now)
    return _ordered(marks, ordering, "until")


_GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "day": ("day",),
    "user": ("user", "user__username"),
    "api_key": ("api_key", "api_key__prefix"),
    "credential": ("credential",),
    "model": ("model",),
    "requested_model": ("requested_model",),
}


def usage_summarize(
    *,
    since: date | None = None,
    until: date | None = None,
    user: int | None = None,
    api_key: int | None = None,
    credential: int | None = None,
    model: str | None = None,
    group_by: Sequence[str] = (),
    ordering: str | None = None,
) -> QuerySet[Any] | list[dict[str, Any]]:
    """Usage counter sums between two quota days (inclusive), one row per combination of the
    `group_by` dimensions (USAGE_GROUPS), or one row of totals without grouping. Rows are
    dicts keyed by the counter's columns (`user__username`, `api_key__prefix` for names).

    Call stats.usage.usage_flush() first where the very latest requests must be included.
    """
    counters = UsageCounter.objects.all()
    if since is not None:
        counters = counters.filter(day__gte=since)
    if until is not None:
        counters = counters.filter(day__lte=until)
    if user is not None:
        counters = counters.filter(user_id=user)
    if api_key is not None:
        counters = counters.filter(api_key_id=api_key)
    if credential is not None:
        counters = counters.filter(credential_id=credential)
    if model is not None:
        counters = counters.filter(model=model.removeprefix("models/"))
    sums: dict[str, Any] = {name: Coalesce(Sum(name), 0) for name in USAGE_SUMS}
    if not group_by:
        return [counters.aggregate(**sums)]
    columns = [column for group in group_by for column in _GROUP_COLUMNS[group]]
    # The label is snapshotted per counter row; a renamed credential shows one of its labels.
    extra = {"credential_label": Max("credential_label")} if "credential" in group_by else {}
    rows = counters.values(*columns).annotate(**sums, **extra)
    # Group columns after the requested order make the order total (stable pages).
    default = ["-day" if group == "day" else group for group in group_by]
    order = [ordering] if ordering else []
    order += [column for column in default if column.lstrip("-") != (ordering or "").lstrip("-")]
    ordered: QuerySet[Any] = rows.order_by(*order)
    return ordered


def aliases_list(
    *,
    user: int | None = None,
    is_global: bool | None = None,
    target: str | None = None,
    ordering: str | None = None,
) -> QuerySet[ModelAlias]:
    """Model aliases, filtered; by default global ones first, then by user and name."""
    aliases = ModelAlias.objects.all()
    if user is not None:
        aliases = aliases.filter(user_id=user)
    if is_global is not None:
        aliases = aliases.filter(user__isnull=is_global)
    if target is not None:
        aliases = aliases.filter(target=target)
    if ordering:
        return _ordered(aliases, ordering, "name")
    return aliases.order_by(F("user_id").asc(nulls_first=True), "name", "id")
