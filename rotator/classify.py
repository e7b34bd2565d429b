"""What an upstream answer means for the credential that got it: pure, status and body in.

The rules follow docs/gemini-protocol.md ("Classification"), which mirrors Google's own
client (gemini-cli, packages/core/src/utils/googleQuotaErrors.ts). Nothing here raises on a
strange body: Google, proxies in between and the OpenAI-compatible endpoint all send odd ones.
"""

import enum
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from common.redact import message_clean


class Outcome(enum.StrEnum):
    OK = "ok"
    # Short-term limit: cool this (credential, model) down for retry_delay_seconds.
    RATE_LIMITED = "rate_limited"
    # Daily quota of (credential's project, model): out until the next daily reset, or for
    # reset_after_seconds when Google stated it (Code Assist).
    QUOTA_EXHAUSTED = "quota_exhausted"
    # The credential is broken for every model.
    INVALID = "invalid"
    # Google suspended the account (Terms of Service): broken for good, no check restores it.
    SUSPENDED = "suspended"
    # Unavailable for this model only.
    MODEL_NOT_FOUND = "model_not_found"
    # A 200 that carries nothing: retry elsewhere, count as a failure, no mark.
    EMPTY = "empty"
    # 5xx, timeout, connection error: retry elsewhere, no mark (the pool's breaker counts).
    TRANSIENT = "transient"
    # 401 on an OAuth access token: refresh once and retry the same credential.
    UNAUTHENTICATED = "unauthenticated"
    # The client's request is wrong: pass it through, no retry, no mark.
    CLIENT_ERROR = "client_error"


_RETRY_ELSEWHERE = frozenset(
    {
        Outcome.RATE_LIMITED,
        Outcome.QUOTA_EXHAUSTED,
        Outcome.INVALID,
        Outcome.SUSPENDED,
        Outcome.MODEL_NOT_FOUND,
        Outcome.EMPTY,
        Outcome.TRANSIENT,
    }
)
_MARKS_CREDENTIAL = frozenset(
    {
        Outcome.RATE_LIMITED,
        Outcome.QUOTA_EXHAUSTED,
        Outcome.INVALID,
        Outcome.SUSPENDED,
        Outcome.MODEL_NOT_FOUND,
    }
)
# Phrases of Google's permanent refusals: an account disabled for its Terms of Service.
_SUSPENSION_PHRASES = ("terms of service", "account has been disabled", "account disabled")


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    # Upstream's own message, redacted and cleaned (common.redact.message_clean).
    message: str = ""
    # From RetryInfo.retryDelay or "Please retry in 34.07s"; None when Google gave none.
    retry_delay_seconds: float | None = None
    # Code Assist "quota will reset after 19h14m47s" or ErrorInfo metadata quotaResetDelay.
    reset_after_seconds: float | None = None
    # The QuotaFailure quotaId that decided the outcome, else the first one.
    quota_id: str = ""
    # Google's status string, e.g. "RESOURCE_EXHAUSTED".
    status: str = ""
    # ErrorInfo reason ("API_KEY_INVALID", "RATE_LIMIT_EXCEEDED") or OAuth error ("invalid_grant").
    reason: str = ""
    # The QuotaFailure quotaValue of `quota_id` (the limit Google enforces, e.g. 250 requests a
    # day); None when Google left it out, as it does in some bodies.
    quota_value: int | None = None

    @property
    def retry_elsewhere(self) -> bool:
        return self.outcome in _RETRY_ELSEWHERE

    @property
    def marks_credential(self) -> bool:
        return self.outcome in _MARKS_CREDENTIAL


# gemini-cli's MAX_RETRYABLE_DELAY_SECONDS: a 429 asking for a longer wait than this is
# treated as an exhausted quota rather than a short-term limit.
_SHORT_TERM_MAX_SECONDS = 300.0

# Nested errors (an error serialised inside another error's message) are unwrapped this deep.
_ERROR_NESTING_MAX = 4

# Upstream status strings, reasons and quota ids are short enums; anything longer is junk.
_LABEL_MAX_CHARS = 120

_DURATION_UNIT_SECONDS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}
# "ms" before "m" so that "900ms" is not read as 900 minutes and an "s".
_DURATION_PART = r"(\d+(?:\.\d+)?|\.\d+)(ms|us|µs|ns|h|m|s)"
_DURATION = re.compile(rf"(?:{_DURATION_PART})+")
_DURATION_PARTS = re.compile(_DURATION_PART)
_PLAIN_SECONDS = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_DURATION_IN_TEXT = r"((?:(?:\d+(?:\.\d+)?)(?:ms|us|µs|ns|h|m|s))+)"
_RETRY_IN = re.compile(rf"retry in\s+{_DURATION_IN_TEXT}", re.IGNORECASE)
_RESET_AFTER = re.compile(rf"resets?\s+(?:after|in)\s+{_DURATION_IN_TEXT}", re.IGNORECASE)
# "limit: 0" means the model is not available on this tier at all (not "limit: 0.5", "limit: 05").
_LIMIT_ZERO = re.compile(r"\blimit:\s*0(?!\d|\.\d)", re.IGNORECASE)

_API_KEY_INVALID_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_API_KEY_INVALID_MESSAGES = ("api key not valid", "api key not found", "api key expired")
# Code Assist's account-wide quota; INSUFFICIENT_G1_CREDITS_BALANCE is terminal for gemini-cli too.
_QUOTA_EXHAUSTED_REASONS = frozenset({"QUOTA_EXHAUSTED", "INSUFFICIENT_G1_CREDITS_BALANCE"})

# finishReasons that are an answer even without content: a block is what the user must see,
# and MAX_TOKENS spent on thinking repeats on any credential (the client's budget is too small).
_ANSWER_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "RECITATION",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
        "MAX_TOKENS",
    }
)
_OPENAI_ANSWER_FINISH_REASONS = frozenset({"content_filter", "length"})
_CONTENT_PART_KEYS = (
    "functionCall",
    "inlineData",
    "fileData",
    "executableCode",
    "codeExecutionResult",
)
_OPENAI_CONTENT_KEYS = ("tool_calls", "function_call", "audio", "refusal")

_OAUTH_SIGN_IN_AGAIN_ERRORS = frozenset({"invalid_grant", "unauthorized_client"})


@dataclass(frozen=True, slots=True)
class _ErrorFacts:
    """What a Google error body says, unredacted; empty fields when it does not say."""

    message: str = ""
    status: str = ""
    reasons: tuple[str, ...] = ()
    quota_ids: tuple[str, ...] = ()
    # quotaValue per quotaId, for the violations that state one.
    quota_values: Mapping[str, int] | None = None
    # ErrorInfo metadata quota_limit, which names the quota like a quotaId does.
    quota_limits: tuple[str, ...] = ()
    retry_info_seconds: float | None = None
    quota_reset_delay_seconds: float | None = None


def duration_parse(value: object) -> float | None:
    """Returns the seconds in a Google duration ("34.07s", "900ms", "1.5m", "19h14m47s", a
    bare "60"), a number of seconds, or a protobuf {"seconds", "nanos"} mapping; None when
    `value` is none of these or is negative or not finite."""
    seconds: float | None = None
    if isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        seconds = sum(
            float(number) * _DURATION_UNIT_SECONDS[unit]
            for number, unit in _DURATION_PARTS.findall(value)
        )
    elif isinstance(value, Mapping):
        whole, nanos = _number(value.get("seconds", 0)), _number(value.get("nanos", 0))
        if whole is not None and nanos is not None:
            seconds = whole + nanos / 1e9
    else:
        seconds = _number(value)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _number(value: object) -> float | None:
    """A JSON number or a plain decimal string as a float; None for anything else."""
    if isinstance(value, str) and _PLAIN_SECONDS.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # JSON integers have no size limit.
            return None
    return None


def upstream_answer_classify(
    *, status: int, body: bytes | str | None, secrets: Iterable[str] = (), api_key: bool = False
) -> Verdict:
    """Returns the Verdict for an HTTP answer from generativelanguage (native, or its
    OpenAI-compatible endpoint whose error bodies have a JSON array root) or Code Assist.

    Any 2xx is OK without reading the body (that is `success_body_classify`'s job). The
    message, status, reason and quota id are redacted with `secrets` and the credential
    patterns of common.redact. Never raises, whatever the body.
    """
    if 200 <= status <= 299:
        return Verdict(outcome=Outcome.OK)
    secrets = tuple(secrets)
    text = _body_text(body)
    facts = _error_facts(text)
    retry_delay_seconds = facts.retry_info_seconds
    if retry_delay_seconds is None:
        retry_delay_seconds = _duration_in(_RETRY_IN, facts.message)
    reset_after_seconds: float | None = None
    quota_id = facts.quota_ids[0] if facts.quota_ids else ""

    if status == 429:
        reset_after_seconds = facts.quota_reset_delay_seconds
        if reset_after_seconds is None:
            reset_after_seconds = _duration_in(_RESET_AFTER, facts.message)
        outcome, quota_id = _quota_outcome(
            facts,
            retry_delay_seconds=retry_delay_seconds,
            reset_after_seconds=reset_after_seconds,
        )
        if outcome is not Outcome.QUOTA_EXHAUSTED:
            reset_after_seconds = None
    elif status == 401 and api_key:
        # For an API key a 401 means the key itself is refused; for an OAuth access token it
        # means "refresh me" (UNAUTHENTICATED).
        outcome = Outcome.INVALID
    else:
        outcome = _status_outcome(status, facts)

    return Verdict(
        outcome=outcome,
        # A Google error without a message still says something: show its body.
        message=message_clean(facts.message or text, secrets=secrets),
        retry_delay_seconds=retry_delay_seconds,
        reset_after_seconds=reset_after_seconds,
        quota_id=_label_clean(quota_id, secrets=secrets),
        status=_label_clean(facts.status, secrets=secrets),
        reason=_label_clean(facts.reasons[0] if facts.reasons else "", secrets=secrets),
        quota_value=(facts.quota_values or {}).get(quota_id),
    )


def success_body_classify(*, body: Mapping[str, Any]) -> Verdict:
    """Returns OK when a parsed 200 body (a native or Code Assist GenerateContentResponse, or
    an OpenAI chat.completion) carries an answer, EMPTY when it carries nothing.

    A blocked prompt or a candidate stopped for safety, recitation or max tokens is an answer
    even without content: another credential would give the same. Never raises.
    """
    if not isinstance(body, Mapping):
        return _empty("the body is not an object")
    if "choices" in body:
        return _openai_body_classify(body["choices"])
    response = body.get("response")
    if "candidates" not in body and isinstance(response, Mapping):
        body = response  # Code Assist wraps the ordinary response.
    feedback = body.get("promptFeedback")
    if isinstance(feedback, Mapping) and feedback.get("blockReason"):
        return Verdict(outcome=Outcome.OK)
    candidates = body.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        return _empty("no candidates")
    finish_reasons: list[str] = []
    for candidate in candidates:
        if not isinstance(candidate, Mapping):
            continue
        finish_reason = candidate.get("finishReason")
        if isinstance(finish_reason, str):
            if finish_reason in _ANSWER_FINISH_REASONS:
                return Verdict(outcome=Outcome.OK)
            finish_reasons.append(finish_reason)
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, Mapping) else None
        if isinstance(parts, list) and any(_part_has_content(part) for part in parts):
            return Verdict(outcome=Outcome.OK)
    if finish_reasons:
        return _empty(f"no content, finishReason {', '.join(finish_reasons)}")
    return _empty("no content")


def stream_event_classify(event: tuple[bytes, Any]) -> Verdict:
    """Returns OK when one decoded stream event (payload, document) carries content, by the
    same rule as a whole answer: a stream is held until this says OK, and a stream that never
    does is EMPTY, exactly like a non-streamed answer without content."""
    document = event[1]
    if not isinstance(document, Mapping):
        return _empty("the event is not an object")
    return success_body_classify(body=document)


def oauth_refresh_classify(
    *, status: int, body: bytes | str | None, secrets: Iterable[str] = ()
) -> Verdict:
    """Returns the Verdict for the OAuth token endpoint's answer to a refresh: OK for 2xx;
    INVALID ("sign in again") for a revoked or foreign refresh token; TRANSIENT for 5xx, 408
    and 429 (the endpoint's own trouble or limit, not the account's); INVALID with Google's
    description for anything else. Never raises."""
    if 200 <= status <= 299:
        return Verdict(outcome=Outcome.OK)
    secrets = tuple(secrets)
    text = _body_text(body)
    document = _json_load(text)
    error: object = document.get("error") if isinstance(document, Mapping) else None
    description: object = (
        document.get("error_description") if isinstance(document, Mapping) else None
    )
    if isinstance(error, Mapping):
        # Some Google endpoints answer in the API dialect: {"error": {"code", "message", ...}}.
        description, error = error.get("message"), error.get("status")
    error_code = error if isinstance(error, str) else ""
    detail = description if isinstance(description, str) and description else error_code or text

    if status >= 500 or status in (408, 429):
        outcome, message = Outcome.TRANSIENT, detail
    elif status in (400, 401) and error_code in _OAUTH_SIGN_IN_AGAIN_ERRORS:
        outcome = Outcome.INVALID
        message = _with_detail("refresh token revoked or expired: sign in again", description)
    elif status in (400, 401) and error_code == "invalid_client":
        # The client id or secret is wrong: signing in again would not help.
        outcome = Outcome.INVALID
        message = _with_detail("OAuth client rejected: check its id and secret", description)
    else:
        outcome, message = Outcome.INVALID, detail
    return Verdict(
        outcome=outcome,
        message=message_clean(message, secrets=secrets),
        reason=_label_clean(error_code, secrets=secrets),
    )


def transport_error_verdict(*, description: str, secrets: Iterable[str] = ()) -> Verdict:
    """Returns a TRANSIENT Verdict for a timeout or connection error, its message the
    redacted `description` (which may hold a URL with `key=` in it)."""
    return Verdict(outcome=Outcome.TRANSIENT, message=message_clean(description, secrets=secrets))


def _quota_outcome(
    facts: _ErrorFacts, *, retry_delay_seconds: float | None, reset_after_seconds: float | None
) -> tuple[Outcome, str]:
    """The outcome of a 429 and the quota id that decided it. Never INVALID."""
    first_id = facts.quota_ids[0] if facts.quota_ids else ""
    for quota_id in facts.quota_ids:
        if "PerDay" in quota_id or "Daily" in quota_id:
            return Outcome.QUOTA_EXHAUSTED, quota_id
    if _QUOTA_EXHAUSTED_REASONS & set(facts.reasons) or _LIMIT_ZERO.search(facts.message):
        return Outcome.QUOTA_EXHAUSTED, first_id
    # Code Assist states when an exhausted quota comes back ("reset after 19h14m47s").
    if reset_after_seconds is not None and reset_after_seconds > _SHORT_TERM_MAX_SECONDS:
        return Outcome.QUOTA_EXHAUSTED, first_id
    for quota_id in (*facts.quota_ids, *facts.quota_limits):
        if "PerMinute" in quota_id:
            return Outcome.RATE_LIMITED, quota_id if quota_id in facts.quota_ids else first_id
    # RATE_LIMIT_EXCEEDED included: gemini-cli also gives up waiting beyond five minutes. A
    # daily 429 may carry a short delay too, which is why the quota id is checked first.
    if retry_delay_seconds is not None and retry_delay_seconds > _SHORT_TERM_MAX_SECONDS:
        return Outcome.QUOTA_EXHAUSTED, first_id
    return Outcome.RATE_LIMITED, first_id


def _status_outcome(status: int, facts: _ErrorFacts) -> Outcome:
    """The outcome of any non-2xx answer but a 429."""
    message = facts.message.lower()
    if status == 400:
        if _API_KEY_INVALID_REASONS & set(facts.reasons) or any(
            phrase in message for phrase in _API_KEY_INVALID_MESSAGES
        ):
            return Outcome.INVALID
        # Free tier not available in the region, billing required: the key cannot serve.
        if facts.status == "FAILED_PRECONDITION":
            return Outcome.INVALID
        return Outcome.CLIENT_ERROR
    if status == 401:
        # Whether that means "refresh the access token" or "broken key" is the caller's call.
        return Outcome.UNAUTHENTICATED
    if status == 403:
        # "You do not have permission to access the File x or it may not exist", and the same
        # for cached contents, concern a resource the client named, not the credential: marking
        # the credential invalid would let any client disable the whole pool.
        if "may not exist" in message or "cachedcontent" in message:
            return Outcome.CLIENT_ERROR
        if any(phrase in message for phrase in _SUSPENSION_PHRASES):
            return Outcome.SUSPENDED
        return Outcome.INVALID
    if status == 404:
        return Outcome.MODEL_NOT_FOUND
    if status == 408:
        return Outcome.TRANSIENT
    if 400 <= status <= 499:
        return Outcome.CLIENT_ERROR
    # 5xx, and statuses Google never sends (1xx, 3xx, nonsense): try elsewhere, mark nothing.
    return Outcome.TRANSIENT


def _error_facts(text: str) -> _ErrorFacts:
    error = _error_object(_json_load(text))
    if error is None:
        # A proxy's or a load balancer's own text: the only message there is.
        return _ErrorFacts(message=text)
    reasons: list[str] = []
    quota_ids: list[str] = []
    quota_values: dict[str, int] = {}
    quota_limits: list[str] = []
    retry_info_seconds: float | None = None
    quota_reset_delay_seconds: float | None = None
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping):
            continue
        kind = _detail_kind(detail)
        if kind == "ErrorInfo":
            reason = detail.get("reason")
            if isinstance(reason, str) and reason:
                reasons.append(reason)
            metadata = detail.get("metadata")
            if isinstance(metadata, Mapping):
                delay = duration_parse(metadata.get("quotaResetDelay"))
                if quota_reset_delay_seconds is None:
                    quota_reset_delay_seconds = delay
                quota_limit = metadata.get("quota_limit")
                if isinstance(quota_limit, str):
                    quota_limits.append(quota_limit)
        elif kind == "QuotaFailure":
            violations = detail.get("violations")
            for violation in violations if isinstance(violations, list) else ():
                quota_id = violation.get("quotaId") if isinstance(violation, Mapping) else None
                if isinstance(quota_id, str) and quota_id:
                    quota_ids.append(quota_id)
                    value = _quota_value(violation.get("quotaValue"))
                    if value is not None:
                        quota_values.setdefault(quota_id, value)
        elif kind == "RetryInfo" and retry_info_seconds is None:
            retry_info_seconds = duration_parse(detail.get("retryDelay"))
    message, status = error.get("message"), error.get("status")
    return _ErrorFacts(
        message=message if isinstance(message, str) else "",
        status=status if isinstance(status, str) else "",
        reasons=tuple(reasons),
        quota_ids=tuple(quota_ids),
        quota_values=quota_values,
        quota_limits=tuple(quota_limits),
        retry_info_seconds=retry_info_seconds,
        quota_reset_delay_seconds=quota_reset_delay_seconds,
    )


def _quota_value(value: object) -> int | None:
    """A quotaValue (an int64, which proto3 JSON writes as a decimal string) as a positive
    int; None for anything else, 0 included (that is the "limit: 0" case, not a limit)."""
    number = _number(value)
    if number is None or not number.is_integer() or number <= 0:
        return None
    return int(number)


def _error_object(document: object) -> Mapping[str, Any] | None:
    """The innermost Google error object ({"code", "message", "status", "details"}) in a
    parsed body, or None when the body is not a Google error."""
    found: Mapping[str, Any] | None = None
    for _ in range(_ERROR_NESTING_MAX):
        # The OpenAI-compatible endpoint wraps its errors in an array.
        if isinstance(document, list):
            document = document[0] if document else None
        if not isinstance(document, Mapping):
            break
        error = document.get("error")
        if not isinstance(error, Mapping):
            break
        found = error
        # Proxies, and sometimes Google itself, serialise the real error into the message.
        message = error.get("message")
        if not isinstance(message, str) or not message.lstrip().startswith(("{", "[")):
            break
        document = _json_load(message)
    return found


def _detail_kind(detail: Mapping[Any, Any]) -> str:
    """The detail's type without its prefix ("ErrorInfo", "RetryInfo"); "" if untyped."""
    for key, value in detail.items():
        # gemini-cli has seen " @type" with stray whitespace (from SSE parsing).
        if isinstance(key, str) and key.strip() == "@type" and isinstance(value, str):
            return value.strip().rsplit(".", 1)[-1]
    return ""


def _part_has_content(part: object) -> bool:
    if not isinstance(part, Mapping):
        return False
    if any(part.get(key) for key in _CONTENT_PART_KEYS):
        return True
    # Thought summaries are not the answer: a candidate with only thoughts said nothing.
    text = part.get("text")
    return isinstance(text, str) and bool(text) and part.get("thought") is not True


def _openai_body_classify(choices: object) -> Verdict:
    if not isinstance(choices, list) or not choices:
        return _empty("no choices")
    finish_reasons: list[str] = []
    for choice in choices:
        if not isinstance(choice, Mapping):
            continue
        finish_reason = choice.get("finish_reason")
        if isinstance(finish_reason, str):
            if finish_reason in _OPENAI_ANSWER_FINISH_REASONS:
                return Verdict(outcome=Outcome.OK)
            finish_reasons.append(finish_reason)
        message = choice.get("message")
        if not isinstance(message, Mapping):
            message = choice.get("delta")
        if not isinstance(message, Mapping):
            continue
        if message.get("content") or any(message.get(key) for key in _OPENAI_CONTENT_KEYS):
            return Verdict(outcome=Outcome.OK)
    if finish_reasons:
        return _empty(f"no content, finish_reason {', '.join(finish_reasons)}")
    return _empty("no content")


def _empty(why: str) -> Verdict:
    return Verdict(outcome=Outcome.EMPTY, message=message_clean(f"empty answer: {why}"))


def _body_text(body: object) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body).decode("utf-8", errors="replace")
    return ""


def _json_load(text: str) -> object:
    """The parsed JSON, or None for text that is not JSON (or nests deeper than Python's
    recursion limit, or holds an integer too long to convert)."""
    try:
        document: object = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return document


def _duration_in(pattern: re.Pattern[str], text: str) -> float | None:
    match = pattern.search(text)
    return duration_parse(match.group(1)) if match else None


def _with_detail(message: str, detail: object) -> str:
    return f"{message} ({detail})" if isinstance(detail, str) and detail else message


def _label_clean(label: str, *, secrets: Iterable[str]) -> str:
    return message_clean(label, secrets=secrets, max_chars=_LABEL_MAX_CHARS)
