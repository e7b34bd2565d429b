"""Failed sign-ins per client address, counted in the shared state backend: 429 past a limit.

Every surface that takes a secret counts its failures against the caller's address: API keys
on the proxy routes, the master key and DRF tokens on /api/, /debug/stats and /metrics, the
/stat key sign-in and the admin's password sign-in. Past SIGNIN_FAILURES_PER_MINUTE failures
in a minute, the address gets 429 with Retry-After until the minute ends, valid secret or not
(otherwise a guesser would still learn which guess was right).

A valid key costs nothing: the proxy path only consults what this process has learnt, and
the shared count is read and written on failures only. A process learns of a block from the
first failure it sees from that address, so across N processes a blocked guesser gets at most
N more guesses per minute, which the limit already allows for.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse

from common import clock
from common.errors import AuthenticationFailed, RotatorError
from rotator import pool
from rotator.orm import orm_call
from rotator.pool import KeyView
from rotator.state import now_ms_of, state_backend

logger = logging.getLogger("rotator.throttle")

# (STATE_KEY_PREFIX, address) -> end of the blocked minute (epoch ms), as this process knows it.
# The prefix keeps deployments sharing a process (tests) apart, as it does in Redis.
_blocked: dict[tuple[str, str], int] = {}


class SigninThrottled(RotatorError):
    status = 429
    openai_type = "rate_limit_error"
    google_status = "RESOURCE_EXHAUSTED"


def client_address(request: HttpRequest) -> str:
    """The caller's address as the ASGI server saw it (behind a reverse proxy, the server must
    be told to trust its X-Forwarded-For: docs/security.md)."""
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _window(now: datetime) -> tuple[int, int]:
    """The current minute (epoch minutes) and when it ends (epoch ms)."""
    minute = int(now.timestamp()) // 60
    return minute, (minute + 1) * 60_000


def _retry_after_seconds(end_ms: int, now: datetime) -> int:
    return max(1, -(-(end_ms - now_ms_of(now)) // 1000))


def signin_failure_record(*, address: str, now: datetime) -> int | None:
    """Counts one failed sign-in from `address`; from the SIGNIN_FAILURES_PER_MINUTE-th on,
    the address is blocked until the minute ends. Returns the seconds until then when this
    failure was already past the allowance (a process that had not heard of the block yet),
    else None: the caller answers as for any failure."""
    minute, end_ms = _window(now)
    count = state_backend().failures_add(name=f"{address}:{minute}", expires_at_ms=end_ms)
    limit = settings.SIGNIN_FAILURES_PER_MINUTE
    if count < limit:
        return None
    if count == limit:
        logger.warning("sign-ins from %s throttled until the minute ends", address)
    _blocked[(settings.STATE_KEY_PREFIX, address)] = end_ms
    return _retry_after_seconds(end_ms, now) if count > limit else None


def signin_blocked_seconds(*, address: str, now: datetime, shared: bool) -> int | None:
    """Seconds until `address` may sign in again, or None when it may now. `shared` also reads
    the shared count (one round trip), for surfaces off the proxy's hot path."""
    name = (settings.STATE_KEY_PREFIX, address)
    end_ms = _blocked.get(name)
    if end_ms is not None:
        if end_ms > now_ms_of(now):
            return _retry_after_seconds(end_ms, now)
        del _blocked[name]
    if not shared:
        return None
    minute, end_ms = _window(now)
    if state_backend().failures_count(name=f"{address}:{minute}") < (
        settings.SIGNIN_FAILURES_PER_MINUTE
    ):
        return None
    _blocked[name] = end_ms
    return _retry_after_seconds(end_ms, now)


def _throttled(retry_after_seconds: int) -> SigninThrottled:
    return SigninThrottled(
        "Too many failed sign-ins from this address; retry after the Retry-After delay.",
        code="signin_throttled",
        retry_after_seconds=retry_after_seconds,
    )


async def api_key_authenticate_throttled(
    *, presented: str | None, address: str, now: datetime
) -> KeyView:
    """pool.api_key_authenticate, refused with SigninThrottled (429) for an address past its
    failures; a failure (a wrong, revoked or expired key; not a missing one) is counted."""
    blocked = signin_blocked_seconds(address=address, now=now, shared=False)
    if blocked is not None:
        raise _throttled(blocked)
    try:
        return await pool.api_key_authenticate(presented=presented, now=now)
    except AuthenticationFailed as exc:
        if exc.code == "missing_api_key":
            raise
        retry_after = await orm_call(signin_failure_record)(address=address, now=now)
        if retry_after is not None:
            raise _throttled(retry_after) from None
        raise


@receiver(user_login_failed)
def _password_signin_failed(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    # The admin's sign-in form re-renders with an error (200), like any other page: the
    # middleware below learns of the failure from this flag.
    if request is not None:
        request.signin_failed = True  # type: ignore[attr-defined]


def _guarded(request: HttpRequest) -> bool:
    """Requests that present a secret: /api/ with a Bearer (master key) or Token header, and
    the POSTs of the /stat and admin sign-in forms."""
    if request.path.startswith("/api/"):
        scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
        return scheme in ("bearer", "token")
    return request.method == "POST" and request.path in ("/stat/signin", "/admin/login/")


def _failed(request: HttpRequest, response: HttpResponse) -> bool:
    if request.path.startswith("/api/"):
        return response.status_code == 401
    return bool(getattr(request, "signin_failed", False))


def _refusal(request: HttpRequest, exc: SigninThrottled) -> HttpResponse:
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": exc.message}, status=exc.status)
    else:
        response = HttpResponse(exc.message, status=exc.status, content_type="text/plain")
    response["Retry-After"] = str(exc.retry_after_seconds)
    return response


class SigninThrottleMiddleware:
    """The browser routes' side of the throttle (the admin, /stat, /api/)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _guarded(request):
            return self.get_response(request)
        address = client_address(request)
        blocked = signin_blocked_seconds(address=address, now=clock.now(), shared=True)
        if blocked is not None:
            return _refusal(request, _throttled(blocked))
        response = self.get_response(request)
        if _failed(request, response):
            retry_after = signin_failure_record(address=address, now=clock.now())
            if retry_after is not None:
                response["Retry-After"] = str(retry_after)
        return response


def token_refusal_throttled(
    request: HttpRequest, *, check: Callable[[], HttpResponse | None]
) -> HttpResponse | None:
    """For views that compare a token themselves (/debug/stats, /metrics): `check()`'s
    refusal, counted as a failure, or a 429 once the address is past its failures."""
    address = client_address(request)
    blocked = signin_blocked_seconds(address=address, now=clock.now(), shared=True)
    if blocked is not None:
        return _refusal(request, _throttled(blocked))
    refusal = check()
    if refusal is not None and refusal.status_code == 401:
        retry_after = signin_failure_record(address=address, now=clock.now())
        if retry_after is not None:
            return _refusal(request, _throttled(retry_after))
    return refusal
