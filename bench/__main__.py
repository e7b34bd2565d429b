"""`python -m bench`: the whole benchmark run (see bench/run.py and docs/performance.md)."""

from bench.run import main

main()
