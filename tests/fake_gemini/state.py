"""The records the fake keeps: requests it served and the OAuth accounts it knows."""

import secrets
from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class RecordedRequest:
    """One request as the fake saw it; `finished_at` and `status` are set when it ends."""

    started_at: float
    finished_at: float | None = None
    method: str
    path: str
    query: dict[str, str]
    # The upstream credential: x-goog-api-key, ?key=, the Bearer token, or for /token the
    # refresh token.
    secret: str | None
    model: str | None
    dialect: str
    stream: bool
    body: Any
    # 0 until a status line is sent, and for connections the fake dropped on purpose.
    status: int = 0
    # True when the client went away before the response was complete.
    cancelled: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class OAuthAccount:
    """A Google account known to the fake's token endpoint and Code Assist."""

    refresh_token: str
    email: str
    project_id: str | None
    onboarded: bool
    tier: str
    ineligible_reason: str | None
    revoked: bool
    access_token_lifetime_seconds: int
    # Google's tokens start "ya29."; another prefix checks redaction by the secret, not its shape.
    access_token_prefix: str = "ya29.fake-"
    refresh_count: int = 0
    access_tokens: list[str] = field(default_factory=list)
    client_ids: list[str] = field(default_factory=list)
    pending_operation: str | None = None
    pending_project: str | None = None
    # Successful Code Assist generations per model, for retrieveUserQuota.
    requests_by_model: dict[str, int] = field(default_factory=dict)


def project_generate() -> str:
    """Return a new Code Assist project id, as Google assigns free-tier users one."""
    return f"fake-project-{secrets.token_hex(4)}"
