"""Helpers shared by the load, fault and secret tests: server processes, Redis, a TCP gate."""
