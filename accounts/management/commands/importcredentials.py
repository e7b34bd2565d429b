"""importcredentials: bulk import into a user's pool from a file or the environment variables
of the systems Rotator replaces."""

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.arguments import text_read, user_by_name
from accounts.services import credentials_import_env, credentials_import_text


class Command(BaseCommand):
    help = (
        "Import credentials into USER's pool. Without --file, reads API_KEYS (comma-separated "
        "Gemini API keys), ACCOUNTS (JSON array of {refresh_token, disabled, projectId}), "
        "GCP_SERVICE_ACCOUNT and GCP_SERVICE_ACCOUNT_1..N (OAuth JSON) from the environment. "
        "Duplicates are reported, not added again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USER")
        parser.add_argument(
            "--file",
            metavar="F",
            help="API keys one a line, or OAuth JSON (an object or an array); '-' reads "
            "standard input.",
        )

    def handle(self, *args: Any, username: str, file: str | None, **options: Any) -> None:
        user = user_by_name(username)
        if file is not None:
            summary = credentials_import_text(user=user, text=text_read(file))
        else:
            summary = credentials_import_env(user=user, environ=os.environ)
        if summary.created + summary.updated + summary.duplicates == 0:
            if summary.errors:
                raise CommandError(f"nothing imported: {summary.summary}")
            if file is not None:
                raise CommandError(f"nothing to import: {file} holds no credentials")
            raise CommandError(
                "nothing to import: set API_KEYS, ACCOUNTS or GCP_SERVICE_ACCOUNT[_N], "
                "or pass --file"
            )
        self.stdout.write(f"{username}: {summary.summary}")
