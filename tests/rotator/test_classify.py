"""rotator.classify: every row of docs/gemini-protocol.md's classification, with real bodies."""

import json
from dataclasses import dataclass
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator.classify import (
    Outcome,
    Verdict,
    duration_parse,
    oauth_refresh_classify,
    success_body_classify,
    transport_error_verdict,
    upstream_answer_classify,
)

# Shaped like the real thing, made up for these tests.
API_KEY = "AIzaSyD3moKeyForTestsOnly_abcdefghix9Qk"  # AIza + 35

PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
TOKENS_PER_DAY = "GenerateContentInputTokensPerModelPerDay-FreeTier"
QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
CODE_ASSIST = "cloudcode-pa.googleapis.com"
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. "
    "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)


# Builders for Google-dialect error bodies, as docs/gemini-protocol.md shows them.


def quota_failure(*quota_ids: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": QUOTA_METRIC,
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                "quotaValue": "250",
            }
            for quota_id in quota_ids
        ],
    }


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def error_info(reason: str, *, domain: str = "googleapis.com", **metadata: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": {"service": "generativelanguage.googleapis.com", **metadata},
    }


def help_links() -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.Help",
        "links": [
            {
                "description": "Learn more about Gemini API quotas",
                "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
            }
        ],
    }


def google_error(
    code: int,
    status: str,
    message: str,
    *details: dict[str, Any],
    array_root: bool = False,
) -> bytes:
    """An error body; `array_root` gives the OpenAI-compatible endpoint's [{"error": ...}]."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    document: Any = [{"error": error}] if array_root else {"error": error}
    return json.dumps(document, indent=2).encode()


def exhausted(*details: dict[str, Any], message: str = QUOTA_MESSAGE, **kwargs: Any) -> bytes:
    return google_error(429, "RESOURCE_EXHAUSTED", message, *details, **kwargs)


def permission_denied(message: str, *details: dict[str, Any]) -> bytes:
    return google_error(403, "PERMISSION_DENIED", message, *details)


@dataclass(frozen=True)
class Row:
    status: int
    body: bytes | str | None
    outcome: Outcome
    retry_delay_seconds: float | None = None
    reset_after_seconds: float | None = None
    quota_id: str = ""


ROWS = {
    # 429: daily quota.
    "a per-day quota is exhausted until the reset": Row(
        429,
        exhausted(quota_failure(PER_DAY), help_links(), retry_info("26s")),
        Outcome.QUOTA_EXHAUSTED,
        retry_delay_seconds=26.0,
        quota_id=PER_DAY,
    ),
    "a daily token quota is exhausted even beside a per-minute one": Row(
        429,
        exhausted(quota_failure(PER_MINUTE, TOKENS_PER_DAY), retry_info("3s")),
        Outcome.QUOTA_EXHAUSTED,
        retry_delay_seconds=3.0,
        quota_id=TOKENS_PER_DAY,
    ),
    "a quota id saying Daily is exhausted": Row(
        429,
        exhausted(quota_failure("DailyRequestsPerProject")),
        Outcome.QUOTA_EXHAUSTED,
        quota_id="DailyRequestsPerProject",
    ),
    "a per-day quota with a huge retry delay is exhausted": Row(
        429,
        exhausted(quota_failure(PER_DAY), retry_info("65205s")),
        Outcome.QUOTA_EXHAUSTED,
        retry_delay_seconds=65205.0,
        quota_id=PER_DAY,
    ),
    "limit 0 means the model is not on this tier": Row(
        429,
        exhausted(
            quota_failure(PER_MINUTE),
            retry_info("59s"),
            message=(
                "You exceeded your current quota.\n* Quota exceeded for metric: "
                "generativelanguage.googleapis.com/generate_content_free_tier_requests, "
                "limit: 0, model: gemini-2.5-pro\nPlease retry in 59.906331105s."
            ),
        ),
        Outcome.QUOTA_EXHAUSTED,
        retry_delay_seconds=59.0,
        quota_id=PER_MINUTE,
    ),
    "a per-day quota on the OpenAI-compatible endpoint is exhausted": Row(
        429,
        exhausted(quota_failure(PER_DAY), retry_info("26s"), array_root=True),
        Outcome.QUOTA_EXHAUSTED,
        retry_delay_seconds=26.0,
        quota_id=PER_DAY,
    ),
    # 429: Code Assist.
    "a Code Assist exhausted quota resets when its metadata says": Row(
        429,
        exhausted(
            error_info(
                "QUOTA_EXHAUSTED",
                domain=CODE_ASSIST,
                model="gemini-2.5-pro",
                quotaResetDelay="19h14m47s",
                quotaResetTimeStamp="2026-03-05T07:20:42Z",
            ),
            retry_info("69287s"),
            message="You have exhausted your capacity on this model. "
            "Your quota will reset after 19h14m47s.",
        ),
        Outcome.QUOTA_EXHAUSTED,
        retry_delay_seconds=69287.0,
        reset_after_seconds=69287.0,
    ),
    "a Code Assist exhausted quota resets when its message says": Row(
        429,
        exhausted(
            error_info("QUOTA_EXHAUSTED", domain=CODE_ASSIST),
            message="You have exhausted your capacity on this model. "
            "Your quota will reset after 1h0m30.5s.",
        ),
        Outcome.QUOTA_EXHAUSTED,
        reset_after_seconds=3630.5,
    ),
    "a Code Assist message stating a far reset is exhausted without details": Row(
        429,
        exhausted(message="Your quota will reset after 135h10m5s."),
        Outcome.QUOTA_EXHAUSTED,
        reset_after_seconds=486605.0,
    ),
    "a Code Assist rate limit is short-term": Row(
        429,
        exhausted(error_info("RATE_LIMIT_EXCEEDED", domain=CODE_ASSIST), retry_info("900ms")),
        Outcome.RATE_LIMITED,
        retry_delay_seconds=0.9,
    ),
    "a Code Assist rate limit without a delay leaves the default to the caller": Row(
        429,
        exhausted(error_info("RATE_LIMIT_EXCEEDED", domain=CODE_ASSIST)),
        Outcome.RATE_LIMITED,
    ),
    # 429: short-term.
    "a per-minute quota cools down for the retry delay": Row(
        429,
        exhausted(quota_failure(PER_MINUTE), help_links(), retry_info("34.07s")),
        Outcome.RATE_LIMITED,
        retry_delay_seconds=34.07,
        quota_id=PER_MINUTE,
    ),
    "a per-minute quota without a delay leaves the default to the caller": Row(
        429,
        exhausted(quota_failure(PER_MINUTE)),
        Outcome.RATE_LIMITED,
        quota_id=PER_MINUTE,
    ),
    "a retry delay of five minutes or less is short-term": Row(
        429,
        exhausted(help_links(), retry_info("300s")),
        Outcome.RATE_LIMITED,
        retry_delay_seconds=300.0,
    ),
    "a retry delay over five minutes without a per-minute quota is exhausted": Row(
        429,
        exhausted(retry_info("301s")),
        Outcome.QUOTA_EXHAUSTED,
        retry_delay_seconds=301.0,
    ),
    "a 429 without details is a short-term limit of unknown length": Row(
        429,
        exhausted(message="Resource has been exhausted (e.g. check quota)."),
        Outcome.RATE_LIMITED,
    ),
    "a 429 with only a help link is a short-term limit": Row(
        429, exhausted(help_links()), Outcome.RATE_LIMITED
    ),
    "a 429 without details takes its delay from the message": Row(
        429,
        exhausted(message="Quota exceeded. Please retry in 12.5s."),
        Outcome.RATE_LIMITED,
        retry_delay_seconds=12.5,
    ),
    "a 429 that is not JSON is a short-term limit": Row(
        429, b"Too Many Requests", Outcome.RATE_LIMITED
    ),
    "a 429 that is not JSON takes its delay from the text": Row(
        429,
        b"Too Many Requests. Please retry in 7s.",
        Outcome.RATE_LIMITED,
        retry_delay_seconds=7.0,
    ),
    # Broken credentials.
    "an invalid key is a 400 and invalid": Row(
        400,
        google_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            error_info("API_KEY_INVALID"),
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": "API key not valid. Please pass a valid API key.",
            },
        ),
        Outcome.INVALID,
    ),
    "an invalid key message without details is invalid": Row(
        400,
        google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
        Outcome.INVALID,
    ),
    "an invalid key on the OpenAI-compatible endpoint is invalid": Row(
        400,
        google_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            error_info("API_KEY_INVALID"),
            array_root=True,
        ),
        Outcome.INVALID,
    ),
    "a failed precondition such as an unsupported region is invalid": Row(
        400,
        google_error(400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
        Outcome.INVALID,
    ),
    "a key reported as leaked is invalid": Row(
        403,
        permission_denied("Your API key was reported as leaked. Please use another API key."),
        Outcome.INVALID,
    ),
    "a suspended consumer is invalid": Row(
        403,
        permission_denied(
            f"Permission denied: Consumer 'api_key:{API_KEY}' has been suspended.",
            error_info("CONSUMER_SUSPENDED", consumer=f"projects/api_key:{API_KEY}"),
        ),
        Outcome.INVALID,
    ),
    "a key blocked for the service is invalid": Row(
        403,
        permission_denied(
            "Requests to this API generativelanguage.googleapis.com method "
            "google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent are blocked.",
            error_info("API_KEY_SERVICE_BLOCKED"),
        ),
        Outcome.INVALID,
    ),
    "a disabled service is invalid": Row(
        403,
        permission_denied(
            "Generative Language API has not been used in project 123456 before or it is "
            "disabled. Enable it by visiting https://console.developers.google.com/ then retry.",
            error_info("SERVICE_DISABLED"),
        ),
        Outcome.INVALID,
    ),
    "a project denied access is invalid": Row(
        403,
        permission_denied("Your project has been denied access. Please contact support."),
        Outcome.INVALID,
    ),
    "an unregistered caller is invalid": Row(
        403,
        permission_denied(
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API."
        ),
        Outcome.INVALID,
    ),
    "an account disabled for the Terms of Service is suspended": Row(
        403,
        permission_denied(
            "This account has been disabled for violating the Terms of Service.",
            error_info("TOS_VIOLATION", domain=CODE_ASSIST),
        ),
        Outcome.SUSPENDED,
    ),
    "a Code Assist account needing validation is invalid": Row(
        403,
        permission_denied(
            "Verify your account to continue.",
            error_info("VALIDATION_REQUIRED", domain=CODE_ASSIST),
        ),
        Outcome.INVALID,
    ),
    "a 403 about a file the client named is the client's error": Row(
        403,
        permission_denied(
            "You do not have permission to access the File abc123 or it may not exist."
        ),
        Outcome.CLIENT_ERROR,
    ),
    "a 403 about cached content the client named is the client's error": Row(
        403,
        permission_denied("CachedContent not found (or permission denied)"),
        Outcome.CLIENT_ERROR,
    ),
    # Everything else.
    "a 401 asks for a refreshed access token": Row(
        401,
        google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        ),
        Outcome.UNAUTHENTICATED,
    ),
    "a 404 concerns this model only": Row(
        404,
        google_error(
            404,
            "NOT_FOUND",
            "models/gemini-9-ultra is not found for API version v1beta, or is not supported "
            "for generateContent.",
        ),
        Outcome.MODEL_NOT_FOUND,
    ),
    "a 500 is transient": Row(
        500,
        google_error(500, "INTERNAL", "An internal error has occurred."),
        Outcome.TRANSIENT,
    ),
    "a 502 html page is transient": Row(
        502, b"<html><body>502 Bad Gateway</body></html>", Outcome.TRANSIENT
    ),
    "a 503 is transient": Row(
        503,
        google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        Outcome.TRANSIENT,
    ),
    "a 504 without a body is transient": Row(504, None, Outcome.TRANSIENT),
    "a 408 is transient": Row(408, b"", Outcome.TRANSIENT),
    "a plain 400 is the client's error": Row(
        400,
        google_error(
            400,
            "INVALID_ARGUMENT",
            'Invalid JSON payload received. Unknown name "foo": Cannot find field.',
        ),
        Outcome.CLIENT_ERROR,
    ),
    "a 413 is the client's error": Row(413, b"Request Entity Too Large", Outcome.CLIENT_ERROR),
    "a 409 is the client's error": Row(
        409, google_error(409, "ALREADY_EXISTS", "Already exists."), Outcome.CLIENT_ERROR
    ),
    "a 200 is OK": Row(200, b'{"candidates": []}', Outcome.OK),
    "a 204 is OK": Row(204, None, Outcome.OK),
}


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_each_upstream_answer_gets_the_outcome_the_protocol_doc_gives(row: Row) -> None:
    verdict = upstream_answer_classify(status=row.status, body=row.body)

    assert verdict.outcome is row.outcome
    assert verdict.retry_delay_seconds == pytest.approx(row.retry_delay_seconds)
    assert verdict.reset_after_seconds == pytest.approx(row.reset_after_seconds)
    assert verdict.quota_id == row.quota_id


def test_a_string_body_is_read_like_bytes() -> None:
    body = exhausted(quota_failure(PER_DAY)).decode()

    assert upstream_answer_classify(status=429, body=body).outcome is Outcome.QUOTA_EXHAUSTED


def test_the_verdict_keeps_googles_status_reason_and_message() -> None:
    verdict = upstream_answer_classify(
        status=400,
        body=google_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            error_info("API_KEY_INVALID"),
            array_root=True,
        ),
    )

    assert verdict == Verdict(
        outcome=Outcome.INVALID,
        message="API key not valid. Please pass a valid API key.",
        status="INVALID_ARGUMENT",
        reason="API_KEY_INVALID",
    )


def test_a_suspended_consumer_message_does_not_leak_the_key() -> None:
    body = ROWS["a suspended consumer is invalid"].body

    verdict = upstream_answer_classify(status=403, body=body)

    assert API_KEY not in verdict.message
    assert verdict.message == "Permission denied: Consumer 'api_key:AIza…x9Qk' has been suspended."


def test_a_given_secret_in_a_message_is_masked() -> None:
    secret = "oauth-account-secret-3141"
    body = google_error(500, "INTERNAL", f"token {secret} rejected by backend")

    verdict = upstream_answer_classify(status=500, body=body, secrets=[secret])

    assert verdict.message == "token oaut…3141 rejected by backend"


def test_an_error_serialised_inside_a_message_is_unwrapped() -> None:
    inner = json.loads(exhausted(quota_failure(PER_DAY)))
    body = json.dumps({"error": {"code": 429, "message": json.dumps(inner), "status": "Too Many"}})

    verdict = upstream_answer_classify(status=429, body=body)

    assert verdict.outcome is Outcome.QUOTA_EXHAUSTED
    assert verdict.quota_id == PER_DAY
    assert verdict.message == QUOTA_MESSAGE


def test_a_body_that_is_not_a_google_error_becomes_the_message() -> None:
    verdict = upstream_answer_classify(status=502, body=b"<html>\n  Bad\xffGateway\n</html>")

    assert verdict.message == "<html> Bad\ufffdGateway </html>"


def test_a_huge_body_gives_a_message_of_at_most_500_characters() -> None:
    verdict = upstream_answer_classify(status=503, body=b"overloaded " * 1_000_000)

    assert verdict.outcome is Outcome.TRANSIENT
    assert len(verdict.message) == 500


def test_retrying_elsewhere_and_marking_follow_the_outcome() -> None:
    elsewhere = {outcome for outcome in Outcome if Verdict(outcome=outcome).retry_elsewhere}
    marking = {outcome for outcome in Outcome if Verdict(outcome=outcome).marks_credential}

    assert elsewhere == {
        Outcome.RATE_LIMITED,
        Outcome.QUOTA_EXHAUSTED,
        Outcome.INVALID,
        Outcome.SUSPENDED,
        Outcome.MODEL_NOT_FOUND,
        Outcome.EMPTY,
        Outcome.TRANSIENT,
    }
    assert marking == {
        Outcome.RATE_LIMITED,
        Outcome.QUOTA_EXHAUSTED,
        Outcome.INVALID,
        Outcome.SUSPENDED,
        Outcome.MODEL_NOT_FOUND,
    }


# Success bodies.


def native(*candidates: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"candidates": list(candidates), "usageMetadata": {"promptTokenCount": 3}, **fields}


def candidate(*parts: dict[str, Any], finish_reason: str = "STOP") -> dict[str, Any]:
    return {"content": {"role": "model", "parts": list(parts)}, "finishReason": finish_reason}


def completion(**message: Any) -> dict[str, Any]:
    return {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": message.pop("finish_reason", "stop"),
            }
        ],
    }


FUNCTION_CALL = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
TOOL_CALLS = [
    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
]

SUCCESS_ROWS = {
    "text is an answer": (native(candidate({"text": "Hello"})), Outcome.OK),
    "a function call is an answer": (native(candidate(FUNCTION_CALL)), Outcome.OK),
    "an image is an answer": (
        native(candidate({"inlineData": {"mimeType": "image/png", "data": "iVBORw0"}})),
        Outcome.OK,
    ),
    "no candidates is empty": (native(), Outcome.EMPTY),
    "a body without candidates is empty": ({"usageMetadata": {}}, Outcome.EMPTY),
    "a candidate without content is empty": (native({"finishReason": "STOP"}), Outcome.EMPTY),
    "a candidate without parts is empty": (native(candidate()), Outcome.EMPTY),
    "empty text is empty": (native(candidate({"text": ""})), Outcome.EMPTY),
    "thoughts alone are empty": (
        native(candidate({"text": "Let me think", "thought": True})),
        Outcome.EMPTY,
    ),
    "an empty candidate beside a full one is an answer": (
        native(candidate(), candidate({"text": "Hi"})),
        Outcome.OK,
    ),
    "a blocked prompt is an answer": (
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}},
        Outcome.OK,
    ),
    "a safety stop is an answer": (native(candidate(finish_reason="SAFETY")), Outcome.OK),
    "prohibited content is an answer": (
        native({"finishReason": "PROHIBITED_CONTENT"}),
        Outcome.OK,
    ),
    "a blocklist stop is an answer": (native(candidate(finish_reason="BLOCKLIST")), Outcome.OK),
    "a recitation stop is an answer": (native(candidate(finish_reason="RECITATION")), Outcome.OK),
    "max tokens spent on thinking is an answer": (
        native({"finishReason": "MAX_TOKENS"}),
        Outcome.OK,
    ),
    "an OTHER stop without content is empty": (
        native(candidate(finish_reason="OTHER")),
        Outcome.EMPTY,
    ),
    "a Code Assist wrapped answer is an answer": (
        {"response": native(candidate({"text": "Hi"})), "traceId": "abc"},
        Outcome.OK,
    ),
    "a Code Assist wrapped empty answer is empty": (
        {"response": native(candidate()), "traceId": "abc"},
        Outcome.EMPTY,
    ),
    "a chat completion with content is an answer": (completion(content="Hi"), Outcome.OK),
    "a chat completion with tool calls is an answer": (
        completion(content=None, tool_calls=TOOL_CALLS, finish_reason="tool_calls"),
        Outcome.OK,
    ),
    "a chat completion with empty content is empty": (completion(content=""), Outcome.EMPTY),
    "a chat completion with null content is empty": (completion(content=None), Outcome.EMPTY),
    "a chat completion without choices is empty": (
        {"object": "chat.completion", "choices": []},
        Outcome.EMPTY,
    ),
    "a content-filtered chat completion is an answer": (
        completion(content=None, finish_reason="content_filter"),
        Outcome.OK,
    ),
}


@pytest.mark.parametrize(("body", "outcome"), list(SUCCESS_ROWS.values()), ids=list(SUCCESS_ROWS))
def test_each_success_body_is_an_answer_or_empty(body: dict[str, Any], outcome: Outcome) -> None:
    assert success_body_classify(body=body).outcome is outcome


def test_an_empty_answer_says_why() -> None:
    verdict = success_body_classify(body=native(candidate(finish_reason="OTHER")))

    assert verdict.message == "empty answer: no content, finishReason OTHER"
    assert verdict.retry_elsewhere
    assert not verdict.marks_credential


# OAuth refresh.


def test_a_successful_refresh_is_ok() -> None:
    body = b'{"access_token": "ya29.a0AfB_test", "expires_in": 3599, "token_type": "Bearer"}'

    assert oauth_refresh_classify(status=200, body=body) == Verdict(outcome=Outcome.OK)


def test_a_revoked_refresh_token_means_signing_in_again() -> None:
    body = b'{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}'

    verdict = oauth_refresh_classify(status=400, body=body)

    assert verdict == Verdict(
        outcome=Outcome.INVALID,
        message="refresh token revoked or expired: sign in again "
        "(Token has been expired or revoked.)",
        reason="invalid_grant",
    )


def test_a_refresh_token_of_another_client_means_signing_in_again() -> None:
    body = b'{"error": "unauthorized_client", "error_description": "Unauthorized"}'

    verdict = oauth_refresh_classify(status=401, body=body)

    assert verdict.outcome is Outcome.INVALID
    assert verdict.message.startswith("refresh token revoked or expired: sign in again")


def test_a_rejected_client_is_invalid_and_says_so() -> None:
    body = b'{"error": "invalid_client", "error_description": "The OAuth client was not found."}'

    verdict = oauth_refresh_classify(status=401, body=body)

    assert verdict.outcome is Outcome.INVALID
    assert verdict.reason == "invalid_client"
    assert "The OAuth client was not found." in verdict.message


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_token_endpoint_trouble_is_transient(status: int) -> None:
    verdict = oauth_refresh_classify(status=status, body=b"<html>Service Unavailable</html>")

    assert verdict.outcome is Outcome.TRANSIENT
    assert verdict.message == "<html>Service Unavailable</html>"


def test_any_other_refresh_failure_is_invalid_with_googles_description() -> None:
    body = b'{"error": "invalid_request", "error_description": "Missing required parameter."}'

    verdict = oauth_refresh_classify(status=400, body=body)

    assert verdict.outcome is Outcome.INVALID
    assert verdict.message == "Missing required parameter."


def test_a_refresh_failure_in_the_api_dialect_is_read_too() -> None:
    body = google_error(403, "PERMISSION_DENIED", "The caller does not have permission")

    verdict = oauth_refresh_classify(status=403, body=body)

    assert verdict.outcome is Outcome.INVALID
    assert verdict.message == "The caller does not have permission"
    assert verdict.reason == "PERMISSION_DENIED"


def test_a_refresh_failure_message_does_not_leak_tokens() -> None:
    body = (
        b'{"error": "invalid_grant", "error_description": "bad 1//0gRefreshTokenForTestsOnly123"}'
    )

    verdict = oauth_refresh_classify(status=400, body=body)

    assert "1//0gRefreshTokenForTestsOnly123" not in verdict.message


# Transport errors.


def test_a_transport_error_is_transient_with_a_redacted_description() -> None:
    verdict = transport_error_verdict(
        description=f"ReadTimeout on https://generativelanguage.googleapis.com/v1beta/models?key={API_KEY}"
    )

    assert verdict.outcome is Outcome.TRANSIENT
    assert verdict.message.endswith("?key=AIza…x9Qk")
    assert verdict.retry_elsewhere
    assert not verdict.marks_credential


# Durations.


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("34.07s", 34.07),
        ("60s", 60.0),
        ("900ms", 0.9),
        ("1.5m", 90.0),
        ("19h14m47s", 69287.0),
        ("51820.638305887s", 51820.638305887),
        ("60", 60.0),
    ],
)
def test_google_durations_are_read_in_seconds(text: str, seconds: float) -> None:
    assert duration_parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "soon", "-5s", "5 parsecs", "1e400s", "9" * 400 + "s", 10**400, True, None, [1]]
)
def test_things_that_are_not_durations_give_none(value: object) -> None:
    assert duration_parse(value) is None


def test_a_protobuf_duration_object_is_read_in_seconds() -> None:
    assert duration_parse({"seconds": "34", "nanos": 70_000_000}) == pytest.approx(34.07)


@given(
    hours=st.integers(0, 999),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    millis=st.integers(0, 999),
)
def test_compound_durations_round_trip(hours: int, minutes: int, seconds: int, millis: int) -> None:
    total = hours * 3600 + minutes * 60 + seconds

    assert duration_parse(f"{hours}h{minutes}m{seconds}s") == total
    assert duration_parse(f"{millis}ms") == pytest.approx(millis / 1000)


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_decimal_second_durations_round_trip(seconds: float) -> None:
    assert duration_parse(f"{seconds:.6f}s") == pytest.approx(seconds, abs=1e-6)


# Properties: nothing raises, a 429 is never INVALID, messages never hold secrets.

# Keys the classifier looks for, so that generated documents reach its deeper branches.
JSON_KEYS = [
    "error",
    "message",
    "status",
    "details",
    "@type",
    "reason",
    "metadata",
    "violations",
    "quotaId",
    "retryDelay",
    "quotaResetDelay",
    "candidates",
    "choices",
    "content",
    "parts",
    "text",
    "finishReason",
    "promptFeedback",
    "response",
    "error_description",
]
JSON_STRINGS = ["type.googleapis.com/google.rpc.RetryInfo", "PerDay", "59s", "limit: 0"]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(JSON_STRINGS),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(JSON_KEYS) | st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
statuses = st.integers(100, 599)
secret_texts = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"),
    min_size=12,
    max_size=60,
)


@given(status=statuses, body=st.binary(max_size=2000) | st.none())
def test_any_bytes_are_classified_without_raising(status: int, body: bytes | None) -> None:
    assert isinstance(upstream_answer_classify(status=status, body=body), Verdict)
    assert isinstance(oauth_refresh_classify(status=status, body=body), Verdict)


@given(status=statuses, document=json_values)
def test_any_json_is_classified_without_raising(status: int, document: Any) -> None:
    body = json.dumps(document)

    assert isinstance(upstream_answer_classify(status=status, body=body), Verdict)
    assert isinstance(oauth_refresh_classify(status=status, body=body), Verdict)


@given(document=json_values)
def test_any_json_success_body_is_classified_without_raising(document: Any) -> None:
    for body in (document, {"candidates": document}, {"choices": document}, {"response": document}):
        verdict = success_body_classify(body=cast(Any, body))
        assert verdict.outcome in (Outcome.OK, Outcome.EMPTY)


@given(document=json_values)
def test_a_429_is_never_invalid(document: Any) -> None:
    verdict = upstream_answer_classify(status=429, body=json.dumps({"error": document}))

    assert verdict.outcome in (Outcome.RATE_LIMITED, Outcome.QUOTA_EXHAUSTED)


@given(
    status=statuses,
    secrets=st.lists(secret_texts, min_size=1, max_size=3),
    before=st.text(max_size=300),
    after=st.text(max_size=300),
    reason=st.text(max_size=20),
    as_google_error=st.booleans(),
)
def test_a_verdict_never_holds_a_given_secret(
    status: int,
    secrets: list[str],
    before: str,
    after: str,
    reason: str,
    as_google_error: bool,
) -> None:
    text = before + " ".join(secrets) + after
    body = (
        google_error(status, text, text, error_info(reason + secrets[0]), quota_failure(text))
        if as_google_error
        else text.encode()
    )

    verdicts = [
        upstream_answer_classify(status=status, body=body, secrets=secrets),
        oauth_refresh_classify(status=status, body=body, secrets=secrets),
        transport_error_verdict(description=text, secrets=secrets),
    ]

    for verdict in verdicts:
        for secret in secrets:
            for field in (verdict.message, verdict.status, verdict.reason, verdict.quota_id):
                assert secret not in field


def test_a_daily_quota_verdict_carries_the_limit_google_stated_for_the_deciding_quota():
    minute = quota_failure(PER_MINUTE)
    minute["violations"][0]["quotaValue"] = "15"
    day = quota_failure(PER_DAY)
    day["violations"][0]["quotaValue"] = "1500"
    verdict = upstream_answer_classify(status=429, body=exhausted(minute, day))
    assert (verdict.outcome, verdict.quota_id, verdict.quota_value) == (
        Outcome.QUOTA_EXHAUSTED,
        PER_DAY,
        1500,
    )


@pytest.mark.parametrize("value", [None, "", "0", "-3", "2.5", "lots", True])
def test_a_missing_or_strange_quota_value_is_no_limit(value):
    failure = quota_failure(PER_DAY)
    if value is None:
        del failure["violations"][0]["quotaValue"]
    else:
        failure["violations"][0]["quotaValue"] = value
    verdict = upstream_answer_classify(status=429, body=exhausted(failure))
    assert verdict.outcome is Outcome.QUOTA_EXHAUSTED and verdict.quota_value is None
