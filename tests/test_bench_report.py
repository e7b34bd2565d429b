"""The bench's rows for other request shapes: what it sends, and how the report shows them."""

import json

from bench import report, shapes
from bench.run import Run
from bench.servers import ROTATOR_OAUTH_KEY, Target

MACHINE = {"cpu": "2", "memory": "1", "kernel": "6", "python": "3.11", "wrk": "4", "packages": ""}


def _run(wrk: dict[str, dict[str, float]], rows: list[dict[str, str]], *, compare: bool = False):
    run = Run(command="python -m bench", started_at="now", machine=MACHINE)
    run.targets = [{"name": "production", "label": "Rotator, production"}]
    if compare:
        run.targets.append({"name": "compare", "label": "Rotator, production, code from /old"})
    for name, scenarios in wrk.items():
        for scenario, rps in scenarios.items():
            measured = {"rps": rps, "errors": 0, "p50_ms": 1.0, "p99_ms": 2.0}
            run.wrk.setdefault(name, {})[scenario] = [{**measured, "cpu_ms_per_request": 1.0}]
    run.rows = rows
    return run


def _row(target: str, shape: shapes.Shape, skipped: str = "") -> dict[str, str]:
    return {
        "name": f"{target} {shape.key}",
        "label": shape.label,
        "target": target,
        "shape": shape.key,
        "baseline": shape.baseline,
        "skipped": skipped,
    }


OAUTH_CHAT, RESPONSES_KEY, _, MESSAGES_KEY, MESSAGES_OAUTH = shapes.SHAPES


def test_each_dialect_sends_the_body_and_key_its_clients_send():
    target = Target(
        name="production",
        label="",
        url="http://127.0.0.1:8000/v1/chat/completions",
        authorization="Bearer rk-api",
        oauth_authorization=f"Bearer {ROTATOR_OAUTH_KEY}",
    )
    assert json.loads(RESPONSES_KEY.dialect.body(stream=True)) == {
        "model": "gemini-2.5-flash",
        "input": "hello",
        "stream": True,
    }
    assert RESPONSES_KEY.url(target) == "http://127.0.0.1:8000/v1/responses"
    assert RESPONSES_KEY.dialect.headers(RESPONSES_KEY.authorization(target))["Authorization"] == (
        "Bearer rk-api"
    )
    assert json.loads(MESSAGES_OAUTH.dialect.body(stream=False)) == {
        "model": "gemini-2.5-flash",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hello"}],
        "stream": False,
    }
    headers = MESSAGES_OAUTH.dialect.headers(MESSAGES_OAUTH.authorization(target))
    assert headers["x-api-key"] == ROTATOR_OAUTH_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers


def test_the_translated_chat_row_is_shown_under_its_target_against_the_passthrough():
    run = _run(
        {
            "production": {"c1": 600, "c16": 1000, "c64": 1100, "stream16": 400},
            "production chat/oauth": {"c16": 800, "stream16": 260},
        },
        [_row("production", OAUTH_CHAT)],
    )
    text = report.report_render(run)
    assert "| Rotator, production | 600 | 1,000 | 1,100 | 400 | 0 |" in text
    assert "| ↳ OpenAI chat completions, OAuth via Code Assist | – | 800 | – | 260 | 0 |" in text
    assert (
        "| production: OpenAI chat completions, OAuth via Code Assist ≥ 70% of OpenAI chat, "
        "API key (passthrough) | c16 80%, stream16 65% | **FAIL** |"
    ) in text


def test_another_dialect_is_compared_with_chat_on_the_same_credential_kind():
    run = _run(
        {
            "production": {"c16": 1000, "stream16": 400},
            "production chat/oauth": {"c16": 800, "stream16": 300},
            "production messages/oauth": {"c16": 720, "stream16": 270},
        },
        [_row("production", OAUTH_CHAT), _row("production", MESSAGES_OAUTH)],
    )
    text = report.report_render(run)
    assert (
        "| Rotator, production | Anthropic Messages, OAuth via Code Assist | "
        "OpenAI chat, OAuth via Code Assist | 90% | 90% |"
    ) in text


def test_a_route_that_answered_404_is_skipped_not_failed():
    skipped = "/v1/messages answered 404 (a route that code does not have)"
    run = _run(
        {"production": {"c16": 1000, "stream16": 400}},
        [_row("production", MESSAGES_KEY, skipped)],
    )
    text = report.report_render(run)
    assert "↳ Anthropic Messages" not in text
    assert (
        "| production: Anthropic Messages, API key (passthrough) ≥ 70% of OpenAI chat, API key "
        f"(passthrough) | skipped: {skipped} | **n/a** |"
    ) in text


def test_compare_shows_the_shapes_both_trees_answered():
    run = _run(
        {
            "production": {"c1": 500, "c16": 1000, "c64": 1000, "stream16": 400},
            "compare": {"c1": 500, "c16": 1000, "c64": 1000, "stream16": 400},
            "production chat/oauth": {"c16": 900, "stream16": 300},
            "compare chat/oauth": {"c16": 600, "stream16": 300},
        },
        [_row("production", OAUTH_CHAT), _row("compare", OAUTH_CHAT)],
        compare=True,
    )
    text = report.report_render(run)
    assert (
        "| OpenAI chat completions, OAuth via Code Assist: requests/s ratio "
        "| – | 1.50× | – | 1.00× |"
    ) in text


def test_a_shape_is_judged_by_its_paired_slices_not_by_rows_measured_apart():
    """The chat row ran on a fast moment, the Responses row later on a slow one: the medians
    of the two rows say 50%; the slices measured alternately say 90%, and the report uses
    those."""
    run = _run(
        {"production": {"c16": 1000.0}, "production responses/api_key": {"c16": 500.0}},
        [_row("production", RESPONSES_KEY)],
    )
    assert report.shape_ratios(run, run.rows[0])["c16"] == 0.5
    run.paired = {"production responses/api_key": {"c16": [0.88, 0.95, 0.9]}}
    assert report.shape_ratios(run, run.rows[0])["c16"] == 0.9
    assert "| 90% |" in report.report_render(run)


def test_paired_slices_merge_into_one_row():
    from bench.load import WrkResult, wrk_results_merge

    slices = [
        WrkResult(requests=100, seconds=1.0, errors=0, p50_ms=10, p99_ms=30, cpu_ms_per_request=1),
        WrkResult(requests=300, seconds=1.0, errors=1, p50_ms=20, p99_ms=50, cpu_ms_per_request=2),
    ]
    merged = wrk_results_merge(slices)
    assert (merged.rps, merged.errors, merged.p50_ms) == (200.0, 1, 15)
    assert merged.cpu_ms_per_request == 1.75


def _compare_row(run) -> tuple[str, str, str]:
    [row] = [r for r in report.targets_check(run) if "against --compare" in r[0]]
    return row


def test_the_before_and_after_target_needs_every_column_within_five_percent():
    same = {"c1": 500, "c16": 1000, "c64": 1000, "stream16": 400}
    run = _run({"production": dict(same), "compare": dict(same)}, [], compare=True)
    assert _compare_row(run)[2] == "PASS"
    # 6% fewer streams per second: one column is enough to fail.
    run = _run({"production": {**same, "stream16": 376}, "compare": same}, [], compare=True)
    measured, verdict = _compare_row(run)[1:]
    assert verdict == "FAIL" and "stream16 0.94× / 1.00×" in measured
    # As fast, but 10% more CPU per request at c=16.
    run = _run({"production": dict(same), "compare": dict(same)}, [], compare=True)
    run.wrk["production"]["c16"][0]["cpu_ms_per_request"] = 1.1
    measured, verdict = _compare_row(run)[1:]
    assert verdict == "FAIL" and "c16 1.00× / 0.91×" in measured


def test_without_a_compare_checkout_there_is_no_before_and_after_target():
    run = _run({"production": {"c1": 500, "c16": 1000, "c64": 1000, "stream16": 400}}, [])
    assert not [r for r in report.targets_check(run) if "against --compare" in r[0]]
