"""Rotator's benchmark (issue 8): `python -m bench` prints the table, writes docs/performance.md."""
