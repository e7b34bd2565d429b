"""`FakeGemini`: the controller tests drive, holding the fake's state and its server thread."""

import asyncio
import contextlib
import itertools
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .catalog import model_strip
from .errors import MODEL_SCOPED, behaviour_validate
from .handlers import app_build
from .state import OAuthAccount, RecordedRequest, project_generate


@dataclass(slots=True)
class _Behaviour:
    name: str
    params: dict[str, Any]
    remaining: int | None


class FakeGemini:
    """A fake of Google's Gemini, OpenAI-compatible, Code Assist and OAuth endpoints.

    Tests use `start()`/`stop()` (or `with FakeGemini() as fake:`); the server runs in a
    background thread with its own event loop, so synchronous and async test code can both
    talk to it. Everything a test reads or steers is guarded by one lock.
    """

    def __init__(
        self, *, record: bool = True, stream_chunks: int = 3, chunk_delay_seconds: float = 0.0
    ) -> None:
        self.record = record
        self.stream_chunks = stream_chunks
        self.chunk_delay_seconds = chunk_delay_seconds
        # The token endpoint answers after this long (a slow Google), so that refreshes by
        # several processes overlap; tests that set it put it back to 0.
        self.token_delay_seconds = 0.0
        self.url = ""
        # Counters below are only written from the server's event loop thread.
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0
        self.request_count = 0
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._behaviours: dict[tuple[str, str | None], _Behaviour] = {}
        self._accounts: dict[str, OAuthAccount] = {}
        self._access_tokens: dict[str, tuple[OAuthAccount, float]] = {}
        self._operations: dict[str, OAuthAccount] = {}
        self._reply_numbers = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> "FakeGemini":
        """Serve in a background thread; return self once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeGemini is already running")
        ready = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                runner = loop.run_until_complete(self._listen(host, port))
            except BaseException as exc:  # reported to the starting thread
                failures.append(exc)
                ready.set()
                loop.close()
                return
            self._loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._stopping = False
        self._thread = threading.Thread(target=run, name="fake-gemini", daemon=True)
        self._thread.start()
        ready.wait()
        if failures:
            self._thread.join()
            self._thread = None
            raise failures[0]
        return self

    def stop(self) -> None:
        """Stop serving; requests still running (a `timeout` sleep, a slow stream) are cut."""
        if self._thread is None or self._loop is None:
            return
        self._stopping = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def serve_forever(self, host: str = "127.0.0.1", port: int = 8090) -> None:
        """Serve in the current thread until interrupted (the `python -m` entry point)."""

        async def main() -> None:
            runner = await self._listen(host, port)
            print(f"fake gemini listening on {self.url}", flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                self._stopping = True
                await runner.cleanup()

        # Ctrl-C is the way to stop the foreground server, not an error.
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())

    async def _listen(self, host: str, port: int) -> web.AppRunner:
        runner = web.AppRunner(
            app_build(self),
            handle_signals=False,
            access_log=None,
            # Cancelling a handler when its client disconnects is what makes `timeout` sleeps
            # end early and lets the fake count streams abandoned mid-way.
            handler_cancellation=True,
            # Long sleeps (`timeout`) must not hold up stop().
            shutdown_timeout=0.25,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound_port = runner.addresses[0][1]
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{bound_port}"
        return runner

    def __enter__(self) -> "FakeGemini":
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- base URLs, as Rotator's settings take them ---------------------------------------

    @property
    def gemini_url(self) -> str:
        return f"{self.url}/v1beta"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1beta/openai"

    @property
    def code_assist_url(self) -> str:
        return f"{self.url}/v1internal"

    @property
    def oauth_token_url(self) -> str:
        return f"{self.url}/token"

    # -- steering --------------------------------------------------------------------------

    def behave(
        self,
        secret: str,
        behaviour: str,
        *,
        model: str | None = None,
        times: int | None = None,
        **params: Any,
    ) -> None:
        """Make the next `times` requests with `secret` (all, when None) answer with `behaviour`.

        `model` narrows it to one model; a model-specific behaviour wins over a general one
        for the same secret. Rate-limit, quota, not_found, empty, cut_stream and "ok" only
        apply to requests naming a model. For Code Assist, `secret` may be the access token or
        the refresh token that minted it. Setting a behaviour again for the same (secret,
        model) replaces it. Raises ValueError for an unknown behaviour or parameter.
        """
        behaviour_validate(behaviour, params)
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for every request)")
        with self._lock:
            self._behaviours[(secret, model_strip(model))] = _Behaviour(
                behaviour, dict(params), times
            )

    def reset(self) -> None:
        """Forget behaviours, recorded requests, OAuth accounts, tokens and counters."""
        with self._lock:
            self._behaviours.clear()
            self._requests.clear()
            self._accounts.clear()
            self._access_tokens.clear()
            self._operations.clear()
            self._reply_numbers = itertools.count(1)
            self.max_in_flight = self.in_flight
            self.cancelled = 0
            self.request_count = 0

    # -- inspection ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, secret: str) -> list[RecordedRequest]:
        """Return the recorded requests made with `secret`."""
        return [r for r in self.requests if r.secret == secret]

    # -- OAuth / Code Assist accounts ------------------------------------------------------

    def oauth_account_add(
        self,
        *,
        refresh_token: str,
        email: str = "user@example.com",
        project_id: str | None = None,
        onboarded: bool = True,
        tier: str = "free-tier",
        ineligible_reason: str | None = None,
        revoked: bool = False,
        access_token_lifetime_seconds: int = 3600,
        access_token_prefix: str = "ya29.fake-",
    ) -> None:
        """Register (or replace) the account behind `refresh_token`.

        An onboarded account without `project_id` gets a generated one. An account with an
        `ineligible_reason` is never onboarded.
        """
        if onboarded and ineligible_reason is None and project_id is None:
            project_id = project_generate()
        account = OAuthAccount(
            refresh_token=refresh_token,
            email=email,
            project_id=project_id,
            onboarded=onboarded and ineligible_reason is None,
            tier=tier,
            ineligible_reason=ineligible_reason,
            revoked=revoked,
            access_token_lifetime_seconds=access_token_lifetime_seconds,
            access_token_prefix=access_token_prefix,
        )
        with self._lock:
            self._accounts[refresh_token] = account

    def oauth_account_revoke(self, refresh_token: str) -> None:
        """Revoke the refresh token and every access token it minted, as a user would."""
        with self._lock:
            self._accounts[refresh_token].revoked = True

    def oauth_account(self, refresh_token: str) -> OAuthAccount:
        """Return the account behind `refresh_token` (KeyError if unknown)."""
        with self._lock:
            return self._accounts[refresh_token]

    def oauth_refresh_count(self, refresh_token: str) -> int:
        """Return how many times `refresh_token` was exchanged for an access token."""
        with self._lock:
            account = self._accounts.get(refresh_token)
            return account.refresh_count if account else 0

    def oauth_access_tokens(self, refresh_token: str) -> list[str]:
        """Return the access tokens minted for `refresh_token`, oldest first."""
        with self._lock:
            account = self._accounts.get(refresh_token)
            return list(account.access_tokens) if account else []

    # -- used by the handlers (same package) -----------------------------------------------

    def _record_add(self, record: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(record)

    def _reply_number(self) -> int:
        return next(self._reply_numbers)

    def _behaviour_take(self, secrets_: tuple[str, ...], model: str | None) -> _Behaviour | None:
        """Return the behaviour for this request and use up one of its `times`, or None."""
        # Unlocked emptiness check: the common benchmark case pays no lock at all. A behaviour
        # added concurrently with a request may miss that request, which no test can tell.
        if not self._behaviours:
            return None
        with self._lock:
            for secret in secrets_:
                keys = [(secret, model), (secret, None)] if model else [(secret, None)]
                for key in keys:
                    behaviour = self._behaviours.get(key)
                    if behaviour is None or (model is None and behaviour.name in MODEL_SCOPED):
                        continue
                    if behaviour.remaining is not None:
                        behaviour.remaining -= 1
                        if behaviour.remaining <= 0:
                            del self._behaviours[key]
                    return behaviour
        return None

    def _oauth_mint(
        self, refresh_token: str, client_id: str | None
    ) -> tuple[OAuthAccount, str] | None:
        """Return the account and a new access token, or None for an unusable refresh token."""
        with self._lock:
            account = self._accounts.get(refresh_token)
            if account is None or account.revoked:
                return None
            token = f"{account.access_token_prefix}{secrets.token_urlsafe(24)}"
            account.refresh_count += 1
            account.access_tokens.append(token)
            account.client_ids.append(client_id or "")
            expires_at = time.time() + account.access_token_lifetime_seconds
            self._access_tokens[token] = (account, expires_at)
            return account, token

    def _oauth_account_for(self, access_token: str) -> OAuthAccount | None:
        """Return the account an unexpired, unrevoked access token belongs to, else None."""
        with self._lock:
            entry = self._access_tokens.get(access_token)
        if entry is None:
            return None
        account, expires_at = entry
        if account.revoked or time.time() >= expires_at:
            return None
        return account

    def _onboard_start(self, account: OAuthAccount, project: str | None) -> str:
        """Return the name of the pending onboarding operation for `account`."""
        with self._lock:
            if account.pending_operation is None:
                name = f"operations/{secrets.token_hex(8)}"
                account.pending_operation = name
                account.pending_project = project or account.project_id or project_generate()
                self._operations[name] = account
            return account.pending_operation

    def _onboard_finish(self, name: str, account: OAuthAccount) -> str | None:
        """Complete operation `name` if it belongs to `account`; return the project id."""
        with self._lock:
            if self._operations.get(name) is not account:
                return None
            if not account.onboarded:
                account.onboarded = True
                account.project_id = account.pending_project
            return account.project_id

    def _code_assist_used(self, account: OAuthAccount, model: str) -> None:
        with self._lock:
            account.requests_by_model[model] = account.requests_by_model.get(model, 0) + 1

    def _summary(self, *, bodies: bool) -> dict[str, Any]:
        """Return counters and recorded requests as JSON-ready data (for /_fake/requests)."""
        skip = set() if bodies else {"body", "headers"}
        return {
            "request_count": self.request_count,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "cancelled": self.cancelled,
            "requests": [
                {k: v for k, v in vars(r).items() if k not in skip} for r in self.requests
            ],
        }
