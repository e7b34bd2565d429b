"""Gemini CLI OAuth accounts: access tokens (lazy and proactive refresh) and the Code Assist
project each account works in.

One refresh at a time per credential inside a process (an asyncio lock) and across processes
(a short lease in the state backend); whoever comes second finds the fresh token and uses it.
No database lock or transaction is held across the token endpoint call.
"""

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from django.conf import settings

from accounts.models import Credential
from accounts.secrets import decrypt, encrypt
from common import clock
from common.redact import secrets_register
from rotator.classify import Outcome, Verdict, oauth_refresh_classify, upstream_answer_classify
from rotator.orm import orm_call, orm_call_slow
from rotator.pool import credential_invalidate
from rotator.state import now_ms_of, state_backend
from rotator.upstream import TRANSPORT_ERRORS, upstream_client_for, upstream_client_sync_for

logger = logging.getLogger("rotator.oauth")

_tokens: dict[int, tuple[str, datetime]] = {}
_locks: dict[int, asyncio.Lock] = {}
_projects: dict[int, str] = {}

# Models Code Assist serves to Gemini CLI accounts (it has no model list endpoint).
# What gemini-cli offers in late 2026 (gemini-3-pro-preview was shut down on 2026-03-09).
CODE_ASSIST_MODELS = (
    ("gemini-3.1-pro-preview", "Gemini 3.1 Pro Preview"),
    ("gemini-3-flash-preview", "Gemini 3 Flash Preview"),
    ("gemini-3.5-flash", "Gemini 3.5 Flash"),
    ("gemini-3.1-flash-lite", "Gemini 3.1 Flash-Lite"),
    ("gemini-2.5-pro", "Gemini 2.5 Pro"),
    ("gemini-2.5-flash", "Gemini 2.5 Flash"),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite"),
)


def code_assist_models() -> list[dict[str, Any]]:
    return [
        {
            "name": f"models/{model}",
            "displayName": display,
            "supportedGenerationMethods": [
                "generateContent",
                "streamGenerateContent",
                "countTokens",
            ],
        }
        for model, display in CODE_ASSIST_MODELS
    ]


def _lock(credential_id: int) -> asyncio.Lock:
    lock = _locks.get(credential_id)
    if lock is None:
        lock = _locks[credential_id] = asyncio.Lock()
    return lock


def _fresh(entry: tuple[str, datetime] | None, *, now: datetime, margin_seconds: float) -> bool:
    return entry is not None and entry[1] - now > timedelta(seconds=margin_seconds)


async def access_token(*, credential: Any) -> str | Verdict:
    """Returns a usable access token (refreshing when fewer than OAUTH_REFRESH_MARGIN_SECONDS
    remain), or the Verdict of a refresh that failed (INVALID for a revoked refresh token);
    the caller reports it. Stores a refreshed token on the credential's row."""
    margin = settings.OAUTH_REFRESH_MARGIN_SECONDS
    cached = _tokens.get(credential.id)
    if _fresh(cached, now=clock.now(), margin_seconds=margin):
        assert cached is not None
        return cached[0]
    async with _lock(credential.id):
        cached = _tokens.get(credential.id)
        if _fresh(cached, now=clock.now(), margin_seconds=margin):
            assert cached is not None
            return cached[0]
        result = await orm_call_slow(token_refresh)(
            credential_id=credential.id, margin_seconds=margin, stale_token=None
        )
    return _remember(credential.id, result)


async def access_token_refresh_forced(*, credential: Any) -> bool:
    """After a 401: refreshes unless another request already replaced the refused token.
    Returns whether a new token is ready."""
    refused = _tokens.get(credential.id)
    async with _lock(credential.id):
        current = _tokens.get(credential.id)
        if current is not None and refused is not None and current[0] != refused[0]:
            return True
        result = await orm_call_slow(token_refresh)(
            credential_id=credential.id,
            margin_seconds=None,
            stale_token=refused[0] if refused else None,
        )
    return not isinstance(_remember(credential.id, result), Verdict)


def _remember(credential_id: int, result: tuple[str, datetime] | Verdict) -> str | Verdict:
    if isinstance(result, Verdict):
        _tokens.pop(credential_id, None)
        return result
    _tokens[credential_id] = result
    secrets_register(owner=("oauth_access_token", credential_id), secrets=(result[0],))
    return result[0]


@dataclass(frozen=True, slots=True)
class _StoredToken:
    access_token: tuple[str, datetime] | None
    refresh_token: str | None
    client_id: str
    client_secret: str
    # The credential's egress proxy, encrypted: token refreshes go through it too.
    proxy_url_encrypted: str


def _token_stored_read(*, credential_id: int) -> _StoredToken:
    row = Credential.objects.get(id=credential_id)
    stored = None
    if row.access_token_encrypted and row.access_token_expires_at is not None:
        stored = (decrypt(row.access_token_encrypted), row.access_token_expires_at)
    try:
        refresh_token: str | None = str(
            orjson.loads(decrypt(row.secret_encrypted))["refresh_token"]
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        refresh_token = None
    client_secret = (
        decrypt(row.oauth_client_secret_encrypted)
        if row.oauth_client_secret_encrypted
        else settings.OAUTH_CLIENT_SECRET
    )
    return _StoredToken(
        access_token=stored,
        refresh_token=refresh_token,
        client_id=row.oauth_client_id or settings.OAUTH_CLIENT_ID,
        client_secret=client_secret,
        proxy_url_encrypted=row.proxy_url_encrypted,
    )


def _token_store(*, credential_id: int, token: str, expires_at: datetime) -> None:
    Credential.objects.filter(id=credential_id).update(
        access_token_encrypted=encrypt(token), access_token_expires_at=expires_at
    )


def token_refresh(
    *, credential_id: int, margin_seconds: float | None, stale_token: str | None
) -> tuple[str, datetime] | Verdict:
    """Refreshes a credential's access token at OAUTH_TOKEN_URL unless the stored one is still
    good (fresh by `margin_seconds`, or different from the `stale_token` that was refused).

    Returns (token, expires_at) or the failure's Verdict, which the caller reports (an
    invalid_grant is INVALID). Blocking: the request path runs it on the ORM's slow threads.
    No transaction or row lock is held across the call to the token endpoint: a hanging
    endpoint must not block writes elsewhere (on SQLite a row lock is the global write lock).
    A lease in the state backend (a short write before and after, never across the call)
    keeps a second process from calling the token endpoint too: it waits for the token.
    """
    now = clock.now()
    stored = _token_stored_read(credential_id=credential_id)
    usable = _stored_usable(stored, now=now, margin_seconds=margin_seconds, stale_token=stale_token)
    if usable is not None:
        return usable
    if stored.refresh_token is None:
        return Verdict(Outcome.INVALID, message="stored OAuth JSON has no refresh_token")
    lease = f"oauth-refresh:{credential_id}"
    holder = uuid.uuid4().hex
    try:
        found = _lease_wait(
            lease=lease,
            holder=holder,
            credential_id=credential_id,
            before=stored.access_token,
            margin_seconds=margin_seconds,
            stale_token=stale_token,
        )
        if found is not None:
            return found
        return _token_fetch(credential_id=credential_id, stored=stored, now=now)
    finally:
        # Conditional on the holder: a no-op when another process holds the lease.
        state_backend().lease_release(name=lease, holder=holder)


def _stored_usable(
    stored: _StoredToken, *, now: datetime, margin_seconds: float | None, stale_token: str | None
) -> tuple[str, datetime] | None:
    """The stored token if it will do: fresh by the margin, or not the one that was refused."""
    if stored.access_token is None:
        return None
    if margin_seconds is not None and _fresh(
        stored.access_token, now=now, margin_seconds=margin_seconds
    ):
        return stored.access_token
    token, expires = stored.access_token
    if stale_token is not None and token != stale_token and expires > now:
        return stored.access_token
    return None


def _lease_wait(
    *,
    lease: str,
    holder: str,
    credential_id: int,
    before: tuple[str, datetime] | None,
    margin_seconds: float | None,
    stale_token: str | None,
) -> tuple[str, datetime] | None:
    """Waits for the refresh lease. Returns a token another process stored meanwhile (use
    it), or None once this caller holds the lease (refresh), or after waiting
    OAUTH_REFRESH_LEASE_SECONDS for a holder that died or hangs (refresh anyway)."""
    backend = state_backend()
    lease_seconds = settings.OAUTH_REFRESH_LEASE_SECONDS
    deadline = time.monotonic() + lease_seconds
    while True:
        taken = backend.lease_take(
            name=lease,
            holder=holder,
            now_ms=now_ms_of(clock.now()),
            ttl_ms=int(lease_seconds * 1000),
        )
        # Read after the take: a holder that just finished stored its token before it
        # released the lease, so a lease taken now may follow a refresh that needs no other.
        stored = _token_stored_read(credential_id=credential_id)
        now = clock.now()
        token = stored.access_token
        if token is not None and token != before and token[1] > now:
            return token  # the holder's fresh token
        usable = _stored_usable(
            stored, now=now, margin_seconds=margin_seconds, stale_token=stale_token
        )
        if usable is not None:
            return usable
        if taken or time.monotonic() > deadline:
            return None
        # A blocking wait on one of the ORM's slow threads, never on the event loop.
        time.sleep(0.05)


def _token_fetch(
    *, credential_id: int, stored: _StoredToken, now: datetime
) -> tuple[str, datetime] | Verdict:
    assert stored.refresh_token is not None
    try:
        response = upstream_client_sync_for(stored).post(
            settings.OAUTH_TOKEN_URL,
            data={
                "client_id": stored.client_id,
                "client_secret": stored.client_secret,
                "refresh_token": stored.refresh_token,
                "grant_type": "refresh_token",
            },
            timeout=settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        return Verdict(
            Outcome.TRANSIENT, message=f"token endpoint unreachable: {type(exc).__name__}"
        )
    verdict = oauth_refresh_classify(
        status=response.status_code,
        body=response.content,
        secrets=(stored.refresh_token, stored.client_secret),
    )
    if verdict.outcome is not Outcome.OK:
        return verdict
    document = orjson.loads(response.content)
    token = str(document["access_token"])
    # Google's default lifetime when expires_in is absent.
    expires_at = now + timedelta(seconds=int(document.get("expires_in") or 3600))
    _token_store(credential_id=credential_id, token=token, expires_at=expires_at)
    logger.info("refreshed access token for credential %s", credential_id)
    return token, expires_at


def tokens_refresh(*, within_seconds: int = 600) -> str:
    """Refreshes every active OAuth credential whose token expires within `within_seconds`
    (the beat task; requests refresh lazily anyway), reporting refusals to the pool (a revoked
    refresh token marks the credential invalid). Returns a one-line summary."""
    soon = clock.now() + timedelta(seconds=within_seconds)
    due = Credential.objects.in_pool().filter(kind=Credential.Kind.GEMINI_OAUTH)
    due = due.exclude(access_token_expires_at__gt=soon)
    refreshed = failed = 0
    for credential_id in due.values_list("id", flat=True):
        result = token_refresh(
            credential_id=credential_id, margin_seconds=within_seconds, stale_token=None
        )
        if isinstance(result, Verdict):
            failed += 1
            if result.outcome is Outcome.INVALID:
                credential_invalidate(
                    credential_id=credential_id,
                    message=result.message,
                    status=None,
                    now=clock.now(),
                    suspended=False,
                )
        else:
            refreshed += 1
    return f"refreshed {refreshed} access token(s), {failed} failed"


async def code_assist_project_ensure(*, credential: Any) -> str | Verdict:
    """Returns the Code Assist project for an account: configured, discovered earlier, or
    discovered now (loadCodeAssist, then onboardUser for an account not yet onboarded), in
    which case it is stored on the credential's row. Returns the Verdict of a failed discovery
    (INVALID for an ineligible account) for the caller to report."""
    if credential.oauth_project_id:
        return str(credential.oauth_project_id)
    known = _projects.get(credential.id)
    if known:
        return known
    async with _lock(-credential.id):
        known = _projects.get(credential.id)
        if known:
            return known
        result = await _project_discover(credential)
        if isinstance(result, Verdict):
            return result
        _projects[credential.id] = result
        credential.oauth_project_id = result
        await orm_call(_project_store)(credential_id=credential.id, project=result)
        return result


def _project_store(*, credential_id: int, project: str) -> None:
    Credential.objects.filter(id=credential_id).update(oauth_project_id=project)


_METADATA = {
    "ideType": "IDE_UNSPECIFIED",
    "platform": "PLATFORM_UNSPECIFIED",
    "pluginType": "GEMINI",
}


async def _code_assist_post(credential: Any, method: str, body: dict[str, Any]) -> Any | Verdict:
    token = await access_token(credential=credential)
    if isinstance(token, Verdict):
        return token
    try:
        response = await upstream_client_for(credential).post(
            f"{settings.CODE_ASSIST_UPSTREAM_URL}:{method}",
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
            content=orjson.dumps(body),
        )
    except TRANSPORT_ERRORS as exc:
        return Verdict(Outcome.TRANSIENT, message=f"Code Assist unreachable: {type(exc).__name__}")
    if response.status_code != 200:
        verdict = upstream_answer_classify(status=response.status_code, body=response.content)
        return verdict
    return orjson.loads(response.content)


def _project_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


async def _project_discover(credential: Any) -> str | Verdict:
    loaded = await _code_assist_post(credential, "loadCodeAssist", {"metadata": _METADATA})
    if isinstance(loaded, Verdict):
        return loaded
    if loaded.get("currentTier"):
        project = _project_of(loaded.get("cloudaicompanionProject"))
        if project:
            return project
    allowed = loaded.get("allowedTiers") or []
    tier = next((t for t in allowed if t.get("isDefault")), allowed[0] if allowed else None)
    if tier is None:
        ineligible = loaded.get("ineligibleTiers") or [{}]
        reason = ineligible[0]
        code = reason.get("reasonCode", "unknown")
        message = (
            f"Google says this account cannot use Code Assist ({code}): "
            f"{reason.get('reasonMessage', '')} {reason.get('validationUrl', '')}".strip()
        )
        return Verdict(Outcome.INVALID, message=message, reason=str(reason.get("reasonCode", "")))
    body: dict[str, Any] = {"tierId": tier.get("id"), "metadata": _METADATA}
    # The free tier refuses a project ("Precondition Failed"); the others need one.
    if tier.get("id") != "free-tier" and credential.oauth_project_id:
        body["cloudaicompanionProject"] = credential.oauth_project_id
    operation = await _code_assist_post(credential, "onboardUser", body)
    for _ in range(settings.OAUTH_ONBOARD_MAX_POLLS):
        if isinstance(operation, Verdict):
            return operation
        if operation.get("done"):
            project = _project_of((operation.get("response") or {}).get("cloudaicompanionProject"))
            if project:
                return project
            return Verdict(Outcome.INVALID, message="onboarding finished without a project")
        await asyncio.sleep(settings.OAUTH_ONBOARD_POLL_SECONDS)
        operation = await _operation_get(credential, str(operation.get("name", "")))
    return Verdict(Outcome.TRANSIENT, message="onboarding did not finish in time")


async def _operation_get(credential: Any, name: str) -> Any | Verdict:
    token = await access_token(credential=credential)
    if isinstance(token, Verdict):
        return token
    try:
        response = await upstream_client_for(credential).get(
            f"{settings.CODE_ASSIST_UPSTREAM_URL}/{name}",
            headers={"authorization": f"Bearer {token}"},
        )
    except TRANSPORT_ERRORS as exc:
        return Verdict(Outcome.TRANSIENT, message=f"Code Assist unreachable: {type(exc).__name__}")
    if response.status_code != 200:
        return upstream_answer_classify(status=response.status_code, body=response.content)
    return orjson.loads(response.content)


def process_tokens_forget() -> None:
    _tokens.clear()
    _projects.clear()
    _locks.clear()
