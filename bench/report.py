"""The benchmark's tables and target checks, as Markdown (printed, and kept in
docs/performance.md between two markers so the prose around them survives a re-run).
"""

import math
import statistics
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:results:begin (written by `python -m bench`; edits inside are lost) -->"
END = "<!-- bench:results:end -->"


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def _span(values: list[float], digits: int = 0) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:,.{digits}f}"
    return f"{low:,.{digits}f}–{high:,.{digits}f}"


def _field(run: Any, target: str, scenario: str, name: str) -> list[float]:
    return [float(r[name]) for r in run.wrk.get(target, {}).get(scenario, [])]


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


SHAPE_SCENARIOS = ("c16", "stream16")
SHAPE_TARGET = 0.7  # issue 11: each shape at least 70% of the chat row it is compared with
BASELINE_LABELS = {
    "chat/api_key": "OpenAI chat, API key (passthrough)",
    "chat/oauth": "OpenAI chat, OAuth via Code Assist",
}


def _shape_rows(run: Any, target: str, *, skipped: bool = False) -> list[dict[str, str]]:
    """The other request shapes' rows of `target` (bench.shapes), measured or skipped."""
    rows = getattr(run, "rows", [])
    return [r for r in rows if r["target"] == target and bool(r["skipped"]) == skipped]


def _baseline_row(row: dict[str, str]) -> str:
    # API-key chat is the target's own row; every other shape is a row of its own.
    baseline = row["baseline"]
    return row["target"] if baseline == "chat/api_key" else f"{row['target']} {baseline}"


def shape_ratios(run: Any, row: dict[str, str]) -> dict[str, float]:
    """Requests/s of `row` over its baseline's, per scenario (nan when either is missing): the
    median over rounds of the paired measurements (bench.run._shape_paired), or, for a run
    recorded before those, the ratio of the two rows' medians."""
    ratios = {}
    paired = getattr(run, "paired", {}).get(row["name"], {})
    for scenario in SHAPE_SCENARIOS:
        if paired.get(scenario):
            ratios[scenario] = _median(paired[scenario])
            continue
        ours = _median(_field(run, row["name"], scenario, "rps"))
        theirs = _median(_field(run, _baseline_row(row), scenario, "rps"))
        ratios[scenario] = ratio_of(ours, theirs)
    return ratios


def ratio_of(ours: float, theirs: float) -> float:
    """ours / theirs, nan when either is missing (or theirs is 0: nothing to compare with)."""
    return ours / theirs if theirs and not math.isnan(theirs) else float("nan")


def _percent(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0%}"


def targets_check(run: Any) -> list[tuple[str, str, str]]:
    """(target, measured, PASS/FAIL) rows for the goals of issues 8 and 11."""
    rows: list[tuple[str, str, str]] = []
    names = {t["name"] for t in run.targets}

    def rps(target: str, scenario: str) -> float:
        return _median(_field(run, target, scenario, "rps"))

    prod = "production"
    if run.wrk:
        c1, c64 = rps(prod, "c1"), rps(prod, "c64")
        ratio = c64 / c1 if c1 else float("nan")
        rows.append(
            (
                "production: throughput at c=64 ≥ 90% of its own at c=1",
                f"{c64:,.0f} / {c1:,.0f} = {ratio:.0%}",
                _verdict(ratio >= 0.9),
            )
        )
        ratios = {s: rps(prod, s) / rps("reference", s) for s in ("c1", "c16", "c64", "stream16")}
        rows.append(
            (
                "production: ≥ 80% of the reference Django forwarder (every column)",
                ", ".join(f"{s} {v:.0%}" for s, v in ratios.items()),
                _verdict(min(ratios.values()) >= 0.8),
            )
        )
        if "litellm" in names:
            ratios = {s: rps(prod, s) / rps("litellm", s) for s in ("c1", "c16", "c64", "stream16")}
            rows.append(
                (
                    "production: ≥ 8× LiteLLM's proxy (every column)",
                    ", ".join(f"{s} {v:.1f}×" for s, v in ratios.items()),
                    _verdict(min(ratios.values()) >= 8),
                )
            )
        else:
            rows.append(("production: ≥ 8× LiteLLM's proxy", "not measured", "n/a"))
    if run.wrk and "compare" in names:
        rows.append(_compare_target(run))
    for mode, how in (("ramp", "opened over 5 s"), ("burst", "opened at once")):
        held = run.long_streams.get(prod, {}).get(mode)
        direct = run.long_streams.get("direct", {}).get(mode)
        if not (held and direct):
            continue
        rows.append(
            (
                f"production: {held['streams']:,} concurrent long streams ({how}), none dropped",
                f"{held['dropped']} dropped",
                _verdict(held["dropped"] == 0),
            )
        )
        rows.append(
            (
                f"production: RSS with them ({how}) < 300 MB",
                f"{held['rss_peak_mb']:.0f} MB peak",
                _verdict(held["rss_peak_mb"] < 300),
            )
        )
        late = held["first_chunk_p99_ms"] - direct["first_chunk_p99_ms"]
        rows.append(
            (
                f"production: first-chunk p99 ({how}) within 50 ms of direct",
                f"{held['first_chunk_p99_ms']:,.0f} ms vs {direct['first_chunk_p99_ms']:,.0f} ms "
                f"({late:+,.0f} ms)",
                _verdict(late <= 50),
            )
        )
    for row in _shape_rows(run, prod):
        ratios = shape_ratios(run, row)
        values = [v for v in ratios.values() if not math.isnan(v)]
        rows.append(
            (
                f"production: {row['label']} ≥ 70% of {BASELINE_LABELS[row['baseline']]}",
                ", ".join(f"{s} {_percent(v)}" for s, v in ratios.items()),
                _verdict(min(values) >= SHAPE_TARGET if len(values) == len(ratios) else None),
            )
        )
    for row in _shape_rows(run, prod, skipped=True):
        rows.append(
            (
                f"production: {row['label']} ≥ 70% of {BASELINE_LABELS[row['baseline']]}",
                f"skipped: {row['skipped']}",
                "n/a",
            )
        )
    for selection in run.selection:
        results = {r["credentials"]: r["us_per_pick"] for r in selection["results"]}
        if 10 in results and 10000 in results:
            growth = results[10000] / results[10]
            rows.append(
                (
                    f"selection ({selection['backend']}, {selection['database']}): "
                    "10 → 10,000 credentials grows < 2×",
                    f"{results[10]:,.0f} → {results[10000]:,.0f} µs = {growth:.2f}×",
                    _verdict(growth < 2),
                )
            )
    for name, value in run.overhead_header.items():
        if not name.endswith("median"):
            rows.append(
                (
                    f"{name}: every response carries X-Rotator-Overhead-Ms",
                    value,
                    _verdict(value.startswith("present")),
                )
            )
    return rows


COMPARE_TARGET = 0.95  # issue 11: throughput and CPU per request within 5% of before


def _compare_target(run: Any) -> tuple[str, str, str]:
    """Issue 11's before/after row: this tree's chat on an API key against `--compare`'s, in
    requests/s and in CPU per request (> 1 is better), in every column."""
    cells, ratios = [], []
    for scenario in ("c1", "c16", "c64", "stream16"):
        pair = []
        for name in ("rps", "cpu_ms_per_request"):
            ours = _median(_field(run, "production", scenario, name))
            theirs = _median(_field(run, "compare", scenario, name))
            pair.append(ratio_of(ours, theirs) if name == "rps" else ratio_of(theirs, ours))
        ratios += pair
        cells.append(f"{scenario} {pair[0]:.2f}× / {pair[1]:.2f}×")
    measured = [r for r in ratios if not math.isnan(r)]
    return (
        "production against --compare: requests/s / CPU per request ≥ 0.95× (every column)",
        ", ".join(cells),
        _verdict(min(measured) >= COMPARE_TARGET if len(measured) == len(ratios) else None),
    )


def _table_rows(run: Any, labels: dict[str, str]) -> list[tuple[str, str]]:
    """(row name, label as shown) for the wrk tables: each target, then its other shapes."""
    rows = []
    for name, label in labels.items():
        rows.append((name, label))
        rows.extend((row["name"], f"↳ {row['label']}") for row in _shape_rows(run, name))
    return rows


def report_render(run: Any) -> str:
    """The whole results section as Markdown."""
    labels = {t["name"]: t["label"] for t in run.targets}
    out: list[str] = []
    out.append(f"Run {run.started_at}, {run.duration_seconds / 60:.1f} minutes: `{run.command}`")
    out.append("")
    machine = run.machine
    out.append(
        f"Machine: {machine['cpu']}, {machine['memory']}, Linux {machine['kernel']}, "
        f"Python {machine['python']}, {machine['wrk']}; {machine['packages']}. "
        f"Load average (1/5/15 min) at start, after the wrk rounds, at the end: "
        f"{' | '.join(run.load_average)}."
    )
    out.append("")
    rounds = max((len(v) for t in run.wrk.values() for v in t.values()), default=0)
    out.append(
        f"Each server process pinned to core 1, wrk (`-t1`) and the fake upstream to core 0; "
        f"{rounds} interleaved rounds (every target once per measurement before the next "
        f"measurement starts); ranges are min–max over rounds, ratios use medians."
    )
    out.append("")
    out.append(
        "**Chat completions, requests/s** (stream: 20 chunks, no delay; a target's ↳ rows are "
        "its other request shapes: dialect, credential kind)"
    )
    out.append("")
    out.append("| target | c=1 | c=16 | c=64 | stream c=16 | errors |")
    out.append("|---|---|---|---|---|---|")
    for name, shown in _table_rows(run, labels):
        cells = [_span(_field(run, name, s, "rps")) for s in ("c1", "c16", "c64", "stream16")]
        errors = sum(
            int(e) for s in ("c1", "c16", "c64", "stream16") for e in _field(run, name, s, "errors")
        )
        out.append(f"| {shown} | " + " | ".join(cells) + f" | {errors} |")
    out.append("")
    out.append("**Latency p50 / p99 (ms) and server CPU per request (ms)**")
    out.append("")
    out.append(
        "| target | c=1 | c=16 | c=64 | stream c=16 | CPU ms/req c=1 · c=16 · c=64 · stream |"
    )
    out.append("|---|---|---|---|---|---|")
    for name, shown in _table_rows(run, labels):
        cells = []
        for scenario in ("c1", "c16", "c64", "stream16"):
            p50 = _median(_field(run, name, scenario, "p50_ms"))
            p99 = _median(_field(run, name, scenario, "p99_ms"))
            cells.append("–" if math.isnan(p50) else f"{p50:,.1f} / {p99:,.1f}")
        cpu = " · ".join(
            _span(_field(run, name, s, "cpu_ms_per_request"), 2)
            for s in ("c1", "c16", "c64", "stream16")
        )
        out.append(f"| {shown} | " + " | ".join(cells) + f" | {cpu} |")
    out.append("")
    shape_rows = [r for name in labels for r in _shape_rows(run, name)]
    if shape_rows:
        out.append(
            "**Other request shapes against chat completions** (requests/s ratio, measured "
            "in slices alternating with the row compared with, median over rounds; issue 11 "
            "asks ≥ 70%: chat on OAuth against the API-key passthrough, every other dialect "
            "against chat on the same credential kind)"
        )
        out.append("")
        out.append("| target | shape | against | c=16 | stream c=16 |")
        out.append("|---|---|---|---|---|")
        for row in shape_rows:
            ratios = shape_ratios(run, row)
            out.append(
                f"| {labels[row['target']]} | {row['label']} | "
                f"{BASELINE_LABELS[row['baseline']]} | "
                + " | ".join(_percent(ratios[s]) for s in SHAPE_SCENARIOS)
                + " |"
            )
        out.append("")
    if "compare" in labels and "production" in labels:
        out.append(
            f"**This tree against {labels['compare'].removeprefix('Rotator, production, ')}** "
            "(production profile, medians; > 1 means this tree is better)"
        )
        out.append("")
        out.append("| | c=1 | c=16 | c=64 | stream c=16 |")
        out.append("|---|---|---|---|---|")
        scenarios = ("c1", "c16", "c64", "stream16")
        # API-key chat first, then every other shape both trees answered.
        pairs = [("production", "compare", "")]
        theirs_rows = {r["shape"]: r["name"] for r in _shape_rows(run, "compare")}
        for row in _shape_rows(run, "production"):
            if row["shape"] in theirs_rows:
                pairs.append((row["name"], theirs_rows[row["shape"]], f"{row['label']}: "))
        for ours_row, theirs_row, prefix in pairs:
            for name, better in (
                ("rps", "requests/s ratio"),
                ("cpu_ms_per_request", "CPU ms ratio"),
            ):
                cells = []
                for scenario in scenarios:
                    ours = _median(_field(run, ours_row, scenario, name))
                    theirs = _median(_field(run, theirs_row, scenario, name))
                    ratio = ratio_of(ours, theirs) if name == "rps" else ratio_of(theirs, ours)
                    cells.append("–" if math.isnan(ratio) else f"{ratio:.2f}×")
                out.append(f"| {prefix}{better} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("**Time to first chunk, streams at c=16** (asyncio client, 3 s per round)")
    out.append("")
    out.append("| target | streams | failed | p50 ms | p99 ms |")
    out.append("|---|---|---|---|---|")
    for name, label in labels.items():
        rounds_ = run.first_chunk.get(name, [])
        out.append(
            f"| {label} | {sum(r['streams'] for r in rounds_):,} | "
            f"{sum(r['failures'] for r in rounds_)} | "
            f"{_span([r['p50_ms'] for r in rounds_], 1)} | "
            f"{_span([r['p99_ms'] for r in rounds_], 1)} |"
        )
    out.append("")
    for mode, how in (("ramp", "opened evenly over 5 s"), ("burst", "all opened at once")):
        present = [n for n in labels if mode in run.long_streams.get(n, {})]
        if not present:
            continue
        count = run.long_streams[present[0]][mode]["streams"]
        out.append(
            f"**{count:,} concurrent long streams, {how}** (20 chunks 0.5 s apart, "
            "one server process)"
        )
        out.append("")
        out.append(
            "| target | completed | dropped | first chunk p50 / p99 ms | stream length p50 s | "
            "RSS before → peak MB |"
        )
        out.append("|---|---|---|---|---|---|")
        for name in present:
            held = run.long_streams[name][mode]
            errors = f" ({', '.join(held['errors'])})" if held["errors"] else ""
            out.append(
                f"| {labels[name]} | {held['completed']:,} | {held['dropped']}{errors} | "
                f"{held['first_chunk_p50_ms']:,.0f} / {held['first_chunk_p99_ms']:,.0f} | "
                f"{held['length_p50_s']:.2f} | "
                f"{held['rss_before_mb']:.0f} → {held['rss_peak_mb']:.0f} |"
            )
        out.append("")
    if run.selection:
        out.append(
            "**Selection cost**, µs per `rotator.pool.credential_pick` in one process, "
            "90% of the credentials cooling down for the model (scattered), round robin"
        )
        out.append("")
        out.append("| backend | picks | 10 | 1,000 | 10,000 | growth 10 → 10,000 |")
        out.append("|---|---|---|---|---|---|")
        for selection in run.selection:
            results = {r["credentials"]: r for r in selection["results"]}
            cells = [
                f"{results[n]['us_per_pick']:,.0f}" if n in results else "–"
                for n in (10, 1000, 10000)
            ]
            growth = (
                results[10000]["us_per_pick"] / results[10]["us_per_pick"]
                if 10 in results and 10000 in results
                else float("nan")
            )
            picks = next(iter(results.values()))["picks"]
            out.append(
                f"| {selection['backend']} state on {selection['database']} | {picks:,} | "
                + " | ".join(cells)
                + f" | {growth:.2f}× |"
            )
        out.append("")
    medians = {k: v for k, v in run.overhead_header.items() if k.endswith("median")}
    if medians:
        out.append(
            "X-Rotator-Overhead-Ms reported by Rotator itself (median of 200 sequential "
            "requests): "
            + ", ".join(f"{k.removesuffix(' median')} {v} ms" for k, v in medians.items())
            + "."
        )
        out.append("")
    out.append("**Targets (issues 8 and 11)**")
    out.append("")
    out.append("| target | measured | result |")
    out.append("|---|---|---|")
    for goal, measured, verdict in targets_check(run):
        out.append(f"| {goal} | {measured} | **{verdict}** |")
    for note in run.notes:
        out.append("")
        out.append(f"Note: {note}")
    return "\n".join(out) + "\n"


def document_update(*, path: Path, results: str) -> None:
    """Replaces the results section of `path` (creating the file if needed)."""
    block = f"{BEGIN}\n{results}{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, _, rest = text.partition(BEGIN)
            _, _, tail = rest.partition(END)
            path.write_text(head + block + tail)
            return
        path.write_text(text.rstrip("\n") + "\n\n## Results\n\n" + block + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Performance\n\n## Results\n\n{block}\n")
