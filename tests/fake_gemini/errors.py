"""Google's error bodies, built the way the real services build them.

Every builder returns the inner object of `{"error": {...}}`; the caller wraps it in an object or
(OpenAI-compatible endpoint, streaming methods) a one-element array, and uses `code` as the HTTP
status. Wording and detail types follow responses quoted in public issue threads; see
the team's shared notes (gemini-protocol.md, kept outside this repository).
"""

import re
import time
from datetime import UTC, datetime
from typing import Any

QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
HELP = "type.googleapis.com/google.rpc.Help"
LOCALIZED_MESSAGE = "type.googleapis.com/google.rpc.LocalizedMessage"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

SERVICE = "generativelanguage.googleapis.com"
CODE_ASSIST_DOMAIN = "cloudcode-pa.googleapis.com"
# A made-up project number; real bodies carry the caller's.
PROJECT_NUMBER = "123456789012"
_RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"
_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    f"information on this error, head to: {_RATE_LIMITS_URL}."
)
_CAPACITY_MESSAGE = "You have exhausted your capacity on this model."
_REQUESTS_METRIC = f"{SERVICE}/generate_content_free_tier_requests"
_INPUT_TOKENS_METRIC = f"{SERVICE}/generate_content_free_tier_input_token_count"

# Behaviours whose meaning is "this credential cannot use this model right now": they only
# apply to requests that name a model, so a model listing or a Code Assist loadCodeAssist call
# made first does not use them up.
MODEL_SCOPED = frozenset(
    {
        "ok",
        "rate_limit_minute",
        "quota_day",
        "limit_zero",
        "rate_limit_bare",
        "not_found",
        "empty",
        "safety",
        "cut_stream",
        "parallel_calls",
        "tool_loop",
        "malformed_function_call",
        "stream_error",
        "no_finish",
        "thoughts_only",
        "signature_only",
        "code_assist_rate_limit",
        "code_assist_quota",
        "model_capacity",
    }
)
# Behaviours that change how the fake answers rather than what error it sends.
TRANSPORT = frozenset(
    {
        "ok",
        "timeout",
        "slow_first_byte",
        "reset",
        "cut_stream",
        "empty",
        "safety",
        "parallel_calls",
        "tool_loop",
        "malformed_function_call",
        "stream_error",
        "no_finish",
        "thoughts_only",
        "signature_only",
    }
)
ERRORS = frozenset(
    {
        "rate_limit_minute",
        "quota_day",
        "limit_zero",
        "rate_limit_bare",
        "invalid_key",
        "permission_denied",
        "failed_precondition",
        "not_found",
        "bad_request",
        "server_error",
        "code_assist_rate_limit",
        "code_assist_quota",
        "model_capacity",
        "unauthenticated",
    }
)
BEHAVIOURS = TRANSPORT | ERRORS
PERMISSION_VARIANTS = frozenset(
    {"denied", "leaked", "suspended", "service_disabled", "blocked", "tos", "unregistered"}
)
SERVER_ERRORS = {
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


# The in-band errors seen inside 200 streams.
STREAM_ERRORS = frozenset({429, 500, 503})
_HIGH_DEMAND = (
    "This model is currently experiencing high demand. Spikes in demand are usually temporary. "
    "Please try again later."
)


def google_error(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return Google's error object; `details` is omitted when empty, as Google omits it."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return error


def behaviour_validate(name: str, params: dict[str, Any]) -> None:
    """Raise ValueError for an unknown behaviour or parameter value, so typos fail loudly."""
    if name not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {name!r}; known: {', '.join(sorted(BEHAVIOURS))}")
    if name == "permission_denied":
        variant = params.get("variant", "denied")
        if variant not in PERMISSION_VARIANTS:
            raise ValueError(f"unknown permission_denied variant {variant!r}")
    if name == "server_error" and int(params.get("status", 503)) not in SERVER_ERRORS:
        raise ValueError("server_error status must be 500, 503 or 504")
    if name == "stream_error" and int(params.get("status", 503)) not in STREAM_ERRORS:
        raise ValueError("stream_error status must be 429, 500 or 503")
    if name == "parallel_calls" and int(params.get("count", 2)) < 2:
        raise ValueError("parallel_calls count must be at least 2")
    if name == "tool_loop" and int(params.get("steps", 3)) < 1:
        raise ValueError("tool_loop steps must be at least 1")
    for key in ("retry_delay", "reset_after"):
        if key in params:
            duration_seconds(str(params[key]))


def duration_seconds(text: str) -> float:
    """Return the seconds in a Google duration: `"26s"`, `"900ms"`, `"34.07s"`, `"19h14m47s"`."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?|([\d.]+)ms", text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"not a duration: {text!r}")
    hours, minutes, seconds, millis = match.groups()
    if millis:
        return float(millis) / 1000
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def unregistered_caller() -> dict[str, Any]:
    """Return the 403 Google sends when a request carries no credential at all."""
    return google_error(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def credential_missing() -> dict[str, Any]:
    """Return Code Assist's 401 for a request without an access token."""
    return google_error(
        401,
        "UNAUTHENTICATED",
        "Request is missing required authentication credential. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    )


def credential_invalid() -> dict[str, Any]:
    """Return the 401 for an unknown, expired or revoked access token."""
    return google_error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    )


def json_invalid(detail: str = "Unexpected token.") -> dict[str, Any]:
    """Return the 400 for a body that is not JSON (a client error: no credential is to blame)."""
    message = f"Invalid JSON payload received. {detail}"
    return google_error(
        400,
        "INVALID_ARGUMENT",
        message,
        [{"@type": BAD_REQUEST, "fieldViolations": [{"description": message}]}],
    )


def field_missing(message: str) -> dict[str, Any]:
    """Return the 400 for a request missing a required field, e.g. `contents`."""
    return google_error(400, "INVALID_ARGUMENT", message)


def model_not_found(model: str, method: str, *, api_version: str = "v1beta") -> dict[str, Any]:
    """Return the 404 for an unknown model or one that does not serve `method`."""
    return google_error(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version {api_version}, or is not supported for "
        f"{method}. Call ListModels to see the list of available models and their supported "
        "methods.",
    )


def entity_not_found() -> dict[str, Any]:
    """Return the terse 404 Code Assist gives for unknown models and operations."""
    return google_error(404, "NOT_FOUND", "Requested entity was not found.")


def project_denied(project: str | None) -> dict[str, Any]:
    """Return Code Assist's 403 for a request naming a project the account may not use."""
    resource = f"//cloudaicompanion.googleapis.com/projects/{project or ''}/locations/global"
    message = (
        f"Permission 'cloudaicompanion.companions.generateChat' denied on resource '{resource}' "
        "(or it may not exist)."
    )
    return google_error(
        403,
        "PERMISSION_DENIED",
        message,
        [
            {
                "@type": ERROR_INFO,
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "cloudaicompanion.googleapis.com",
                "metadata": {
                    "permission": "cloudaicompanion.companions.generateChat",
                    "resource": f"projects/{project or ''}/locations/global",
                },
            }
        ],
    )


def precondition_failed(message: str = "Precondition check failed.") -> dict[str, Any]:
    """Return a 400 FAILED_PRECONDITION (free-tier onboarding with a project, region, ...)."""
    return google_error(400, "FAILED_PRECONDITION", message)


def behaviour_error(
    name: str, params: dict[str, Any], *, model: str | None, method: str, secret: str
) -> dict[str, Any]:
    """Return the error object the error behaviour `name` answers with.

    `secret` is only used where Google itself echoes the credential (CONSUMER_SUSPENDED).
    """
    model = model or "gemini-2.5-flash"
    if name == "rate_limit_minute":
        return _quota_exceeded(
            model,
            [
                _violation(
                    _REQUESTS_METRIC, "GenerateRequestsPerMinutePerProjectPerModel", model, "10"
                )
            ],
            str(params.get("retry_delay", "26s")),
        )
    if name == "quota_day":
        return _quota_exceeded(
            model,
            [
                _violation(
                    _REQUESTS_METRIC,
                    "GenerateRequestsPerDayPerProjectPerModel",
                    model,
                    str(params.get("limit", "250")),
                )
            ],
            str(params.get("retry_delay", "65205s")),
        )
    if name == "limit_zero":
        return _limit_zero(model)
    if name == "rate_limit_bare":
        return google_error(
            429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."
        )
    if name == "invalid_key":
        return _invalid_key()
    if name == "permission_denied":
        return _permission_denied(str(params.get("variant", "denied")), secret)
    if name == "failed_precondition":
        return precondition_failed("User location is not supported for the API use.")
    if name == "not_found":
        return model_not_found(model, method)
    if name == "bad_request":
        return json_invalid('Unknown name "fake_field": Cannot find field.')
    if name == "server_error":
        code = int(params.get("status", 503))
        status, message = SERVER_ERRORS[code]
        return google_error(code, status, message)
    if name == "code_assist_rate_limit":
        return _code_assist_rate_limit(model, str(params.get("retry_delay", "5s")))
    if name == "code_assist_quota":
        return _code_assist_quota(model, str(params.get("reset_after", "19h14m47s")))
    if name == "model_capacity":
        return google_error(
            429,
            "RESOURCE_EXHAUSTED",
            f"No capacity available for model {model} on the server",
            [
                {
                    "@type": ERROR_INFO,
                    "reason": "MODEL_CAPACITY_EXHAUSTED",
                    "domain": CODE_ASSIST_DOMAIN,
                    "metadata": {"model": model},
                }
            ],
        )
    if name == "unauthenticated":
        return credential_invalid()
    raise ValueError(f"{name!r} is not an error behaviour")


def stream_error_body(status: int, *, model: str | None) -> dict[str, Any]:
    """Return the error object Google puts inside a 200 stream (`stream_error`)."""
    if status == 503:
        return google_error(503, "UNAVAILABLE", _HIGH_DEMAND)
    if status == 429:
        model = model or "gemini-2.5-flash"
        return _quota_exceeded(
            model,
            [
                _violation(
                    _REQUESTS_METRIC, "GenerateRequestsPerMinutePerProjectPerModel", model, "10"
                )
            ],
            "26s",
        )
    code_status, message = SERVER_ERRORS[status]
    return google_error(status, code_status, message)


def _violation(metric: str, quota_id: str, model: str, value: str | None) -> dict[str, Any]:
    violation: dict[str, Any] = {
        "quotaMetric": metric,
        "quotaId": f"{quota_id}-FreeTier",
        "quotaDimensions": {"location": "global", "model": model},
    }
    # Google leaves quotaValue out of some bodies; a classifier must not need it.
    if value is not None:
        violation["quotaValue"] = value
    return violation


def _quota_details(violations: list[dict[str, Any]], retry_delay: str) -> list[dict[str, Any]]:
    return [
        {"@type": QUOTA_FAILURE, "violations": violations},
        {
            "@type": HELP,
            "links": [
                {"description": "Learn more about Gemini API quotas", "url": _RATE_LIMITS_URL}
            ],
        },
        {"@type": RETRY_INFO, "retryDelay": retry_delay},
    ]


def _quota_exceeded(
    model: str, violations: list[dict[str, Any]], retry_delay: str
) -> dict[str, Any]:
    return google_error(
        429, "RESOURCE_EXHAUSTED", _QUOTA_MESSAGE, _quota_details(violations, retry_delay)
    )


def _limit_zero(model: str) -> dict[str, Any]:
    # The newer message style: one line per violated metric, then a precise retry hint.
    # `limit: 0` means the model is not offered on this tier at all.
    lines = [
        f"* Quota exceeded for metric: {_INPUT_TOKENS_METRIC}, limit: 0, model: {model}",
        f"* Quota exceeded for metric: {_REQUESTS_METRIC}, limit: 0, model: {model}",
        f"* Quota exceeded for metric: {_REQUESTS_METRIC}, limit: 0, model: {model}",
    ]
    message = (
        f"{_QUOTA_MESSAGE[:-1]}. To monitor your current usage, head to: "
        "https://ai.dev/usage?tab=rate-limit. \n" + "\n".join(lines) + "\n"
        "Please retry in 59.906331105s."
    )
    violations = [
        _violation(
            _INPUT_TOKENS_METRIC, "GenerateContentInputTokensPerModelPerMinute", model, None
        ),
        _violation(_REQUESTS_METRIC, "GenerateRequestsPerMinutePerProjectPerModel", model, None),
        _violation(_REQUESTS_METRIC, "GenerateRequestsPerDayPerProjectPerModel", model, None),
    ]
    return google_error(429, "RESOURCE_EXHAUSTED", message, _quota_details(violations, "59s"))


def _invalid_key() -> dict[str, Any]:
    message = "API key not valid. Please pass a valid API key."
    return google_error(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": ERROR_INFO,
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": SERVICE},
            },
            {"@type": LOCALIZED_MESSAGE, "locale": "en-US", "message": message},
        ],
    )


def _permission_denied(variant: str, secret: str) -> dict[str, Any]:
    if variant == "unregistered":
        return unregistered_caller()
    if variant == "leaked":
        return google_error(
            403,
            "PERMISSION_DENIED",
            "Your API key was reported as leaked. Please use another API key.",
        )
    if variant == "suspended":
        # Google really puts the whole key in the message and the metadata: this is the body
        # Rotator's redaction must be tested against.
        message = f"Permission denied: Consumer 'api_key:{secret}' has been suspended."
        return google_error(
            403,
            "PERMISSION_DENIED",
            message,
            [
                {
                    "@type": ERROR_INFO,
                    "reason": "CONSUMER_SUSPENDED",
                    "domain": "googleapis.com",
                    "metadata": {
                        "consumer": f"projects/{PROJECT_NUMBER}",
                        "service": SERVICE,
                        "containerInfo": f"api_key:{secret}",
                    },
                },
                {"@type": LOCALIZED_MESSAGE, "locale": "en-US", "message": message},
            ],
        )
    if variant == "service_disabled":
        url = (
            f"https://console.developers.google.com/apis/api/{SERVICE}/overview"
            f"?project={PROJECT_NUMBER}"
        )
        message = (
            f"Generative Language API has not been used in project {PROJECT_NUMBER} before or it "
            f"is disabled. Enable it by visiting {url} then retry. If you enabled this API "
            "recently, wait a few minutes for the action to propagate to our systems and retry."
        )
        return google_error(
            403,
            "PERMISSION_DENIED",
            message,
            [
                {
                    "@type": ERROR_INFO,
                    "reason": "SERVICE_DISABLED",
                    "domain": "googleapis.com",
                    "metadata": {
                        "service": SERVICE,
                        "consumer": f"projects/{PROJECT_NUMBER}",
                        "serviceTitle": "Generative Language API",
                        "activationUrl": url,
                        "containerInfo": PROJECT_NUMBER,
                    },
                },
                {"@type": LOCALIZED_MESSAGE, "locale": "en-US", "message": message},
                {
                    "@type": HELP,
                    "links": [
                        {"description": "Google developers console API activation", "url": url}
                    ],
                },
            ],
        )
    if variant == "blocked":
        return google_error(
            403,
            "PERMISSION_DENIED",
            f"Requests to this API {SERVICE} method "
            "google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent are blocked.",
            [
                {
                    "@type": ERROR_INFO,
                    "reason": "API_KEY_SERVICE_BLOCKED",
                    "domain": "googleapis.com",
                    "metadata": {"service": SERVICE, "consumer": f"projects/{PROJECT_NUMBER}"},
                }
            ],
        )
    if variant == "tos":
        # Code Assist's answer for accounts disabled for third-party use: permanent.
        return google_error(
            403,
            "PERMISSION_DENIED",
            "This service has been disabled in this account for violation of Terms of Service. "
            "Please submit an appeal to continue using this product.",
            [
                {
                    "@type": ERROR_INFO,
                    "reason": "TOS_VIOLATION",
                    "domain": CODE_ASSIST_DOMAIN,
                    "metadata": {
                        "uiMessage": "true",
                        "appeal_url_link_text": "Submit Appeal",
                        "appeal_url": "https://forms.gle/fake-appeal",
                    },
                }
            ],
        )
    return google_error(
        403, "PERMISSION_DENIED", "Your project has been denied access. Please contact support."
    )


def _code_assist_rate_limit(model: str, retry_delay: str) -> dict[str, Any]:
    return google_error(
        429,
        "RESOURCE_EXHAUSTED",
        f"{_CAPACITY_MESSAGE} Your quota will reset after {retry_delay}.",
        [
            {
                "@type": ERROR_INFO,
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": CODE_ASSIST_DOMAIN,
                "metadata": {"uiMessage": "true", "model": model},
            },
            {"@type": RETRY_INFO, "retryDelay": retry_delay},
        ],
    )


def _code_assist_quota(model: str, reset_after: str) -> dict[str, Any]:
    seconds = duration_seconds(reset_after)
    reset_at = datetime.fromtimestamp(time.time() + seconds, UTC)
    return google_error(
        429,
        "RESOURCE_EXHAUSTED",
        f"{_CAPACITY_MESSAGE} Your quota will reset after {reset_after}.",
        [
            {
                "@type": ERROR_INFO,
                "reason": "QUOTA_EXHAUSTED",
                "domain": CODE_ASSIST_DOMAIN,
                "metadata": {
                    "uiMessage": "true",
                    "model": model,
                    "quotaResetDelay": reset_after,
                    "quotaResetTimeStamp": reset_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            },
            {"@type": RETRY_INFO, "retryDelay": f"{round(seconds)}s"},
        ],
    )


def oauth_error(error: str, description: str) -> dict[str, str]:
    """Return the token endpoint's (non-Google-RPC) error body."""
    return {"error": error, "error_description": description}
