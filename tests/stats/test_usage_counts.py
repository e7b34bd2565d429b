"""Usage counters and /stat's numbers against known traffic through the live server."""

from collections import Counter

from django.db.models import Sum

from stats.models import UsageCounter
from stats.usage import usage_flush
from tests.stats.conftest import MODEL

FIELDS = (
    "requests",
    "successes",
    "failures",
    "rate_limited",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)


def _sums(**filters):
    return UsageCounter.objects.filter(**filters).aggregate(**{f: Sum(f) for f in FIELDS})


def test_counters_match_the_traffic_exactly_including_a_retried_attempt(
    live, alice, fake_gemini, chat
):
    fake_gemini.behave(alice.upstream_keys[0], "rate_limit_minute", times=1)
    answers = [chat(alice.key, text=f"question number {n}") for n in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    usage_flush()

    tokens = [a.json()["usage"] for a in answers]
    assert _sums(user=alice.user) == {
        "requests": 6,  # five answers plus the one attempt that met a 429 and was retried
        "successes": 5,
        "failures": 1,
        "rate_limited": 1,
        "prompt_tokens": sum(t["prompt_tokens"] for t in tokens),
        "completion_tokens": sum(t["completion_tokens"] for t in tokens),
        "total_tokens": sum(t["total_tokens"] for t in tokens),
    }
    seen_upstream = Counter(r.secret for r in fake_gemini.requests)
    for credential in alice.credentials:
        counted = _sums(credential=credential)["requests"] or 0
        assert counted == seen_upstream[credential.secret()]
        credential.refresh_from_db()
        assert credential.requests_total == counted
    assert _sums(credential=alice.credentials[0])["rate_limited"] == 1
    assert set(UsageCounter.objects.values_list("model", flat=True)) == {MODEL}


def test_stat_json_shows_todays_traffic_and_the_rate_limit_mark(
    live, http, alice, fake_gemini, chat
):
    fake_gemini.behave(alice.upstream_keys[0], "rate_limit_minute", times=1)
    for n in range(4):
        assert chat(alice.key, text=f"question {n}").status_code == 200
    assert http.post("/stat/signin", data={"key": alice.key}).status_code == 403  # no CSRF token

    # A browser session: fetch the form for its CSRF cookie, then sign in.
    http.get("/stat")
    token = http.cookies["csrftoken"]
    signed_in = http.post("/stat/signin", data={"key": alice.key, "csrfmiddlewaretoken": token})
    assert signed_in.status_code == 302
    data = http.get("/stat/data.json").json()

    assert data["user"]["username"] == "alice"
    assert data["totals"]["requests"] == 5
    assert data["totals"]["successes"] == 4
    assert data["totals"]["failures"] == 1
    assert data["models"] == [MODEL]
    (key,) = data["keys"]
    assert (key["prefix"], key["requests"]) == (alice.api_key.prefix, 5)
    by_id = {c["id"]: c for c in data["credentials"]}
    limited = by_id[alice.credentials[0].id]
    assert limited["state"] == "rate_limited"
    assert limited["cells"][MODEL]["mark"]["reason"] == "rate_limited"
    assert limited["cells"][MODEL]["mark"]["message"]
    assert limited["cells"][MODEL]["failures"] == 1
    assert sum(c["cells"].get(MODEL, {}).get("requests", 0) for c in by_id.values()) == 5


def test_a_streamed_answer_is_counted_with_the_tokens_of_the_same_answer_whole(live, alice):
    """Per dialect path: the OpenAI shortcut (usage in a chunk of its own near the end) and
    the Responses API over the native stream (running totals in every chunk). The relay reads
    the usage of each read's last event that carries one."""
    import openai

    client = openai.OpenAI(base_url=f"{live}/v1", api_key=alice.key, max_retries=0)
    messages = [{"role": "user", "content": "count these tokens for me please"}]
    whole = client.chat.completions.create(model=MODEL, messages=messages).usage
    streamed = client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    assert all(chunk.usage is None for chunk in streamed), "not asked for: not shown"
    answer = client.responses.create(model=MODEL, input="count these tokens for me please")
    with client.responses.stream(model=MODEL, input="count these tokens for me please") as s:
        final = s.get_final_response()
    assert final.usage.total_tokens == answer.usage.total_tokens > 0
    usage_flush()
    sums = _sums(user=alice.user)
    assert sums["requests"] == sums["successes"] == 4
    assert sums["total_tokens"] == 2 * whole.total_tokens + 2 * answer.usage.total_tokens
    assert sums["completion_tokens"] == 2 * whole.completion_tokens + 2 * (
        answer.usage.output_tokens
    )
