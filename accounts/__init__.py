"""Users, their API keys for Rotator, and their upstream credentials."""
