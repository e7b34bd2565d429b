"""addcredential: adds one Gemini API key or Gemini CLI OAuth account to a user's pool."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.arguments import secret_value, text_read, user_by_name
from accounts.services import credential_add, oauth_account_parse


class Command(BaseCommand):
    help = (
        "Add a Gemini API key or a Gemini CLI OAuth account (oauth_creds.json) to USER's pool. "
        "A full pool (MAX_CREDENTIALS) drops its oldest credential; the same secret twice is "
        "reported, not added again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USER")
        secret = parser.add_mutually_exclusive_group(required=True)
        secret.add_argument(
            "--gemini-api-key", metavar="K", help="The API key ('-' reads it from standard input)."
        )
        secret.add_argument(
            "--oauth-file",
            metavar="F",
            help="The OAuth JSON file, e.g. ~/.gemini/oauth_creds.json ('-': standard input).",
        )
        parser.add_argument("--label", default="", help="A name to recognise it by.")
        parser.add_argument(
            "--project-label",
            default="",
            help="Its Google Cloud project; credentials with the same label share quota marks.",
        )

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user = user_by_name(username)
        given = {"label": options["label"], "project_label": options["project_label"]}
        try:
            if options["oauth_file"] is not None:
                path = options["oauth_file"]
                try:
                    oauth = oauth_account_parse(text_read(path))
                except ValidationError as exc:
                    raise CommandError(f"{path}: {' '.join(exc.messages)}") from None
                added = credential_add(user=user, oauth=oauth, **given)
            else:
                api_key = secret_value(options["gemini_api_key"])
                added = credential_add(user=user, api_key=api_key, **given)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        credential = added.credential
        name = f"#{credential.pk} {credential.display_name}"
        if added.action == "duplicate":
            self.stdout.write(f"{username}: {name} is already in the pool; nothing added")
        elif added.action == "updated":
            self.stdout.write(f"{username}: {name} was already in the pool; OAuth JSON updated")
        elif added.action == "replaced":
            self.stdout.write(
                f"{username}: added {name}; the pool was full, so the oldest, "
                f"{added.replaced_label}, was removed"
            )
        else:
            self.stdout.write(f"{username}: added {name} ({credential.get_kind_display()})")
