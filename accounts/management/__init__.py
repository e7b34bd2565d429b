"""Management commands for keys and credentials, and what they share."""
