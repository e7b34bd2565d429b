"""/metrics: the token guard, request counters, the latency histogram and credential gauges."""

from common.events import RequestAnswered
from stats.metrics import request_observe
from tests.stats.conftest import MODEL, metric_value

TOKEN = "metrics-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_metrics_are_disabled_without_a_token(live, http, settings):
    settings.METRICS_TOKEN = ""
    response = http.get("/metrics", headers=AUTH)
    assert response.status_code == 403
    assert "metrics are disabled" in response.json()["error"]["message"]


def test_a_missing_or_wrong_metrics_token_is_refused(live, http, settings):
    settings.METRICS_TOKEN = TOKEN
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers={"authorization": "Bearer nope"}).status_code == 401


def test_observed_requests_show_in_the_counter_and_the_histogram(live, http, settings):
    settings.METRICS_TOKEN = TOKEN
    labels = {"model": "gemini-test-model", "dialect": "gemini"}
    before = http.get("/metrics", headers=AUTH).text
    for seconds in (0.2, 0.7, 3.0):
        request_observe(
            RequestAnswered(
                **labels, status=200, credential_label="work (AIza…abcd)", upstream_seconds=seconds
            )
        )
    request_observe(
        RequestAnswered(**labels, status=429, credential_label="", upstream_seconds=0.0)
    )
    after = http.get("/metrics", headers=AUTH)
    assert after.headers["content-type"].startswith("text/plain")

    def delta(name, **more):
        return metric_value(after.text, name, **labels, **more) - metric_value(
            before, name, **labels, **more
        )

    assert delta("rotator_requests_total", status="200", credential="work (AIza…abcd)") == 3
    assert delta("rotator_requests_total", status="429", credential="-") == 1
    # The refused request never waited on upstream: it is not a latency sample.
    assert delta("rotator_upstream_seconds_count") == 3
    assert delta("rotator_upstream_seconds_sum") == 3.9
    assert delta("rotator_upstream_seconds_bucket", le="1.0") == 2


def test_live_requests_are_counted_by_model_dialect_status_and_credential(
    live, http, settings, alice, chat
):
    settings.METRICS_TOKEN = TOKEN
    before = http.get("/metrics", headers=AUTH).text
    for n in range(3):
        assert chat(alice.key, text=f"question {n}").status_code == 200
    after = http.get("/metrics", headers=AUTH).text
    labels = {"model": MODEL, "dialect": "openai_chat", "status": "200"}
    served = metric_value(after, "rotator_requests_total", **labels) - metric_value(
        before, "rotator_requests_total", **labels
    )
    assert served == 3
    by_credential = sum(
        metric_value(after, "rotator_requests_total", **labels, credential=name)
        - metric_value(before, "rotator_requests_total", **labels, credential=name)
        for name in {c.display_name for c in alice.credentials}
    )
    assert by_credential == 3
    count = {"model": MODEL, "dialect": "openai_chat"}
    assert (
        metric_value(after, "rotator_upstream_seconds_count", **count)
        - metric_value(before, "rotator_upstream_seconds_count", **count)
        == 3
    )


def test_credential_gauges_count_available_limited_exhausted_and_invalid(
    live, http, settings, alice, bob, fake_gemini, chat
):
    settings.METRICS_TOKEN = TOKEN
    exhausted, limited, invalid = alice.upstream_keys
    fake_gemini.behave(exhausted, "quota_day")
    fake_gemini.behave(limited, "rate_limit_minute")
    fake_gemini.behave(invalid, "invalid_key")
    assert chat(alice.key).status_code == 429  # every credential failed in its own way
    assert chat(bob.key).status_code == 200

    text = http.get("/metrics", headers=AUTH).text
    alice_pool = {"pool": "alice", "model": MODEL}
    assert {
        state: metric_value(text, "rotator_credentials", **alice_pool, state=state)
        for state in ("available", "rate_limited", "exhausted", "invalid", "suspended")
    } == {"available": 0, "rate_limited": 1, "exhausted": 1, "invalid": 1, "suspended": 0}
    assert metric_value(text, "rotator_credentials", pool="bob", state="available") == 2
    for secret in [alice.key, bob.key, *alice.upstream_keys, *bob.upstream_keys]:
        assert secret not in text


def _model_labels(text: str) -> set[str]:
    import re

    return set(re.findall(r'rotator_requests_total\{[^}]*model="([^"]*)"', text))


def test_made_up_model_names_share_one_label_and_refused_ones_are_not_recorded(
    live, http, settings, alice
):
    from accounts.services import api_key_create
    from stats.models import UsageCounter
    from stats.usage import usage_flush

    settings.METRICS_TOKEN = TOKEN
    headers = {"authorization": f"Bearer {alice.key}"}
    _, narrow = api_key_create(user=alice.user, name="narrow", allowed_models=["gemini-2.5-flash"])
    served = http.post(
        "/v1/chat/completions",
        json={"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert served.status_code == 200
    for number in range(6):
        made_up = {"model": f"made-up-{number}", "messages": [{"role": "user", "content": "x"}]}
        assert http.post("/v1/chat/completions", json=made_up, headers=headers).status_code == 404
        refused = http.post(
            "/v1/chat/completions", json=made_up, headers={"authorization": f"Bearer {narrow}"}
        )
        assert refused.status_code == 403
    labels = _model_labels(http.get("/metrics", headers=AUTH).text)
    assert "gemini-2.5-flash" in labels and "other" in labels
    assert not {label for label in labels if label.startswith("made-up-")}
    usage_flush()
    # The key that may not use the names left no trace of them.
    assert not UsageCounter.objects.filter(api_key__name="narrow").exists()
