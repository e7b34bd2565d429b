"""Run the fake in the foreground: `python -m tests.fake_gemini --port 8090` (for benchmarks)."""

import argparse

from .server import FakeGemini


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_gemini", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="keep no per-request records (a long benchmark would otherwise grow without bound)",
    )
    parser.add_argument("--stream-chunks", type=int, default=3)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    args = parser.parse_args()
    fake = FakeGemini(
        record=not args.no_record,
        stream_chunks=args.stream_chunks,
        chunk_delay_seconds=args.chunk_delay,
    )
    fake.serve_forever(args.host, args.port)


if __name__ == "__main__":
    main()
