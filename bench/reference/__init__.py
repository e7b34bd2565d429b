"""The reference forwarder: the thinnest Django async view this stack can serve (no auth, no DB)."""
