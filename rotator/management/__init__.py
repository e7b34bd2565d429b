"""Management commands for the rotation engine."""
