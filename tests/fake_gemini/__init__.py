"""A fake of Google's Gemini APIs for Rotator's tests and benchmarks.

It serves the native Gemini API (`/v1beta`), Google's OpenAI-compatible endpoint
(`/v1beta/openai`), Code Assist (`/v1internal`) and the OAuth token endpoint (`/token`), with
the bodies described in the team's shared notes (gemini-protocol.md, kept outside this repository).

    with FakeGemini() as fake:                  # or FakeGemini().start() ... fake.stop()
        settings.GEMINI_UPSTREAM_URL = fake.gemini_url
        fake.behave("AIza...", "quota_day", model="gemini-2.5-pro", times=1)

Behaviours (`fake.behave(secret, name, model=None, times=None, **params)`):
    ok                      params chunks, chunk_delay: a slow or long stream for one secret
    rate_limit_minute       429, PerMinute quotaId, RetryInfo retry_delay (default "26s")
    quota_day               429, PerDay quotaId, RetryInfo retry_delay (default "65205s"),
                            quotaValue `limit` (default "250")
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
    parallel_calls          a function-call answer holds `count` (default 2) calls, to the
                            declared functions in turn; on Gemini 3 only the first is signed
    tool_loop               an agent loop: a functionResponse gets another call until the
                            current turn holds `steps` (default 3) call steps, each with
                            `count` (default 1) calls; then the acknowledgement text
    malformed_function_call finishReason MALFORMED_FUNCTION_CALL with a finishMessage and no
                            content (OpenAI: empty content, finish_reason stop)
    stream_error            a 200 stream sends `after` (default 1) chunks, then Google's
                            in-band {"error": ...} (`status` 503 | 429 | 500) and ends: an SSE
                            `data:` event, with `raw=True` bare JSON after the last event, the
                            last element of a JSON-array stream; never wrapped in {"response"}
                            on Code Assist; OpenAI streams get a `data:` event and no [DONE].
                            A request that does not stream gets that error as its HTTP status
    no_finish               no chunk (or answer) carries a finishReason (OpenAI: null)
    thoughts_only           a thought summary and an empty text part, finishReason STOP
    signature_only          one empty text part carrying only a thoughtSignature, STOP

As strict as Google (tests/fake_gemini/rules.py; wire facts in the shared gemini-protocol.md), a
generateContent / streamGenerateContent request on the Gemini API or Code Assist is refused with
Google's 400 body and wording when:
    - a classic Schema (`parameters`, `response`, `responseSchema`) has a field the proto lacks
      (`$schema const exclusiveMinimum additionalProperties $ref $defs` ...: "Unknown name ...
      Cannot find field.", one line per occurrence, map entries shown as `properties[i].value`),
      a `type` list ("Proto field is not repeating, cannot start list.") or an unknown type;
      or breaks a semantic rule (one `* GenerateContentRequest.<path>: ...` line each): array
      without `items`, `properties`/`required` on a non-OBJECT or untyped node, empty nested
      `properties`, an untyped node without anyOf, `required` naming an undefined property,
      an empty enum value;
    - `parameters` and `parametersJsonSchema` are both set, a JSON Schema `$ref` points at
      nothing, or `responseJsonSchema` comes without responseMimeType application/json (JSON
      Schema keywords are otherwise accepted, unknown ones ignored);
    - presence/frequency penalties are non-zero on 2.5+ ("Penalty is not enabled for
      models/<m>", "... for this model" on 3.x); responseMimeType application/json with
      functionDeclarations on 2.x; built-in tools with functionDeclarations (2.x always, 3.x
      without toolConfig.includeServerSideToolInvocations); thinkingLevel on 2.x, budget and
      level together, a level the model lacks, a 2.5 budget out of range;
    - function turns are out of order, or a function-response turn answers a different number
      of calls than the call turn before it made;
    - a thoughtSignature is not base64 ("Base64 decoding failed"), sits inside functionCall
      (unknown field), or, on Gemini 3 (`gemini-3*`), the first functionCall of a current-turn
      model step has none ("Function call is missing a thought_signature ...", unless it is
      `skip_thought_signature_validator`; the API also takes
      `context_engineering_is_the_way_to_go`), or a current-turn signature was minted by the
      other backend ("Invalid thought signature") or by no backend ("Corrupted thought
      signature"). The current turn is everything after the last user content with text.
Code Assist names fields under `request.` (`at 'request.tools[0]...'`, `* request.tools[0]...`).
Gemini 3 answers carry a thoughtSignature on the first functionCall part of each step, else on
the last text part; it is base64 of `fake-thought-signature/<gemini-api|code-assist>/<noise>`.
Google's OpenAI-compatible endpoint applies the penalty, JSON-with-tools, response-count and
signature rules (signatures in `tool_calls[].extra_content.google.thought_signature`), not the
schema rules (how it converts tool schemas is not documented). Wording not quoted from a
captured Google response is marked so in rules.py.

Rate-limit, quota, not_found, the answer-shaping behaviours and ok only apply to requests that name
a model, so listing models or loadCodeAssist does not use them up. Code Assist requests match
behaviours set on their access token, then on the refresh token that minted it. Errors of the
OpenAI-compatible endpoint and of every streaming method have a one-element JSON array root.
"""

from .server import FakeGemini
from .state import OAuthAccount, RecordedRequest

__all__ = ["FakeGemini", "OAuthAccount", "RecordedRequest"]
