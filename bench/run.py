"""The benchmark run: start every target, drive them in one interleaved run, check the
targets of issues 8 and 11, print the table and write it to docs/performance.md.
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import load, report, servers, shapes
from bench.servers import Target
from bench.shapes import Shape

SCENARIOS = (
    ("c1", 1, False),
    ("c16", 16, False),
    ("c64", 64, False),
    ("stream16", 16, True),
)
LONG_STREAM_MODEL = "gemini-2.5-flash-lite"
LONG_STREAM_CHUNKS = 20
LONG_STREAM_DELAY_SECONDS = 0.5
# Streams last about 10 s; opened over 5 s, all of them are held at once from then on, and
# the first chunk measures a server holding them rather than a queue of 1,000 handshakes.
LONG_STREAM_RAMP_SECONDS = 5.0


@dataclass
class Run:
    """Everything measured in one run, as the report reads it."""

    command: str
    started_at: str
    machine: dict[str, str]
    targets: list[dict[str, str]] = field(default_factory=list)
    # Rows for the other request shapes (bench.shapes), measured or skipped (with why).
    rows: list[dict[str, str]] = field(default_factory=list)
    wrk: dict[str, dict[str, list[dict[str, float]]]] = field(default_factory=dict)
    first_chunk: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    long_streams: dict[str, dict[str, dict[str, object]]] = field(default_factory=dict)
    selection: list[dict[str, object]] = field(default_factory=list)
    # Per shape row and scenario, one ratio per round: its requests/s over its baseline's,
    # measured in alternating slices (see _shape_paired).
    paired: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    overhead_header: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load_average: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0


def _machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for package in ("django", "uvicorn", "uvloop", "httpx", "httpx-aiohttp", "aiohttp", "redis"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # a missing package is reported as such
            versions[package] = "?"
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return {
        "cpu": f"{os.cpu_count()} × {cpu}",
        "memory": f"{memory_kb / 2**20:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version.split("[")[0].strip() or "?",
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _overhead_check(target: Target) -> str:
    """Every Rotator response carries X-Rotator-Overhead-Ms: check a plain, a streamed and
    a refused request. Returns "" when all carry it, else what was missing."""
    missing = []
    requests = [
        ("chat", servers.chat_body(), target.authorization),
        ("stream", servers.chat_body(stream=True), target.authorization),
        ("refused", servers.chat_body(), "Bearer rk-not-a-key-000000000000"),
    ]
    values = []
    for name, body, authorization in requests:
        response = httpx.post(
            target.url,
            content=body,
            headers={"authorization": authorization, "content-type": "application/json"},
            timeout=30,
        )
        value = response.headers.get("x-rotator-overhead-ms")
        if value is None:
            missing.append(f"{name} ({response.status_code})")
        else:
            values.append(f"{name} {value} ms")
    return "missing on " + ", ".join(missing) if missing else "present: " + ", ".join(values)


def _shape_probe(target: Target, shape: Shape) -> tuple[int, str]:
    """(0, "") when `shape` answers 200 on `target` whole and streamed, else the first
    other status and what it said."""
    headers = shape.dialect.headers(shape.authorization(target))
    for stream in (False, True):
        response = httpx.post(
            shape.url(target),
            content=shape.dialect.body(stream=stream),
            headers=headers,
            timeout=30,
        )
        if response.status_code != 200:
            how = "streamed" if stream else "whole"
            return response.status_code, f"{how}: {response.text[:200]}"
    return 0, ""


def _shapes_choose(run: Run, targets: list[Target]) -> list[tuple[Target, Shape]]:
    """The (target, shape) pairs to measure. A route answering 404 is not built in that tree
    yet, and the compare checkout may not serve the OAuth pool: both are skipped with a note.
    The translated chat row (issue 11) failing on this tree stops the run."""
    chosen = []
    # reason → target → credential kinds, so that one note says what one missing route cost.
    skipped_by_reason: dict[str, dict[str, list[str]]] = {}
    for target in targets:
        if not target.is_rotator:
            continue
        for shape in shapes.SHAPES:
            status, said = _shape_probe(target, shape)
            skipped = ""
            if status == 404 and not shape.required:
                skipped = f"{shape.dialect.path} answered 404 (a route that code does not have)"
            elif status:
                skipped = f"{shape.dialect.path} answered {status} ({said})"
                if shape.required and target.name != "compare":
                    raise RuntimeError(f"{shape.label} on {target.name}: {skipped}")
            run.rows.append(
                {
                    "name": shape.row(target),
                    "label": shape.label,
                    "target": target.name,
                    "shape": shape.key,
                    "baseline": shape.baseline,
                    "skipped": skipped,
                }
            )
            if skipped:
                kinds = skipped_by_reason.setdefault(skipped, {}).setdefault(target.name, [])
                kinds.append(shape.kind.replace("_", " "))
            else:
                chosen.append((target, shape))
    for reason, by_target in skipped_by_reason.items():
        where = "; ".join(f"{name} ({', '.join(kinds)})" for name, kinds in by_target.items())
        run.notes.append(f"not measured on {where}: {reason}.")
        _say(run.notes[-1])
    return chosen


def _shape_wrk(
    *, target: Target, shape: Shape, stream: bool, connections: int, seconds: int
) -> load.WrkResult:
    return load.wrk_run(
        target=target,
        body=shape.dialect.body(stream=stream),
        connections=connections,
        seconds=seconds,
        url=shape.url(target),
        headers=shape.dialect.headers(shape.authorization(target)),
    )


# A shape and its baseline are measured in this many slices each, alternating.
PAIRED_SLICES = 4


def _baseline_wrk(
    *, target: Target, shape: Shape, stream: bool, connections: int, seconds: int
) -> load.WrkResult:
    baseline = shape.baseline_shape
    if baseline is None:
        body = servers.chat_body(stream=stream)
        return load.wrk_run(target=target, body=body, connections=connections, seconds=seconds)
    return _shape_wrk(
        target=target, shape=baseline, stream=stream, connections=connections, seconds=seconds
    )


def _shape_paired(
    *, target: Target, shape: Shape, stream: bool, connections: int, seconds: int
) -> tuple[load.WrkResult, float]:
    """Measures `shape` in PAIRED_SLICES slices that alternate with its baseline's (A B B A
    A B B A), `seconds` in all for each. Returns the shape's result over its slices and its
    requests/s over the baseline's in the same span.

    This machine's speed drifts by up to 2x within minutes (docs/performance.md): a shape
    measured 10-20 s after the row it is compared with could land on either side of a drift,
    and its ratio said more about the machine than about the code. Alternating slices put
    both through the same drift."""
    slice_seconds = max(1, round(seconds / PAIRED_SLICES))
    ours: list[load.WrkResult] = []
    theirs: list[load.WrkResult] = []
    for number in range(PAIRED_SLICES):
        for mine in (True, False) if number % 2 == 0 else (False, True):
            measure = _shape_wrk if mine else _baseline_wrk
            result = measure(
                target=target,
                shape=shape,
                stream=stream,
                connections=connections,
                seconds=slice_seconds,
            )
            (ours if mine else theirs).append(result)
    merged = load.wrk_results_merge(ours)
    return merged, report.ratio_of(merged.rps, load.wrk_results_merge(theirs).rps)


def _overhead_median(target: Target, *, requests: int = 200) -> float:
    """The median X-Rotator-Overhead-Ms over sequential requests (what Rotator reports)."""
    values = []
    with httpx.Client(timeout=30) as client:
        for _ in range(requests):
            response = client.post(
                target.url,
                content=servers.chat_body(),
                headers={"authorization": target.authorization, "content-type": "application/json"},
            )
            values.append(float(response.headers["x-rotator-overhead-ms"]))
    return statistics.median(values)


def _selection(*, env: dict[str, str], picks: int, sizes: list[int]) -> dict[str, object]:
    command = [
        "taskset", "-c", servers.SERVER_CORE, sys.executable, "-m", "bench.selection",
        "--picks", str(picks), "--sizes", *map(str, sizes),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=servers.ROOT, capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("SELECTION_JSON ")), None)
    if line is None:
        raise RuntimeError(f"selection failed: {done.stderr[-2000:]}")
    return json.loads(line.removeprefix("SELECTION_JSON "))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--seconds", type=int, default=5, help="per wrk measurement")
    parser.add_argument("--long-streams", type=int, default=1000)
    parser.add_argument(
        "--litellm-venv",
        default="/tmp/litellm-venv",
        help="a virtualenv with litellm[proxy] installed; skipped when missing",
    )
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument(
        "--compare",
        metavar="DIR",
        help="also run the production profile from another checkout (before/after in one run)",
    )
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/rotator_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--selection-picks", type=int, default=2000)
    parser.add_argument("--out", default=str(servers.ROOT / "docs" / "performance.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--phases",
        default="wrk,first-chunk,long-streams,selection",
        help="comma-separated subset of: wrk, first-chunk, long-streams, selection",
    )
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    # The orchestrator and its clients stay on the load generator's core.
    os.sched_setaffinity(0, {int(servers.LOAD_CORE)})
    began = time.monotonic()
    shown_args = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    run = Run(
        command=f"python -m bench {shown_args}".strip(),
        started_at=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        machine=_machine(),
    )
    run.load_average.append(_load_average())
    workdir = Path(tempfile.mkdtemp(prefix="rotator-bench-"))
    _say(f"logs in {workdir}")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    fake_process, fake_url = servers.fake_start(workdir=workdir)
    servers.fake_oauth_add(fake_url)
    targets: list[Target] = [servers.direct_target(fake_process=fake_process, fake_url=fake_url)]
    try:
        _say("starting the reference forwarder and Rotator (production, embedded)")
        targets.append(servers.reference_start(fake_url=fake_url, workdir=workdir))
        targets.append(
            servers.rotator_production(
                fake_url=fake_url,
                workdir=workdir,
                database_url=args.database_url,
                redis_url=args.redis_url,
                prefix=prefix,
            )
        )
        if args.compare:
            targets.append(
                servers.rotator_compare(
                    source=Path(args.compare),
                    fake_url=fake_url,
                    workdir=workdir,
                    database_url=args.database_url,
                    redis_url=args.redis_url,
                    prefix=f"{prefix}-compare",
                )
            )
        targets.append(servers.rotator_embedded(fake_url=fake_url, workdir=workdir))
        if not args.no_litellm:
            _say("starting LiteLLM's proxy (slow to start)")
            try:
                targets.append(
                    servers.litellm_start(
                        venv=Path(args.litellm_venv), fake_url=fake_url, workdir=workdir
                    )
                )
            except (FileNotFoundError, RuntimeError) as exc:
                run.notes.append(f"LiteLLM not measured: {exc}")
                _say(run.notes[-1])
        for target in list(targets):
            try:
                servers.target_check(target)
            except (RuntimeError, httpx.HTTPError) as exc:
                if target.name != "litellm":
                    raise
                run.notes.append(f"LiteLLM not measured: {exc}")
                servers.process_stop(target.process)
                targets.remove(target)
        run.targets = [{"name": t.name, "label": t.label} for t in targets]
        for target in targets:
            if target.is_rotator:
                run.overhead_header[target.name] = _overhead_check(target)
        measured = _shapes_choose(run, targets) if "wrk" in phases else []
        _say("warming up")
        for target in targets:
            load.wrk_run(target=target, body=servers.chat_body(), connections=16, seconds=2)
        for target, shape in measured:
            _shape_wrk(target=target, shape=shape, stream=False, connections=16, seconds=1)
        for target in targets:
            if target.is_rotator:
                run.overhead_header[f"{target.name} median"] = f"{_overhead_median(target):.2f}"

        for number in range(args.rounds):
            for scenario, connections, stream in SCENARIOS if "wrk" in phases else ():
                for target in targets:
                    _say(f"round {number + 1}: {scenario} on {target.name}")
                    result = load.wrk_run(
                        target=target,
                        body=servers.chat_body(stream=stream),
                        connections=connections,
                        seconds=args.seconds,
                    )
                    run.wrk.setdefault(target.name, {}).setdefault(scenario, []).append(
                        {**result.__dict__, "rps": result.rps}
                    )
                # The other shapes in the same measurement, so they share its conditions.
                for target, shape in measured if scenario in shapes.SCENARIOS else ():
                    name = shape.row(target)
                    _say(f"round {number + 1}: {scenario} on {name}")
                    result, ratio = _shape_paired(
                        target=target,
                        shape=shape,
                        stream=stream,
                        connections=connections,
                        seconds=args.seconds,
                    )
                    run.wrk.setdefault(name, {}).setdefault(scenario, []).append(
                        {**result.__dict__, "rps": result.rps}
                    )
                    run.paired.setdefault(name, {}).setdefault(scenario, []).append(ratio)
            for target in targets if "first-chunk" in phases else ():
                _say(f"round {number + 1}: time to first chunk on {target.name}")
                first = load.first_chunk_measure(
                    target=target,
                    body=servers.chat_body(stream=True),
                    concurrency=16,
                    seconds=3,
                )
                run.first_chunk.setdefault(target.name, []).append(first.__dict__)
        run.load_average.append(_load_average())

        # Long streams: 20 chunks 0.5 s apart on their own model, so nothing else slows down.
        for target in targets:
            for secret in target.upstream_secrets:
                servers.fake_behave(
                    fake_url,
                    secret=secret,
                    behaviour="ok",
                    model=LONG_STREAM_MODEL,
                    chunks=LONG_STREAM_CHUNKS,
                    chunk_delay=LONG_STREAM_DELAY_SECONDS,
                )
        long_body = servers.chat_body(model=LONG_STREAM_MODEL, stream=True)
        for mode, ramp_seconds in (("ramp", LONG_STREAM_RAMP_SECONDS), ("burst", 0.0)):
            for target in targets if "long-streams" in phases else ():
                _say(f"{args.long_streams} long streams ({mode}) on {target.name}")
                held = load.long_streams_hold(
                    target=target,
                    body=long_body,
                    count=args.long_streams,
                    chunks=LONG_STREAM_CHUNKS,
                    timeout_seconds=45,
                    ramp_seconds=ramp_seconds,
                )
                run.long_streams.setdefault(target.name, {})[mode] = held.__dict__
                time.sleep(1)
        servers.fake_reset(fake_url)
    finally:
        for target in targets[1:]:
            servers.process_stop(target.process)
        servers.process_stop(fake_process)

    try:
        if "selection" in phases:
            _selection_all(run, args=args, prefix=prefix, workdir=workdir)
    finally:
        dropped = servers.redis_keys_drop(url=args.redis_url, prefix=prefix)
        _say(f"dropped {dropped} Redis keys under {prefix}")
    run.duration_seconds = time.monotonic() - began
    run.load_average.append(_load_average())

    text = report.report_render(run)
    print(text)
    if not args.no_write:
        report.document_update(path=Path(args.out), results=text)
        _say(f"wrote {args.out}")
    (workdir / "run.json").write_text(json.dumps(run.__dict__, indent=1, default=str))
    _say(f"raw numbers in {workdir / 'run.json'}")


def _selection_all(run: Run, *, args: argparse.Namespace, prefix: str, workdir: Path) -> None:
    _say("selection cost (Redis backend, then the database backends)")
    base_env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "ROTATOR_VAR_DIR")
    }
    base_env.update(
        {"SECRET_KEY": "bench-secret-key-not-for-production-0123456789", "LOG_LEVEL": "WARNING"}
    )
    sizes = [10, 1000, 10000]
    run.selection.append(
        _selection(
            env={
                **base_env,
                "DATABASE_URL": args.database_url,
                "REDIS_URL": args.redis_url,
                "STATE_KEY_PREFIX": f"{prefix}-selection",
            },
            picks=args.selection_picks,
            sizes=sizes,
        )
    )
    database_picks = max(100, args.selection_picks // 10)
    run.selection.append(
        _selection(
            env={**base_env, "DATABASE_URL": args.database_url},
            picks=database_picks,
            sizes=sizes,
        )
    )
    run.selection.append(
        _selection(
            env={**base_env, "ROTATOR_VAR_DIR": str(workdir / "embedded-var")},
            picks=database_picks,
            sizes=sizes,
        )
    )
