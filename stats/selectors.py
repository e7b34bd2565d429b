"""Reads for /stat, /debug/stats and /metrics: counters, marks and credentials, never secrets.

Everything here returns plain data (dicts, lists, dataclasses) ready for JSON or a template.
A credential is only ever shown by `Credential.secret_mask` and its label.
"""

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q, Sum

from accounts.models import ApiKey, Credential
from accounts.secrets import digest
from common import clock
from rotator.models import AlertDelivery, Mark, PoolState, QuotaReading
from stats.models import UsageCounter
from stats.usage import usage_flush

SERIES_DAYS = 30
_SUMS = UsageCounter.COUNT_FIELDS
# What a credential's row shows, worst first: /stat groups and sorts rows in this order.
# "invalid" and "suspended" are the credential's own status and block every model.
STATES = ("invalid", "suspended", "exhausted", "rate_limited", "unavailable", "ok", "disabled")
_STATE_OF_REASON: dict[str, str] = {
    Mark.Reason.QUOTA_EXHAUSTED: "exhausted",
    Mark.Reason.RATE_LIMITED: "rate_limited",
    # A model the credential cannot use, or a circuit breaker cooling it down for seconds.
    Mark.Reason.MODEL_NOT_FOUND: "unavailable",
    Mark.Reason.UNSTABLE: "unavailable",
}


def _sums() -> dict[str, Sum]:
    return {name: Sum(name) for name in _SUMS}


def _numbers(row: Mapping[str, Any]) -> dict[str, int]:
    return {name: int(row.get(name) or 0) for name in _SUMS}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


# ------------------------------------------------------------------------- who may look


def api_key_for_signin(*, presented: str, now: datetime) -> ApiKey | None:
    """The usable API key whose secret was typed into /stat's sign-in form, else None."""
    presented = presented.strip()
    if not presented:
        return None
    # The digest is the lookup key (unique, indexed); equal digests mean equal secrets.
    key = ApiKey.objects.filter(digest=digest(presented)).first()
    return key if key is not None and key.is_usable(now) else None


def api_key_for_session(*, api_key_id: int, now: datetime) -> ApiKey | None:
    """The key a /stat session signed in with, while it is still usable (not revoked,
    expired or deleted), else None."""
    key = ApiKey.objects.filter(id=api_key_id).first()
    return key if key is not None and key.is_usable(now) else None


def stat_users() -> list[dict[str, Any]]:
    """Every user with their pool size, for the staff user picker; pools first."""
    users = (
        get_user_model()
        .objects.annotate(pool_size=Count("credentials"))
        .order_by("-pool_size", "username")
    )
    return [
        {"id": user.id, "username": user.get_username(), "pool_size": user.pool_size}
        for user in users
    ]


def stat_default_user_id(*, viewer_id: int) -> int:
    """Whose pool a staff member sees first: their own if they have one, else the largest."""
    if Credential.objects.filter(user_id=viewer_id).exists():
        return viewer_id
    users = stat_users()
    return users[0]["id"] if users and users[0]["pool_size"] else viewer_id


# ---------------------------------------------------------------------------- /stat


def stat_dashboard(*, user_id: int, now: datetime) -> dict[str, Any]:
    """Everything /stat shows for one user's pool, as JSON-ready data.

    Flushes this process's buffered usage first, so the numbers include its latest requests
    (other server processes flush on their own every USAGE_FLUSH_SECONDS). Raises
    LookupError for an unknown user.
    """
    user = get_user_model().objects.filter(id=user_id).first()
    if user is None:
        raise LookupError(f"no user {user_id}")
    usage_flush()
    today = clock.quota_day(now)
    reset_at = clock.daily_reset_next(now)
    grid = _grid(user_id=user_id, today=today, now=now)
    return {
        "user": {"id": user.id, "username": user.get_username()},
        "now": now.isoformat(),
        "day": today.isoformat(),
        "reset": {"at": reset_at.isoformat(), "seconds": int((reset_at - now).total_seconds())},
        "totals": _numbers(
            UsageCounter.objects.filter(user_id=user_id, day=today).aggregate(**_sums())
        ),
        "keys": _keys_usage(user_id=user_id, today=today, now=now),
        "aliased": _aliased_usage(user_id=user_id, today=today),
        "quota": quota_groups(user_id=user_id, credentials=grid["credentials"], now=now),
        "alerts": alerts_recent(user_id=user_id),
        **grid,
        "series": _series(user_id=user_id, today=today),
    }


def _aliased_usage(*, user_id: int, today: date) -> list[dict[str, Any]]:
    """Today's requests that an alias served: the name asked for, the Gemini model used."""
    rows = (
        UsageCounter.objects.filter(user_id=user_id, day=today)
        .exclude(requested_model=F("model"))
        .exclude(requested_model="")
        .values("requested_model", "model")
        .annotate(**_sums())
        .order_by("requested_model", "model")
    )
    return [
        {"requested_model": row["requested_model"], "model": row["model"], **_numbers(row)}
        for row in rows
    ]


def _grid(*, user_id: int, today: date, now: datetime) -> dict[str, Any]:
    """Credentials by model: today's counts per cell and each cell's active mark."""
    counts: dict[int, dict[str, dict[str, int]]] = defaultdict(dict)
    refused: dict[str, int] = {}
    model_requests: dict[str, int] = defaultdict(int)
    rows = (
        UsageCounter.objects.filter(user_id=user_id, day=today)
        .values("credential_id", "model")
        .annotate(**_sums())
    )
    for row in rows:
        numbers = _numbers(row)
        model_requests[row["model"]] += numbers["requests"]
        if row["credential_id"] is None:
            # Refused for lack of a credential, or served by one deleted since.
            refused[row["model"]] = refused.get(row["model"], 0) + numbers["requests"]
        else:
            counts[row["credential_id"]][row["model"]] = numbers
    marks: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for mark in Mark.objects.filter(credential__user_id=user_id, until__gt=now):
        model_requests.setdefault(mark.model, 0)
        marks[mark.credential_id][mark.model] = {
            "reason": mark.reason,
            "state": _STATE_OF_REASON.get(mark.reason, "unavailable"),
            "label": mark.get_reason_display(),
            "until": _iso(mark.until),
            "message": mark.message,
        }
    # Busiest models first; models only known from a mark come last, by name.
    models = sorted(model_requests, key=lambda model: (-model_requests[model], model))
    credentials = []
    for credential in Credential.objects.filter(user_id=user_id).order_by("position", "id"):
        cells: dict[str, dict[str, Any]] = {}
        for model, numbers in counts.get(credential.id, {}).items():
            cells[model] = dict(numbers)
        for model, shown in marks.get(credential.id, {}).items():
            cells.setdefault(model, {})["mark"] = shown
        blocked = credential.status != Credential.Status.ACTIVE
        credentials.append(
            {
                "id": credential.id,
                "mask": credential.secret_mask,
                "label": credential.label,
                "kind": credential.kind,
                "kind_label": credential.get_kind_display(),
                "project": credential.project_label,
                "enabled": credential.enabled,
                "status": credential.status,
                "state": _credential_state(credential, marks.get(credential.id, {})),
                "status_label": credential.get_status_display(),
                # Upstream's words when it refused the credential itself (invalid, suspended).
                "error": credential.last_error if blocked else "",
                "error_at": _iso(credential.last_error_at) if blocked else None,
                "requests_total": credential.requests_total,
                "last_used_at": _iso(credential.last_used_at),
                "cells": cells,
            }
        )
    return {"models": models, "credentials": credentials, "refused": refused}


def _status_state(status: str) -> str:
    """The /stat and gauge state of a credential out of the pool: invalid or suspended; one
    that cannot be decrypted (unreadable) shows as invalid, its last error saying why."""
    return "suspended" if status == Credential.Status.SUSPENDED else "invalid"


def _bar(
    *, model: str, fraction: float | None, reset_at: datetime | None, estimate: bool, **extra: Any
) -> dict[str, Any]:
    """One quota bar; `fraction` None when Google sent only an amount (no scale to draw)."""
    if fraction is not None:
        fraction = min(max(fraction, 0.0), 1.0)
    return {
        "model": model,
        "fraction": fraction,
        "percent": None if fraction is None else round(fraction * 100),
        "reset_at": _iso(reset_at),
        "reset_text": f"{reset_at.astimezone(UTC):%b %d %H:%M} UTC" if reset_at else "",
        "estimate": estimate,
        **extra,
    }


def quota_groups(
    *, user_id: int, credentials: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """The pool's remaining quota per credential and model, credentials grouped by Google
    Cloud project (Google applies quotas per project; "" groups those without a label).
    `credentials` are `_grid`'s rows, whose cells hold today's counts.

    OAuth accounts show what Code Assist reported (rotator.quota). API keys show an estimate:
    the daily limit Google stated in a 429 (quotaValue) minus the requests Rotator counted
    today that were not refused with a 429, summed over the credentials of the same project,
    since those share the quota. A credential with neither shows no bars.
    """
    reported: dict[int, list[QuotaReading]] = defaultdict(list)
    limits: dict[int, list[QuotaReading]] = defaultdict(list)
    for reading in QuotaReading.objects.filter(credential__user_id=user_id).order_by("model"):
        if reading.source == QuotaReading.Source.REPORTED:
            reported[reading.credential_id].append(reading)
        else:
            limits[reading.credential_id].append(reading)
    project_of = {c["id"]: c["project"] or f"#{c['id']}" for c in credentials}
    # Requests today that Google counted against the quota: a 429 refusal is not served.
    used: dict[tuple[str, str], int] = defaultdict(int)
    for credential in credentials:
        for model, cell in credential["cells"].items():
            spent = int(cell.get("requests", 0)) - int(cell.get("rate_limited", 0))
            used[(project_of[credential["id"]], model)] += spent
    reset_at = clock.daily_reset_next(now)
    groups: dict[str, list[dict[str, Any]]] = {}
    for credential in credentials:
        bars = [
            _bar(
                model=r.model,
                fraction=r.remaining_fraction,
                reset_at=r.reset_at,
                estimate=False,
                amount=r.remaining_amount,
                fetched_at=_iso(r.fetched_at),
            )
            for r in reported.get(credential["id"], [])
        ]
        for r in limits.get(credential["id"], []):
            limit = int(r.limit or 0)
            spent = used.get((project_of[credential["id"]], r.model), 0)
            bars.append(
                _bar(
                    model=r.model,
                    fraction=(limit - spent) / limit if limit else 0.0,
                    reset_at=reset_at,
                    estimate=True,
                    used=spent,
                    limit=limit,
                    amount=max(limit - spent, 0),
                )
            )
        if not bars:
            continue
        groups.setdefault(credential["project"], []).append(
            {
                "id": credential["id"],
                "mask": credential["mask"],
                "label": credential["label"],
                "kind_label": credential["kind_label"],
                "bars": bars,
            }
        )
    # Named projects first, by name; credentials without a project last.
    return [
        {"project": project, "credentials": members}
        for project, members in sorted(groups.items(), key=lambda item: (item[0] == "", item[0]))
    ]


ALERTS_SHOWN = 20


def alerts_recent(*, user_id: int) -> list[dict[str, Any]]:
    """The pool's newest alerts (ALERTS_SHOWN), with how their delivery went."""
    return [
        {
            "at": _iso(alert.created_at),
            "at_text": f"{alert.created_at.astimezone(UTC):%b %d %H:%M}",
            "event": alert.event,
            "event_label": alert.get_event_display(),
            "credential": (alert.payload.get("credential") or {}).get("name", ""),
            "model": alert.model,
            "message": alert.payload.get("message", ""),
            "outcome": alert.outcome,
            "attempts": alert.attempts,
            "error": alert.error,
        }
        for alert in AlertDelivery.objects.filter(user_id=user_id).order_by("-created_at")[
            :ALERTS_SHOWN
        ]
    ]


def _credential_state(credential: Credential, marks: dict[str, dict[str, Any]]) -> str:
    if not credential.enabled:
        return "disabled"
    if credential.status != Credential.Status.ACTIVE:
        return _status_state(credential.status)
    states = {mark["state"] for mark in marks.values()}
    return next((state for state in STATES if state in states), "ok")


def _keys_usage(*, user_id: int, today: date, now: datetime) -> list[dict[str, Any]]:
    """Today's usage per API key of the user (keys without traffic too), by prefix and name."""
    usage = {
        row["api_key_id"]: _numbers(row)
        for row in UsageCounter.objects.filter(user_id=user_id, day=today)
        .values("api_key_id")
        .annotate(**_sums())
    }
    keys = []
    for key in ApiKey.objects.filter(user_id=user_id).order_by("created_at", "id"):
        keys.append(
            {
                "id": key.id,
                "name": key.name,
                "prefix": key.prefix,
                "usable": key.is_usable(now),
                "last_used_at": _iso(key.last_used_at),
                **usage.pop(key.id, _numbers({})),
            }
        )
    for numbers in usage.values():  # keys deleted since (their counters keep a NULL key)
        keys.append({"id": None, "name": "deleted keys", "prefix": "", "usable": False, **numbers})
    return keys


def _series(*, user_id: int, today: date) -> dict[str, Any]:
    """The last SERIES_DAYS quota days: requests, tokens and failures per model and in all."""
    days = [today - timedelta(days=back) for back in range(SERIES_DAYS - 1, -1, -1)]
    index = {day: position for position, day in enumerate(days)}
    models: dict[str, dict[str, list[Any]]] = {}
    total: dict[str, list[Any]] = {
        name: [0] * SERIES_DAYS for name in ("requests", "tokens", "failures")
    }
    rows = (
        UsageCounter.objects.filter(user_id=user_id, day__gte=days[0], day__lte=today)
        .values("day", "model")
        .annotate(requests=Sum("requests"), tokens=Sum("total_tokens"), failures=Sum("failures"))
    )
    for row in rows:
        series = models.setdefault(
            row["model"], {name: [0] * SERIES_DAYS for name in ("requests", "tokens", "failures")}
        )
        position = index[row["day"]]
        for name in ("requests", "tokens", "failures"):
            series[name][position] += int(row[name] or 0)
            total[name][position] += int(row[name] or 0)
    for series in [*models.values(), total]:
        series["error_rate"] = [
            round(failures / requests, 4) if requests else None
            for failures, requests in zip(series["failures"], series["requests"], strict=True)
        ]
    ordered = dict(sorted(models.items(), key=lambda item: (-sum(item[1]["requests"]), item[0])))
    return {"days": [day.isoformat() for day in days], "models": ordered, "total": total}


# ---------------------------------------------------------------------- /debug/stats


def debug_stats_read() -> dict[str, Any]:
    """Total requests and, per credential, requests since the pool's last rotation and in
    total (upstream attempts, flushed from this process first), plus each pool's last
    rotation time."""
    usage_flush()
    credentials = [
        {
            "id": credential.id,
            "user": credential.user.get_username(),
            "credential": credential.display_name,
            "kind": credential.kind,
            "status": credential.status,
            "enabled": credential.enabled,
            "requests_since_rotation": credential.requests_since_rotation,
            "requests_total": credential.requests_total,
        }
        for credential in Credential.objects.select_related("user").order_by(
            "user_id", "position", "id"
        )
    ]
    pools = [
        {
            "user": state.user.get_username(),
            "strategy": state.strategy,
            "rotated_at": _iso(state.rotated_at),
        }
        for state in PoolState.objects.select_related("user").order_by("user_id")
    ]
    return {
        "total_requests": sum(c["requests_total"] for c in credentials),
        "total_requests_since_rotation": sum(c["requests_since_rotation"] for c in credentials),
        "credentials": credentials,
        "pools": pools,
    }


# --------------------------------------------------------------------------- /metrics


@dataclass(frozen=True, slots=True)
class CredentialStateCount:
    pool: str
    model: str
    state: str
    count: int


def credential_states(*, now: datetime) -> list[CredentialStateCount]:
    """Per pool and model: how many enabled credentials are available, rate-limited,
    exhausted, invalid, suspended or otherwise unavailable right now.

    The models are those the pool served today (flushing this process's counts first) or
    holds a mark for; a pool without either has no rows. Disabled credentials are not part
    of a pool and are not counted.
    """
    usage_flush()
    today = clock.quota_day(now)
    credentials: dict[int, list[tuple[int, str]]] = defaultdict(list)
    usernames: dict[int, str] = {}
    for credential_id, user_id, username, status in Credential.objects.filter(
        enabled=True
    ).values_list("id", "user_id", "user__username", "status"):
        credentials[user_id].append((credential_id, status))
        usernames[user_id] = username
    models: dict[int, set[str]] = defaultdict(set)
    for user_id, model in (
        UsageCounter.objects.filter(day=today, user_id__in=usernames)
        .values_list("user_id", "model")
        .distinct()
    ):
        models[user_id].add(model)
    marked: dict[tuple[int, str], str] = {}
    for credential_id, user_id, model, reason in Mark.objects.filter(
        Q(until__gt=now), credential__enabled=True
    ).values_list("credential_id", "credential__user_id", "model", "reason"):
        models[user_id].add(model)
        marked[(credential_id, model)] = _STATE_OF_REASON.get(reason, "unavailable")
    counts: list[CredentialStateCount] = []
    for user_id, pool_models in sorted(models.items()):
        for model in sorted(pool_models):
            tally = dict.fromkeys(("available", *STATES[:5]), 0)
            for credential_id, status in credentials[user_id]:
                if status != Credential.Status.ACTIVE:
                    tally[_status_state(status)] += 1
                else:
                    tally[marked.get((credential_id, model), "available")] += 1
            counts.extend(
                CredentialStateCount(pool=usernames[user_id], model=model, state=state, count=count)
                for state, count in tally.items()
            )
    return counts
