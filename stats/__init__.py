"""Usage counters, the /stat dashboard, metrics."""
