"""A fake of Google's Gemini APIs for Rotator's tests and benchmarks.

It serves the native Gemini API (`/v1beta`), Google's OpenAI-compatible endpoint
(`/v1beta/openai`), Code Assist (`/v1internal`) and the OAuth token endpoint (`/token`), with
the bodies described in /work/shared/docs/gemini-protocol.md.

    with FakeGemini() as fake:                  # or FakeGemini().start() ... fake.stop()
        settings.GEMINI_UPSTREAM_URL = fake.gemini_url
        fake.behave("AIza...", "quota_day", model="gemini-2.5-pro", times=1)

Behaviours (`fake.behave(secret, name, model=None, times=None, **params)`):
    ok                      params chunks, chunk_delay: a slow or long stream for one secret
    rate_limit_minute       429, PerMinute quotaId, RetryInfo retry_delay (default "26s")
    quota_day               429, PerDay quotaId, RetryInfo retry_delay (default "65205s")
    limit_zero              429 whose message says "limit: 0" and "Please retry in 59.9...s"
    rate_limit_bare         429 without details
    model_capacity          429 MODEL_CAPACITY_EXHAUSTED (Code Assist's "no capacity")
    code_assist_rate_limit  429 RATE_LIMIT_EXCEEDED, retry_delay (default "5s")
    code_assist_quota       429 QUOTA_EXHAUSTED, reset_after (default "19h14m47s")
    invalid_key             400 API_KEY_INVALID
    permission_denied       403; variant denied | leaked | suspended (echoes the secret, as
                            Google does) | service_disabled | blocked | tos | unregistered
    failed_precondition     400 FAILED_PRECONDITION (location not supported)
    not_found               404 for the model
    bad_request             400 "Invalid JSON payload received..." (a client error)
    unauthenticated         401 UNAUTHENTICATED
    server_error            status 500 | 503 (default) | 504
    timeout                 sleep `seconds` (default 30) then answer; ends if the client leaves
    slow_first_byte         sleep `seconds` (default 1.0) then answer
    reset                   drop the connection with a TCP reset, no response
    cut_stream              send `after` (default 1) chunks, then close mid-body; a
                            non-streamed answer is cut in half
    empty                   200 with no candidates (OpenAI: empty content, finish_reason null)
    safety                  finishReason SAFETY (OpenAI: finish_reason content_filter)

Rate-limit, quota, not_found, empty, safety, cut_stream and ok only apply to requests that name
a model, so listing models or loadCodeAssist does not use them up. Code Assist requests match
behaviours set on their access token, then on the refresh token that minted it. Errors of the
OpenAI-compatible endpoint and of every streaming method have a one-element JSON array root.
"""

from .server import FakeGemini
from .state import OAuthAccount, RecordedRequest

__all__ = ["FakeGemini", "OAuthAccount", "RecordedRequest"]
