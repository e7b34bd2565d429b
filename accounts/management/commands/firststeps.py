"""firststeps: says how to create the first operator, key and credential while there are none."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.services import first_steps_pending

# Each missing piece and the command that adds it, after the operator's own command prefix.
STEPS = {
    "operator": ("createsuperuser", "an operator, for /admin and every pool on /stat"),
    "api_key": ("createapikey alice", "a user and their Rotator key, printed once"),
    "credential": (
        "addcredential alice --gemini-api-key AIza...",
        "an upstream credential in alice's pool (or --oauth-file oauth_creds.json)",
    ),
}


class Command(BaseCommand):
    help = (
        "Print how to create the first operator, API key and credential, for whichever of "
        "them the database has none of; print nothing once it has all three."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--prefix",
            default="rotator",
            metavar="PREFIX",
            help="How the operator runs management commands here (default: rotator).",
        )

    def handle(self, *args: Any, prefix: str, **options: Any) -> None:
        pending = first_steps_pending()
        if not pending:
            return
        lines = [f"{prefix} {STEPS[step][0]}" for step in pending]
        width = max(len(line) for line in lines)
        self.stdout.write("First run: Rotator needs these before it can serve anyone:")
        for step, line in zip(pending, lines, strict=True):
            self.stdout.write(f"  {line.ljust(width)}  # {STEPS[step][1]}")
