"""The rotation engine's stateful API: authenticate, pick, report, rotate, reset.

Nothing else touches cursors or marks. Each server process keeps a snapshot of every pool it
serves (credentials in order, the owner's API keys); the shared state backend says on every
pick whether that snapshot is still current, so changes made anywhere (admin, API, another
process) take effect on the next request everywhere.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import ApiKey, Credential, api_key_refusal, proxy_url_validate
from accounts.secrets import (
    SecretUnreadable,
    decrypt,
    digest,
    encrypt,
    encryption_key_name,
    mask,
)
from common import clock
from common.errors import (
    AliasesChanged,
    AuthenticationFailed,
    KeyLimitExceeded,
    ModelNotAllowed,
    NoCredentialAvailable,
    NotFound,
    PoolEmpty,
)
from common.events import catalog_emit
from common.naming import model_bare
from common.redact import secrets_register
from rotator import alerts
from rotator.classify import Outcome, Verdict
from rotator.models import Mark, PoolState, QuotaReading, UpstreamErrorLog
from rotator.orm import orm_call
from rotator.selection import NonePicked, Picked, Strategy, first_in_line
from rotator.state import (
    AliasesStale,
    KeyLimited,
    PickRequest,
    Stale,
    datetime_of_ms,
    now_ms_of,
    state_backend,
)
from rotator.upstream import proxy_effective

logger = logging.getLogger("rotator.pool")

T = TypeVar("T")

ERROR_LOG_KEEP = 20


@dataclass(frozen=True, slots=True)
class KeyView:
    """What the hot path needs to know about a Rotator API key."""

    id: int
    user_id: int
    digest: str
    prefix: str
    revoked: bool
    expires_at: datetime | None
    allowed_models: frozenset[str]
    requests_per_minute: int | None
    requests_per_day: int | None

    def refusal(self, now: datetime) -> str | None:
        return api_key_refusal(revoked=self.revoked, expires_at=self.expires_at, now=now)


@dataclass(slots=True)
class CredentialView:
    """A credential as the request path sees it; the secret is decrypted on first use."""

    id: int
    user_id: int
    kind: str
    label: str
    secret_mask: str
    project_label: str
    secret_encrypted: str
    oauth_project_id: str
    oauth_client_id: str
    oauth_client_secret_encrypted: str
    # Egress proxy, its own or its pool's (rotator.upstream.proxy_effective); "" for direct.
    proxy_url_encrypted: str = field(default="", repr=False)
    _secret: str | None = field(default=None, repr=False)

    @property
    def display_name(self) -> str:
        return f"{self.label} ({self.secret_mask})" if self.label else self.secret_mask

    @property
    def is_oauth(self) -> bool:
        return self.kind == Credential.Kind.GEMINI_OAUTH

    def secret(self) -> str:
        if self._secret is None:
            self._secret = decrypt(self.secret_encrypted)
            if self.is_oauth:
                secrets_register(
                    owner=("oauth_account", self.id), secrets=oauth_document_secrets(self._secret)
                )
        return self._secret

    def is_readable(self) -> bool:
        """True when the configured key opens this credential's secrets (decrypting once);
        an OAuth account's tokens and client secret are registered for redaction then."""
        try:
            self.secret()
            if self.oauth_client_secret_encrypted:
                client_secret = decrypt(self.oauth_client_secret_encrypted)
                secrets_register(owner=("oauth_client", self.id), secrets=(client_secret,))
        except SecretUnreadable:
            return False
        return True


def oauth_document_secrets(document: str) -> tuple[str, ...]:
    """The secrets inside a stored OAuth account (the Gemini CLI's oauth_creds.json): its
    refresh and access tokens and any client secret; none when it is not such a document."""
    try:
        account = orjson.loads(document)
    except orjson.JSONDecodeError:
        return ()
    if not isinstance(account, dict):
        return ()
    fields = ("refresh_token", "access_token", "client_secret", "id_token")
    return tuple(str(account[name]) for name in fields if isinstance(account.get(name), str))


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    user_id: int
    version: int
    # The durable cursor when loaded: where a Redis that lost the pool's state resumes.
    cursor: int
    strategy: Strategy
    ordered_ids: tuple[int, ...]
    credentials: dict[int, CredentialView]
    keys: dict[str, KeyView]
    # Credentials sharing a Google Cloud project share its quota: mark them together.
    project_peers: dict[str, tuple[int, ...]]


_snapshots: dict[int, PoolSnapshot] = {}
_keys: dict[str, tuple[KeyView, float]] = {}
# Credentials this process has seen fail since their last success here. The failure count
# itself is fleet-wide (the state backend); this hint keeps the success path free of a
# shared-state write: only a success after a failure seen here clears the shared count. A
# success in another process does not, and the count's window (CIRCUIT_BREAKER_WINDOW_SECONDS)
# bounds what an old failure can add.
_failing: set[int] = set()


def _key_view(row: ApiKey) -> KeyView:
    return KeyView(
        id=row.id,
        user_id=row.user_id,
        digest=row.digest,
        prefix=row.prefix,
        revoked=row.revoked,
        expires_at=row.expires_at,
        allowed_models=frozenset(model_bare(m) for m in row.allowed_models or ()),
        requests_per_minute=row.requests_per_minute,
        requests_per_day=row.requests_per_day,
    )


def snapshot_load(*, user_id: int, now: datetime) -> tuple[PoolSnapshot, dict[str, dict[int, int]]]:
    """Reads a pool from the database. Returns the snapshot and its active marks by model."""
    state, _ = PoolState.objects.get_or_create(user_id=user_id)
    rows = list(
        Credential.objects.in_pool()
        .filter(user_id=user_id)
        .order_by("position", "id")
        .values(
            "id",
            "kind",
            "label",
            "secret_mask",
            "project_label",
            "secret_encrypted",
            "oauth_project_id",
            "oauth_client_id",
            "oauth_client_secret_encrypted",
            "proxy_url_encrypted",
        )
    )
    for row in rows:
        row["proxy_url_encrypted"] = proxy_effective(
            own=row["proxy_url_encrypted"], pool=state.proxy_url_encrypted
        )
    credentials = {row["id"]: CredentialView(user_id=user_id, **row) for row in rows}
    peers: dict[str, list[int]] = {}
    for view in credentials.values():
        if view.project_label:
            peers.setdefault(view.project_label, []).append(view.id)
    keys = {row.digest: _key_view(row) for row in ApiKey.objects.filter(user_id=user_id)}
    marks: dict[str, dict[int, int]] = {}
    for model, credential_id, until in Mark.objects.filter(
        credential__user_id=user_id, until__gt=now
    ).values_list("model", "credential_id", "until"):
        marks.setdefault(model, {})[credential_id] = now_ms_of(until)
    snapshot = PoolSnapshot(
        user_id=user_id,
        version=state.version,
        cursor=state.cursor,
        strategy=Strategy(state.strategy),
        ordered_ids=tuple(credentials),
        credentials=credentials,
        keys=keys,
        project_peers={label: tuple(ids) for label, ids in peers.items()},
    )
    return snapshot, marks


async def _snapshot_refresh(*, user_id: int, now: datetime) -> PoolSnapshot:
    return await _load_shared(
        ("pool", user_id), lambda: _snapshot_refresh_now(user_id=user_id, now=now)
    )


async def _snapshot_refresh_now(*, user_id: int, now: datetime) -> PoolSnapshot:
    snapshot, marks = await orm_call(snapshot_load)(user_id=user_id, now=now)
    await state_backend().order_install(
        user_id=user_id,
        version=snapshot.version,
        cursor=snapshot.cursor,
        ordered_ids=snapshot.ordered_ids,
        marks=marks,
    )
    _snapshots[user_id] = snapshot
    monotonic = time.monotonic()
    for stale_digest in [d for d, (k, _) in _keys.items() if k.user_id == user_id]:
        if stale_digest not in snapshot.keys:
            del _keys[stale_digest]
    for key_digest, key in snapshot.keys.items():
        if key_digest in _keys:
            _keys[key_digest] = (key, monotonic)
    return snapshot


def _api_key_fetch(key_digest: str) -> KeyView | None:
    row = ApiKey.objects.filter(digest=key_digest).first()
    return _key_view(row) if row is not None else None


# Database reads under way in this process (keys, pool snapshots), shared by the requests
# that need the same one at the same time.
_loads: dict[tuple[str, int | str], asyncio.Future[Any]] = {}


async def _load_shared(name: tuple[str, int | str], load: Callable[[], Awaitable[T]]) -> T:
    """Runs `load` once at a time per name and process; concurrent callers share its result.

    When a cached key expires, or a pool changes, under load, every request in flight would
    otherwise read it at once, each on its own thread and database connection: a burst of a
    thousand streams exhausted PostgreSQL's connections (docs/performance.md). The first
    caller reads; the others wait for its answer, or read themselves if it was cancelled.
    """
    loop = asyncio.get_running_loop()
    while True:
        pending = _loads.get(name)
        if pending is None or pending.get_loop() is not loop:
            break
        try:
            # Shielded: a waiter that is cancelled must not cancel the read for the others.
            result: T = await asyncio.shield(pending)
            return result
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not pending.cancelled() or (task is not None and task.cancelling()):
                raise
            # The reading request was cancelled (its client left): read again.
    future: asyncio.Future[Any] = loop.create_future()
    _loads[name] = future
    try:
        value = await load()
    except asyncio.CancelledError:
        future.cancel()
        raise
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: nobody may be waiting, which is no error
        raise
    else:
        future.set_result(value)
        return value
    finally:
        if _loads.get(name) is future:
            del _loads[name]


async def api_key_authenticate(*, presented: str | None, now: datetime) -> KeyView:
    """Returns the key for a presented secret.

    Raises AuthenticationFailed when it is missing, unknown, revoked or expired. Warm path:
    one digest and a dictionary lookup; a cold key costs one indexed query.
    """
    if not presented:
        raise AuthenticationFailed(
            "Missing API key. Pass it as 'Authorization: Bearer KEY', 'x-goog-api-key: KEY' "
            "or '?key=KEY'.",
            code="missing_api_key",
        )
    key_digest = digest(presented)
    cached = _keys.get(key_digest)
    if cached is None or time.monotonic() - cached[1] > settings.API_KEY_CACHE_SECONDS:
        key = await _load_shared(("key", key_digest), lambda: orm_call(_api_key_fetch)(key_digest))
        if key is None:
            _keys.pop(key_digest, None)
            raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        _keys[key_digest] = (key, time.monotonic())
    else:
        key = cached[0]
    refusal = key.refusal(now)
    if refusal:
        if cached is None:
            raise AuthenticationFailed(refusal, code="invalid_api_key")
        # A cached refusal may be stale (expiry extended in another process): confirm it
        # before refusing. The refusal path only; the warm path stays one dictionary lookup.
        key = await api_key_confirm(key=key, now=now)
        _keys[key_digest] = (key, time.monotonic())
    return key


def _model_refusal(
    *, key: KeyView, model: str, requested: str | None = None
) -> ModelNotAllowed | None:
    """Why the key may not use `model`, or None. A key's allowed models name Gemini models
    (`model`, what is called); the alias a client sent (`requested`) is accepted too when it
    is listed itself."""
    allowed = key.allowed_models
    if not allowed or model_bare(model) in allowed:
        return None
    if requested is not None and model_bare(requested) in allowed:
        return None
    return ModelNotAllowed(
        f"This API key may not use model '{model_bare(requested or model)}'.",
        code="model_not_allowed",
    )


async def model_check(*, key: KeyView, model: str, requested: str | None = None) -> None:
    """Raises ModelNotAllowed when the key is limited to other models.

    The cached key decides a yes (credential_pick checks the model again on the key its pick
    confirmed, so a key narrowed elsewhere is refused there); a no is confirmed against the
    shared pool version first, so a key widened elsewhere is never refused on a stale copy.
    """
    if _model_refusal(key=key, model=model, requested=requested) is None:
        return
    confirmed = await api_key_confirm(key=key, now=clock.now())
    refusal = _model_refusal(key=confirmed, model=model, requested=requested)
    if refusal is not None:
        raise refusal


# Google answers 404 for a model that exists but does not serve the method called (an
# :embedContent on a chat model): a 404 proves something about one family of methods only.
_METHOD_FAMILIES = {
    "generateContent": "",
    "streamGenerateContent": "",
    "embedContent": "embed",
    "batchEmbedContents": "embed",
}


def mark_scope(*, model: str, method: str) -> str:
    """The name a (model, method family) is marked under: the bare model for generation (so
    marks read as they always have), `model:family` for embeddings, token counts and others.
    Model names never contain ':'."""
    family = _METHOD_FAMILIES.get(method, method)
    return f"{model_bare(model)}:{family}" if family else model_bare(model)


def _retry_after_seconds(until_ms: int, now: datetime) -> int:
    return max(1, int((datetime_of_ms(until_ms) - now).total_seconds() + 0.999))


async def credential_pick(
    *,
    key: KeyView,
    model: str,
    excluded: tuple[int, ...],
    first_attempt: bool,
    now: datetime,
    method: str = "generateContent",
    requested: str | None = None,
    aliases_version: int | None = None,
) -> CredentialView:
    """Returns the credential that serves this attempt, advancing the pool's cursor.

    Raises AuthenticationFailed (the key changed since it was cached), ModelNotAllowed (the
    key, as the pick confirmed it, may not use the model), KeyLimitExceeded, PoolEmpty
    (nothing usable at all), NotFound (every credential is marked as not serving the model
    for this method) or NoCredentialAvailable (all cooling down; carries Retry-After).
    Counts the key's rate windows on the first attempt.

    `aliases_version`: the alias table version `model` was resolved with, unconfirmed. When
    the shared version differs, nothing is picked or counted and AliasesChanged is raised:
    every answer and every refusal of this function is decided on current aliases.
    """
    model = model_bare(model)
    scope = mark_scope(model=model, method=method)
    snapshot = _snapshots.get(key.user_id)
    if snapshot is not None:
        confirmed = False
    else:
        snapshot = await _snapshot_refresh(user_id=key.user_id, now=now)
        confirmed = True  # just read from the database
    backend = state_backend()
    reloads = 0
    while reloads < 3:
        current_key = snapshot.keys.get(key.digest)
        refusal = _pick_refusal(
            snapshot=snapshot, key=current_key, model=model, requested=requested, now=now
        )
        if refusal is not None:
            # A snapshot cached before a key was created, widened or a credential enabled
            # elsewhere would refuse a valid request: confirm the version before refusing, and
            # reload once. The refusal path only; a pick confirms the version on its own.
            if not confirmed:
                confirmed = True
                if await backend.pool_version(user_id=key.user_id) != snapshot.version:
                    snapshot = await _snapshot_refresh(user_id=key.user_id, now=now)
                    continue
            if aliases_version is not None and await backend.aliases_version() != aliases_version:
                raise _aliases_changed()
            if isinstance(refusal, PoolEmpty) and settings.ALERT_WEBHOOK_URL:
                await orm_call(alerts.pool_empty_alert)(
                    user_id=key.user_id,
                    model=model,
                    version=snapshot.version,
                    back_at=None,
                    now=now,
                )
            raise refusal
        assert current_key is not None
        outcome = await backend.pick(
            PickRequest(
                user_id=key.user_id,
                version=snapshot.version,
                model=scope,
                strategy=snapshot.strategy,
                now_ms=now_ms_of(now),
                excluded=excluded,
                ordered_ids=snapshot.ordered_ids,
                api_key_id=current_key.id,
                count_rate=first_attempt,
                requests_per_minute=current_key.requests_per_minute,
                requests_per_day=current_key.requests_per_day,
                minute=int(now.timestamp()) // 60,
                day=clock.quota_day(now).isoformat(),
                aliases_version=aliases_version,
            )
        )
        if isinstance(outcome, AliasesStale):
            raise _aliases_changed()
        if isinstance(outcome, Stale):
            reloads += 1
            snapshot = await _snapshot_refresh(user_id=key.user_id, now=now)
            confirmed = True
            continue
        if isinstance(outcome, Picked):
            credential = snapshot.credentials.get(outcome.credential_id)
            if credential is None:  # installed by a newer process than our snapshot
                reloads += 1
                snapshot = await _snapshot_refresh(user_id=key.user_id, now=now)
                continue
            if not credential.is_readable():
                # Not counted as a reload: each one leaves the pool for good, so this ends.
                await orm_call(credential_mark_unreadable)(credential_id=credential.id, now=now)
                snapshot = await _snapshot_refresh(user_id=key.user_id, now=now)
                confirmed = True
                continue
            return credential
        if isinstance(outcome, KeyLimited):
            if outcome.window == "minute":
                retry_after = 60 - int(now.timestamp()) % 60
                limit = current_key.requests_per_minute
            else:
                retry_after = _retry_after_seconds(now_ms_of(clock.daily_reset_next(now)), now)
                limit = current_key.requests_per_day
            raise KeyLimitExceeded(
                f"This API key is limited to {limit} requests per {outcome.window}.",
                code="key_rate_limited",
                retry_after_seconds=retry_after,
            )
        assert isinstance(outcome, NonePicked)
        if outcome.soonest_until_ms is not None and await orm_call(_model_missing_everywhere)(
            user_id=key.user_id, scope=scope, excluded=excluded, now=now
        ):
            raise NotFound(
                f"models/{model} is not found for {method} on any credential of this pool.",
                code="model_not_found",
            )
        if settings.ALERT_WEBHOOK_URL and outcome.soonest_until_ms is not None:
            await orm_call(alerts.pool_empty_alert)(
                user_id=key.user_id,
                model=model,
                version=snapshot.version,
                back_at=datetime_of_ms(outcome.soonest_until_ms),
                now=now,
            )
        raise _none_available(snapshot=snapshot, model=model, outcome=outcome, now=now)
    raise NoCredentialAvailable(
        "The pool changed repeatedly during this request; retry.", retry_after_seconds=1
    )


def _aliases_changed() -> AliasesChanged:
    return AliasesChanged(
        "Model aliases changed while this request was served; retry.",
        code="aliases_changed",
        retry_after_seconds=1,
    )


def _pick_refusal(
    *,
    snapshot: PoolSnapshot,
    key: KeyView | None,
    model: str,
    requested: str | None = None,
    now: datetime,
) -> AuthenticationFailed | ModelNotAllowed | PoolEmpty | None:
    """Why this snapshot refuses the request before any pick: key, model, empty pool."""
    if key is None:
        return AuthenticationFailed("Invalid API key.", code="invalid_api_key")
    refusal = key.refusal(now)
    if refusal:
        return AuthenticationFailed(refusal, code="invalid_api_key")
    model_refusal = _model_refusal(key=key, model=model, requested=requested)
    if model_refusal is not None:
        return model_refusal
    if not snapshot.ordered_ids:
        return PoolEmpty(
            "No upstream credential is available in this pool. An operator must add a "
            "Gemini API key or OAuth account (admin, /api/credentials or "
            "'manage.py addcredential'), or re-enable an invalid one.",
            code="pool_empty",
        )
    return None


def _model_missing_everywhere(
    *, user_id: int, scope: str, excluded: tuple[int, ...], now: datetime
) -> bool:
    """Whether every usable credential not yet tried is marked as not serving `scope`: then
    the truthful answer is 404, not a 429 with a Retry-After until the daily reset. Read on
    the refusal path only."""
    usable = Credential.objects.in_pool().filter(user_id=user_id).exclude(id__in=excluded)
    marks = Mark.objects.filter(credential__in=usable, model=scope, until__gt=now)
    return not marks.exclude(reason=Mark.Reason.MODEL_NOT_FOUND).exists() and (
        marks.count() == usable.count()
    )


def _none_available(
    *, snapshot: PoolSnapshot, model: str, outcome: NonePicked, now: datetime
) -> NoCredentialAvailable:
    total = len(snapshot.ordered_ids)
    if outcome.soonest_until_ms is None:
        return NoCredentialAvailable(
            f"All {total} credentials for {model} failed for this request.",
            code="credentials_exhausted",
            retry_after_seconds=1,
        )
    back_at = datetime_of_ms(outcome.soonest_until_ms)
    return NoCredentialAvailable(
        f"All {total} credentials for {model} are rate-limited or exhausted until "
        f"{back_at:%H:%M:%S} UTC.",
        code="credentials_exhausted",
        retry_after_seconds=_retry_after_seconds(outcome.soonest_until_ms, now),
    )


def _mark_until(
    *, verdict: Verdict, model_listed: bool | None, now: datetime
) -> tuple[str, datetime] | None:
    if verdict.outcome is Outcome.RATE_LIMITED:
        delay = verdict.retry_delay_seconds or settings.RATE_LIMIT_DEFAULT_COOLDOWN_SECONDS
        return Mark.Reason.RATE_LIMITED, now + timedelta(seconds=delay)
    if verdict.outcome is Outcome.QUOTA_EXHAUSTED:
        # Our clock, not Google's retryDelay, which can be short or huge for a daily quota;
        # if Google disagrees, one request after the reset re-marks it. Code Assist states its
        # own reset time per account, which we believe.
        if verdict.reset_after_seconds:
            return Mark.Reason.QUOTA_EXHAUSTED, now + timedelta(seconds=verdict.reset_after_seconds)
        return Mark.Reason.QUOTA_EXHAUSTED, clock.daily_reset_next(now)
    if verdict.outcome is Outcome.MODEL_NOT_FOUND:
        if model_listed is not False:
            # Unproved: the credential's list names the model for this method (or could not
            # be read). Any key holder can cause a 404, so it may not cost the pool a day.
            seconds = settings.MODEL_MISSING_UNCONFIRMED_SECONDS
            return Mark.Reason.MODEL_NOT_FOUND, now + timedelta(seconds=seconds)
        # Access to a model can change (new tier, new release); look again each quota day.
        return Mark.Reason.MODEL_NOT_FOUND, clock.daily_reset_next(now)
    return None


async def credential_report(
    *,
    credential: CredentialView,
    model: str,
    verdict: Verdict,
    status: int | None,
    now: datetime,
    method: str = "generateContent",
    model_listed: bool | None = None,
) -> None:
    """Learns from one upstream answer: marks the credential (and its project peers) for the
    model and method family, invalidates it, or counts a transient failure toward the circuit
    breaker. `model_listed` is what the credential's own model list said about a 404's model
    and method (False: not served, which alone marks until the daily reset)."""
    model = mark_scope(model=model, method=method)
    outcome = verdict.outcome
    if outcome is Outcome.OK:
        if credential.id in _failing:
            _failing.discard(credential.id)
            await state_backend().failures_clear(credential_id=credential.id)
        return
    if outcome is Outcome.CLIENT_ERROR:
        return
    if outcome is Outcome.EMPTY:
        # An answer without content (MALFORMED_FUNCTION_CALL, thoughts only) is the model's
        # failure, not the credential's: logged, never counted toward its circuit breaker.
        await orm_call(_error_log_add)(
            credential_id=credential.id, model=model, status=status, verdict=verdict, now=now
        )
        return
    if outcome is Outcome.TRANSIENT:
        _failing.add(credential.id)
        opens = await state_backend().failure_count(
            credential_id=credential.id,
            now_ms=now_ms_of(now),
            window_ms=settings.CIRCUIT_BREAKER_WINDOW_SECONDS * 1000,
            threshold=settings.CIRCUIT_BREAKER_FAILURES,
        )
        if not opens:
            await orm_call(_error_log_add)(
                credential_id=credential.id, model=model, status=status, verdict=verdict, now=now
            )
            return
        _failing.discard(credential.id)
        reason: str = Mark.Reason.UNSTABLE
        until = now + timedelta(seconds=settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS)
        ids: tuple[int, ...] = (credential.id,)
    elif outcome in (Outcome.INVALID, Outcome.SUSPENDED, Outcome.UNAUTHENTICATED):
        await orm_call(credential_invalidate)(
            credential_id=credential.id,
            message=verdict.message,
            status=status,
            now=now,
            suspended=outcome is Outcome.SUSPENDED,
        )
        return
    else:
        mark = _mark_until(verdict=verdict, model_listed=model_listed, now=now)
        if mark is None:
            return
        reason, until = mark
        ids = (credential.id,)
        if reason != Mark.Reason.MODEL_NOT_FOUND and credential.project_label:
            snapshot = _snapshots.get(credential.user_id)
            if snapshot is not None:
                ids = snapshot.project_peers.get(credential.project_label, ids)
    await state_backend().marks_put(
        user_id=credential.user_id, credential_ids=ids, model=model, until_ms=now_ms_of(until)
    )
    await orm_call(_marks_write)(
        credential_ids=ids,
        model=model,
        reason=reason,
        until=until,
        message=verdict.message,
        status=status,
        verdict=verdict,
        reporter_id=credential.id,
        now=now,
    )


def _marks_write(
    *,
    credential_ids: Iterable[int],
    model: str,
    reason: str,
    until: datetime,
    message: str,
    status: int | None,
    verdict: Verdict,
    reporter_id: int,
    now: datetime,
) -> None:
    for credential_id in credential_ids:
        if reason == Mark.Reason.QUOTA_EXHAUSTED and verdict.quota_value:
            # Outlives the mark (the daily reset deletes it): /stat's estimate needs the limit.
            QuotaReading.objects.limit_remember(
                credential_id=credential_id, model=model, limit=verdict.quota_value, now=now
            )
        # A later deadline wins: a short rate limit never shortens a daily-quota mark.
        updated = Mark.objects.filter(
            credential_id=credential_id, model=model, until__lt=until
        ).update(reason=reason, until=until, message=message, quota_value=verdict.quota_value)
        if updated:
            continue
        try:
            with transaction.atomic():
                Mark.objects.create(
                    credential_id=credential_id,
                    model=model,
                    reason=reason,
                    until=until,
                    message=message,
                    quota_value=verdict.quota_value,
                )
        except IntegrityError:
            pass  # an equal or later mark is already there
    _error_log_add(credential_id=reporter_id, model=model, status=status, verdict=verdict, now=now)


def _error_log_add(
    *, credential_id: int, model: str, status: int | None, verdict: Verdict, now: datetime
) -> None:
    UpstreamErrorLog.objects.create(
        credential_id=credential_id,
        at=now,
        model=model,
        status=status,
        outcome=verdict.outcome.value,
        message=verdict.message,
    )
    stale = UpstreamErrorLog.objects.filter(credential_id=credential_id).values_list(
        "id", flat=True
    )[ERROR_LOG_KEEP:]
    stale_ids = list(stale)
    if stale_ids:
        UpstreamErrorLog.objects.filter(id__in=stale_ids).delete()


# Google's words for an account it has disabled for good; retrying those risks more.
def credential_invalidate(
    *, credential_id: int, message: str, status: int | None, now: datetime, suspended: bool
) -> None:
    """Marks a credential invalid for every model until an operator or a check restores it;
    one that Google suspended (Terms of Service) is marked suspended, which no automatic
    check lifts."""
    target = Credential.Status.SUSPENDED if suspended else Credential.Status.INVALID
    changed = (
        Credential.objects.filter(id=credential_id)
        .exclude(status=target)
        .update(status=target, last_error=message, last_error_at=now)
    )
    if not changed:
        Credential.objects.filter(id=credential_id).update(last_error=message, last_error_at=now)
    UpstreamErrorLog.objects.create(
        credential_id=credential_id,
        at=now,
        status=status,
        outcome=Outcome.INVALID.value,
        message=message,
    )
    if changed:
        # Every request in flight on the credential when Google refused it reports it too; one
        # pool reload is enough. A version bump per report made concurrent picks find the pool
        # changed again and again, and give up (a 429 to the client).
        user_id = Credential.objects.values_list("user_id", flat=True).get(id=credential_id)
        pool_invalidate(user_id=user_id)
        # Only the report that changed the status alerts: one alert per state change.
        alerts.alert_raise(
            event=f"credential_{target}",
            dedupe_key=f"credential_{target}:{credential_id}:{now.isoformat()}",
            user_id=user_id,
            credential_id=credential_id,
            model="",
            message=message,
            now=now,
        )
    logger.warning("credential %s marked invalid: %s", credential_id, message)


def credential_mark_unreadable(*, credential_id: int, now: datetime) -> None:
    """Takes a credential whose secret the configured key cannot open out of its pool (status
    unreadable) until `rotateencryptionkey` reads it again, instead of failing every request
    that picks it."""
    message = f"cannot be decrypted with {encryption_key_name()}"
    changed = (
        Credential.objects.filter(id=credential_id)
        .exclude(status=Credential.Status.UNREADABLE)
        .update(status=Credential.Status.UNREADABLE, last_error=message, last_error_at=now)
    )
    if changed:
        user_id = Credential.objects.values_list("user_id", flat=True).get(id=credential_id)
        pool_invalidate(user_id=user_id)
        logger.error("credential %s marked unreadable: %s", credential_id, message)


def credential_restore(*, credential_id: int) -> None:
    """Returns an invalid credential to the pool (after a passing check or by an operator)."""
    Credential.objects.filter(id=credential_id).update(status=Credential.Status.ACTIVE)
    user_id = Credential.objects.values_list("user_id", flat=True).get(id=credential_id)
    pool_invalidate(user_id=user_id)


def pool_invalidate(*, user_id: int) -> None:
    """Tells every process that this user's pool (credentials, keys, strategy) changed."""
    state_backend().pool_invalidate(user_id=user_id)


def pool_proxy_set(*, user_id: int, url: str) -> PoolState:
    """Sets (or with "" removes) the egress proxy of a user's whole pool: stored encrypted and
    masked, used by every credential that names no proxy of its own, and every process told.
    Raises ValidationError for a URL that is not an HTTP or SOCKS5 proxy (without echoing it).
    """
    url = url.strip()
    if url:
        proxy_url_validate(url)
    state, _ = PoolState.objects.get_or_create(user_id=user_id)
    state.proxy_url_encrypted = encrypt(url) if url else ""
    state.proxy_url_mask = mask(url) if url else ""
    state.save(update_fields=["proxy_url_encrypted", "proxy_url_mask"])
    pool_invalidate(user_id=user_id)
    return state


@dataclass(frozen=True, slots=True)
class RotationResult:
    first_credential: Credential | None
    pool_size: int


def pool_rotate(*, user_id: int, now: datetime) -> RotationResult:
    """Manual rotation: advances the pool's cursor by one and restarts every credential's
    'since last rotation' counter. Returns the credential now first in line."""
    PoolState.objects.get_or_create(user_id=user_id)
    cursor = state_backend().cursor_advance(user_id=user_id, by=1)
    PoolState.objects.filter(user_id=user_id).update(rotated_at=now)
    Credential.objects.filter(user_id=user_id).update(requests_since_rotation=0)
    ordered = list(
        Credential.objects.in_pool().filter(user_id=user_id).values_list("id", flat=True)
    )
    first_id = first_in_line(ordered_ids=ordered, cursor=cursor)
    first = Credential.objects.get(id=first_id) if first_id is not None else None
    return RotationResult(first_credential=first, pool_size=len(ordered))


@dataclass(frozen=True, slots=True)
class ResetSummary:
    cleared: int
    users: int

    @property
    def summary(self) -> str:
        return f"cleared {self.cleared} quota mark(s) in {self.users} pool(s)"


def quotas_reset(*, user_id: int | None, now: datetime, force: bool) -> ResetSummary:
    """Ends quota-exhausted marks: those that have lapsed (the daily task; their `until` is the
    reset instant, so they have already ended on their own), or all of them (`force`, an
    operator saying the quota is back). Rate-limit and invalid marks are not touched."""
    marks = Mark.objects.filter(reason=Mark.Reason.QUOTA_EXHAUSTED)
    if user_id is not None:
        marks = marks.filter(credential__user_id=user_id)
    if not force:
        marks = marks.filter(until__lte=now)
    affected = dict(marks.values_list("credential_id", "credential__user_id"))
    cleared, _ = marks.delete()
    users = set(affected.values())
    if force:
        for affected_user in users:
            state_backend().marks_drop(
                user_id=affected_user,
                credential_ids=[c for c, u in affected.items() if u == affected_user],
            )
    if cleared:
        logger.info("daily reset: cleared %d quota mark(s) in %d pool(s)", cleared, len(users))
    return ResetSummary(cleared=cleared, users=len(users))


def marks_clear(*, credential_ids: Iterable[int]) -> int:
    """Clears every mark (all models, all reasons) of these credentials. Returns how many."""
    ids = list(credential_ids)
    by_user: dict[int, list[int]] = {}
    for credential_id, user_id in Credential.objects.filter(id__in=ids).values_list(
        "id", "user_id"
    ):
        by_user.setdefault(user_id, []).append(credential_id)
    cleared, _ = Mark.objects.filter(credential_id__in=ids).delete()
    for user_id, user_ids in by_user.items():
        state_backend().marks_drop(user_id=user_id, credential_ids=user_ids)
    return cleared


def process_state_forget() -> None:
    """Drops this process's snapshots and caches (tests, and after a settings change)."""
    _snapshots.clear()
    _keys.clear()
    _loads.clear()
    _failing.clear()
    _models.clear()


async def _snapshot_current(*, user_id: int) -> PoolSnapshot:
    snapshot = _snapshots.get(user_id)
    if snapshot is None:
        snapshot = await _snapshot_refresh(user_id=user_id, now=clock.now())
    return snapshot


async def credentials_of_other_kinds(
    *, key: KeyView, kinds: frozenset[str]
) -> tuple[list[int], int]:
    """Ids in the key's pool whose kind cannot serve an operation (embeddings need API keys),
    and how many credentials remain that can."""
    snapshot = await _snapshot_current(user_id=key.user_id)
    other = [i for i, c in snapshot.credentials.items() if c.kind not in kinds]
    # About to refuse: confirm that the snapshot is current (an API key may just have been
    # added in another process).
    if (
        other
        and len(other) == len(snapshot.ordered_ids)
        and await state_backend().pool_version(user_id=key.user_id) != snapshot.version
    ):
        snapshot = await _snapshot_refresh(user_id=key.user_id, now=clock.now())
        other = [i for i, c in snapshot.credentials.items() if c.kind not in kinds]
    return other, len(snapshot.ordered_ids) - len(other)


def _soonest_back(*, user_id: int, model: str, pool_size: int, now: datetime) -> int:
    marks = Mark.objects.filter(credential__user_id=user_id, model=model, until__gt=now)
    if marks.count() < pool_size:
        return 1
    soonest = marks.order_by("until").values_list("until", flat=True).first()
    return 1 if soonest is None else _retry_after_seconds(now_ms_of(soonest), now)


async def retry_after_for(
    *, key: KeyView, model: str, now: datetime, method: str = "generateContent"
) -> int:
    """Seconds until some credential can serve `model` again (1 if one can now)."""
    snapshot = await _snapshot_current(user_id=key.user_id)
    return await orm_call(_soonest_back)(
        user_id=key.user_id,
        model=mark_scope(model=model, method=method),
        pool_size=len(snapshot.ordered_ids),
        now=now,
    )


async def api_key_confirm(*, key: KeyView, now: datetime) -> KeyView:
    """Re-checks a cached key against the shared pool version (one round trip), for routes
    that do not pick a credential: a key revoked in another process is refused here too.
    Raises AuthenticationFailed."""
    snapshot = await _snapshot_current(user_id=key.user_id)
    version = await state_backend().pool_version(user_id=key.user_id)
    if version != snapshot.version:
        snapshot = await _snapshot_refresh(user_id=key.user_id, now=now)
    current = snapshot.keys.get(key.digest)
    if current is None:
        raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
    refusal = current.refusal(now)
    if refusal:
        raise AuthenticationFailed(refusal, code="invalid_api_key")
    return current


_models: dict[int, tuple[float, list[dict[str, Any]]]] = {}


async def models_for_pool(
    *,
    key: KeyView,
    fetch: Callable[[CredentialView], Awaitable[list[dict[str, Any]] | None]],
) -> list[dict[str, Any]]:
    """The native model descriptions the key's pool serves, cached MODELS_CACHE_SECONDS.

    Asks up to three API-key credentials (any one answering is enough: every key sees the
    same catalogue); an OAuth-only pool lists the Code Assist models.
    """
    key = await api_key_confirm(key=key, now=clock.now())
    cached = _models.get(key.user_id)
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    snapshot = await _snapshot_current(user_id=key.user_id)
    if not snapshot.ordered_ids:
        raise PoolEmpty(
            "No upstream credential is available in this pool. An operator must add one.",
            code="pool_empty",
        )
    api_keys = [c for c in snapshot.credentials.values() if not c.is_oauth][:3]
    oauth_accounts = [c for c in snapshot.credentials.values() if c.is_oauth][:1]
    models: list[dict[str, Any]] | None = None
    for credential in [*api_keys, *oauth_accounts]:
        models = await fetch(credential)
        if models is not None:
            break
    if models is None:
        from common.errors import UpstreamUnreachable

        raise UpstreamUnreachable(
            "Could not list models from upstream.", code="upstream_unreachable"
        )
    _models[key.user_id] = (time.monotonic() + settings.MODELS_CACHE_SECONDS, models)
    catalog_emit([str(model.get("name", "")) for model in models])
    return models
