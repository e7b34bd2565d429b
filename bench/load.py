"""Load generation: `wrk` (compiled, on its own core) for throughput and latency, and small
asyncio clients for what wrk cannot see: time to first chunk and many long streams.
"""

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.servers import LOAD_CORE, Target, process_cpu_seconds, process_rss_bytes

LUA = Path(__file__).resolve().parent / "post.lua"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_results_merge(results: list[WrkResult]) -> WrkResult:
    """One result for several runs of the same request: their requests, time and errors
    summed, CPU per request over all of them, the median of their latency percentiles."""
    requests = sum(r.requests for r in results)
    cpu_ms = sum(r.cpu_ms_per_request * r.requests for r in results)
    return WrkResult(
        requests=requests,
        seconds=sum(r.seconds for r in results),
        errors=sum(r.errors for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        cpu_ms_per_request=cpu_ms / requests if requests else 0.0,
    )


def wrk_run(
    *,
    target: Target,
    body: bytes,
    connections: int,
    seconds: int,
    timeout_seconds: int = 10,
    url: str | None = None,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """Drives `target` with wrk for `seconds`; measures the target's CPU over the same span.

    `url` and `headers` default to the target's chat completions route and bearer key."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    if headers is None:
        headers = {"Content-Type": "application/json", "Authorization": target.authorization}
    lines = "\n".join(f"{name}: {value}" for name, value in headers.items())
    env = {**os.environ, "BENCH_BODY": body.decode(), "BENCH_HEADERS": lines}
    command = [
        "taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
        f"--timeout={timeout_seconds}s", "-s", str(LUA), url or target.url,
    ]  # fmt: skip
    cpu_before = process_cpu_seconds(target.pid)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    cpu_after = process_cpu_seconds(target.pid)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout[-500:]} {done.stderr[-500:]}")
    summary = json.loads(line.removeprefix("BENCH_JSON "))
    requests = summary["requests"]
    errors = sum(summary["errors"].values())
    return WrkResult(
        requests=requests,
        seconds=summary["duration_us"] / 1e6,
        errors=errors,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        cpu_ms_per_request=(cpu_after - cpu_before) * 1000 / requests if requests else 0.0,
    )


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# ------------------------------------------------------------------ time to first chunk


@dataclass
class FirstChunkResult:
    streams: int
    failures: int
    p50_ms: float
    p99_ms: float


async def _first_chunks(
    *, target: Target, body: bytes, concurrency: int, seconds: float
) -> FirstChunkResult:
    first_chunk: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    headers = {"authorization": target.authorization, "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def worker() -> None:
            nonlocal failures
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    async with session.post(target.url, data=body, headers=headers) as response:
                        await response.content.readany()
                        first = time.perf_counter() - started
                        await response.read()
                        if response.status != 200:
                            failures += 1
                            continue
                        first_chunk.append(first)
                except (TimeoutError, aiohttp.ClientError):
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return FirstChunkResult(
        streams=len(first_chunk),
        failures=failures,
        p50_ms=_percentile(first_chunk, 0.5) * 1000,
        p99_ms=_percentile(first_chunk, 0.99) * 1000,
    )


def first_chunk_measure(
    *, target: Target, body: bytes, concurrency: int, seconds: float
) -> FirstChunkResult:
    """Streams back to back at `concurrency` for `seconds`; time from request to first bytes."""
    return asyncio.run(
        _first_chunks(target=target, body=body, concurrency=concurrency, seconds=seconds)
    )


# ------------------------------------------------------------------------ long streams


@dataclass
class LongStreamsResult:
    streams: int
    completed: int
    dropped: int
    first_chunk_p50_ms: float
    first_chunk_p99_ms: float
    length_p50_s: float
    rss_before_mb: float
    rss_peak_mb: float
    errors: list[str] = field(default_factory=list)


class _RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak = max(self.peak, process_rss_bytes(self.pid))
            self.stopped.wait(0.2)


async def _long_streams(
    *,
    target: Target,
    body: bytes,
    count: int,
    chunks: int,
    timeout_seconds: float,
    ramp_seconds: float,
) -> tuple[list[float], list[float], list[str]]:
    headers = {"authorization": target.authorization, "content-type": "application/json"}
    first_chunk: list[float] = []
    lengths: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_seconds)
    ) as session:

        async def one(delay: float) -> None:
            await asyncio.sleep(delay)
            started = time.perf_counter()
            try:
                async with session.post(target.url, data=body, headers=headers) as response:
                    if response.status != 200:
                        errors.append(f"status {response.status}")
                        await response.read()
                        return
                    first = await response.content.readany()
                    first_at = time.perf_counter() - started
                    received = first + await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors.append(type(exc).__name__)
                return
            events = received.count(b"data:")
            # Complete: every content chunk arrived and the stream ended properly.
            if b"[DONE]" not in received or events < chunks:
                errors.append(f"incomplete ({events} events)")
                return
            first_chunk.append(first_at)
            lengths.append(time.perf_counter() - started)

        await asyncio.gather(*(one(ramp_seconds * i / count) for i in range(count)))
    return first_chunk, lengths, errors


def long_streams_hold(
    *,
    target: Target,
    body: bytes,
    count: int,
    chunks: int,
    timeout_seconds: float,
    ramp_seconds: float,
) -> LongStreamsResult:
    """Opens `count` streams evenly over `ramp_seconds` (0: all at once) and holds them to
    their end, sampling the target's RSS."""
    rss_before = process_rss_bytes(target.pid)
    sampler = _RssSampler(target.pid)
    sampler.start()
    try:
        first_chunk, lengths, errors = asyncio.run(
            _long_streams(
                target=target,
                body=body,
                count=count,
                chunks=chunks,
                timeout_seconds=timeout_seconds,
                ramp_seconds=ramp_seconds,
            )
        )
    finally:
        sampler.stopped.set()
        sampler.join()
    return LongStreamsResult(
        streams=count,
        completed=len(lengths),
        dropped=count - len(lengths),
        first_chunk_p50_ms=_percentile(first_chunk, 0.5) * 1000,
        first_chunk_p99_ms=_percentile(first_chunk, 0.99) * 1000,
        length_p50_s=statistics.median(lengths) if lengths else float("nan"),
        rss_before_mb=rss_before / 2**20,
        rss_peak_mb=max(sampler.peak, rss_before) / 2**20,
        errors=sorted(set(errors))[:5],
    )
