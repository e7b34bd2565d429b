"""/stat (page, sign-in, JSON), /debug/stats and /metrics: thin views over stats.selectors.

Who sees what on /stat: staff (Django login) holding POOL_VIEW_PERMISSION see any user's
pool, picked with ?user=ID, and other staff only their own; anyone else signs in on the page
with their Rotator API key and sees only that key's pool.
The session keeps the key's id, never its secret, and the key is checked again on every
request, so revoking it signs the browser out.
"""

from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from accounts.models import ApiKey
from accounts.secrets import secret_equals
from common import clock
from common.errors import AuthenticationFailed, RotatorError
from common.naming import bearer_token
from rotator.render import error_response
from rotator.throttle import token_refusal_throttled
from stats import selectors
from stats.export import usage_csv, usage_csv_filename, usage_range
from stats.metrics import metrics_render
from stats.usage import usage_flush

SESSION_KEY = "stat_api_key_id"
# A pool is its credentials (with their marks and usage): seeing another user's needs what the
# admin and the management API ask to list credentials.
POOL_VIEW_PERMISSION = "accounts.view_credential"


class Forbidden(RotatorError):
    status = 403
    openai_type = "permission_error"
    google_status = "PERMISSION_DENIED"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at /stat: a staff member, or the holder of one API key."""

    user_id: int
    is_staff: bool
    sees_every_pool: bool = False
    api_key: ApiKey | None = None


def _viewer(request: HttpRequest) -> Viewer | None:
    user = request.user
    if user.is_authenticated and user.is_active and user.is_staff:
        return Viewer(
            user_id=user.pk,
            is_staff=True,
            sees_every_pool=user.has_perm(POOL_VIEW_PERMISSION),
        )
    api_key_id = request.session.get(SESSION_KEY)
    if api_key_id is None:
        return None
    key = selectors.api_key_for_session(api_key_id=int(api_key_id), now=clock.now())
    if key is None:
        request.session.pop(SESSION_KEY, None)
        return None
    return Viewer(user_id=key.user_id, is_staff=False, api_key=key)


def _pool_owner(request: HttpRequest, viewer: Viewer) -> int:
    """Whose pool to show. Raises Forbidden when a viewer who may only see their own pool asks
    for someone else's."""
    asked = request.GET.get("user", "")
    if not viewer.sees_every_pool:
        if asked and asked != str(viewer.user_id):
            message = (
                f"Seeing another user's pool needs the permission {POOL_VIEW_PERMISSION}."
                if viewer.is_staff
                else "An API key only shows its own pool."
            )
            raise Forbidden(message, code="not_your_pool")
        return viewer.user_id
    if asked.isdigit():
        return int(asked)
    return selectors.stat_default_user_id(viewer_id=viewer.user_id)


@never_cache
@require_safe
def stat_page(request: HttpRequest) -> HttpResponse:
    viewer = _viewer(request)
    if viewer is None:
        return render(request, "stats/signin.html")
    try:
        owner = _pool_owner(request, viewer)
        dashboard = selectors.stat_dashboard(user_id=owner, now=clock.now())
    except Forbidden:
        return HttpResponseRedirect(request.path)
    except LookupError:
        return render(request, "stats/stat.html", {"viewer": viewer, "missing": True}, status=404)
    context = {
        "viewer": viewer,
        "dashboard": dashboard,
        "users": selectors.stat_users() if viewer.sees_every_pool else [],
        "refresh_seconds": 5,
        "retention_days": settings.USAGE_RETENTION_DAYS,
        "alerts_enabled": bool(settings.ALERT_WEBHOOK_URL),
    }
    return render(request, "stats/stat.html", context)


def _shown_pool_owner(request: HttpRequest) -> int:
    """Whose pool a signed-in /stat viewer's data request shows. Raises AuthenticationFailed
    (not signed in) or Forbidden (another user's pool without the permission)."""
    viewer = _viewer(request)
    if viewer is None:
        raise AuthenticationFailed("Sign in at /stat first.", code="not_signed_in")
    return _pool_owner(request, viewer)


@never_cache
@require_safe
def stat_data(request: HttpRequest) -> HttpResponse:
    try:
        owner = _shown_pool_owner(request)
        return JsonResponse(selectors.stat_dashboard(user_id=owner, now=clock.now()))
    except RotatorError as exc:
        return error_response(exc, dialect="openai_chat")
    except LookupError:
        return error_response(
            Forbidden("No such user.", code="no_such_user"), dialect="openai_chat"
        )


def _day(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


@never_cache
@require_safe
def stat_usage_csv(request: HttpRequest) -> HttpResponse:
    """The shown pool's usage as CSV for ?since= and ?until= (quota days, inclusive)."""
    try:
        owner = _shown_pool_owner(request)
        since, until = usage_range(
            since=_day(request.GET.get("since", "")),
            until=_day(request.GET.get("until", "")),
            today=clock.quota_day(clock.now()),
        )
    except RotatorError as exc:
        return error_response(exc, dialect="openai_chat")
    except ValueError:
        return HttpResponseBadRequest(
            "since and until are days like 2026-06-01, since not after until.",
            content_type="text/plain",
        )
    usage_flush()
    # Whole, not streamed: retention bounds its size, and under ASGI a streamed body needs
    # an async iterator while the ORM is synchronous.
    response = HttpResponse(
        "".join(usage_csv(user_id=owner, since=since, until=until)),
        content_type="text/csv; charset=utf-8",
    )
    filename = usage_csv_filename(since=since, until=until)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
def stat_signin(request: HttpRequest) -> HttpResponse:
    key = selectors.api_key_for_signin(presented=request.POST.get("key", ""), now=clock.now())
    if key is None:
        # Counted against the caller's address by rotator.throttle's middleware.
        request.signin_failed = True  # type: ignore[attr-defined]
        context = {"error": "That key is not a valid Rotator API key (or it was revoked)."}
        return render(request, "stats/signin.html", context, status=403)
    # A new session id at sign-in, so an id planted before it cannot ride along.
    request.session.cycle_key()
    request.session[SESSION_KEY] = key.id
    return HttpResponseRedirect("/stat")


@require_POST
def stat_signout(request: HttpRequest) -> HttpResponse:
    request.session.pop(SESSION_KEY, None)
    request.session.cycle_key()
    return HttpResponseRedirect("/stat")


def _bearer(request: HttpRequest) -> str:
    return bearer_token(request.headers.get("authorization", "")) or ""


def _token_refusal(request: HttpRequest, *, expected: str, disabled: str) -> HttpResponse | None:
    return token_refusal_throttled(
        request, check=lambda: _token_check(request, expected=expected, disabled=disabled)
    )


def _token_check(request: HttpRequest, *, expected: str, disabled: str) -> HttpResponse | None:
    if not expected:
        return error_response(Forbidden(disabled, code="disabled"), dialect="openai_chat")
    if not secret_equals(_bearer(request), expected):
        return error_response(
            AuthenticationFailed(
                "Pass the token as 'Authorization: Bearer TOKEN'.", code="invalid_token"
            ),
            dialect="openai_chat",
        )
    return None


# Served without middleware (a proxy prefix): no session, and CSRF would not apply to GET.
@csrf_exempt
@require_safe
def debug_stats(request: HttpRequest) -> HttpResponse:
    refusal = _token_refusal(
        request,
        expected=settings.MASTER_API_KEY,
        disabled="/debug/stats is not configured: set MASTER_API_KEY to use it.",
    )
    return refusal or JsonResponse(selectors.debug_stats_read())


@csrf_exempt
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = _token_refusal(
        request,
        expected=settings.METRICS_TOKEN,
        disabled="metrics are disabled: set METRICS_TOKEN to enable /metrics.",
    )
    return refusal or HttpResponse(metrics_render(), content_type=CONTENT_TYPE_LATEST)
