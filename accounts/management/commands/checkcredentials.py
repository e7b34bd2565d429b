"""checkcredentials: asks upstream whether credentials work; invalid ones are marked so."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.arguments import positive_int, user_by_name
from accounts.models import Credential
from common import clock
from rotator.credentials import credential_check


class Command(BaseCommand):
    help = (
        "Check credentials against upstream with one cheap call each (all, USER's, or --id N). "
        "A pass returns an invalid credential to the pool; a refusal marks it invalid. Exits "
        "non-zero when any check fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USER", nargs="?")
        parser.add_argument("--id", type=positive_int, dest="credential_id", metavar="N")

    def handle(
        self, *args: Any, username: str | None, credential_id: int | None, **options: Any
    ) -> None:
        credentials = Credential.objects.select_related("user").order_by("user_id", "position")
        if username is not None:
            credentials = credentials.filter(user=user_by_name(username))
        if credential_id is not None:
            credentials = credentials.filter(pk=credential_id)
        selected = list(credentials)
        if not selected:
            if credential_id is not None:
                raise CommandError(f"no credential with id {credential_id}")
            raise CommandError("no credentials to check")
        failed = 0
        for credential in selected:
            result = credential_check(credential=credential, now=clock.now())
            failed += not result.ok
            self.stdout.write(
                f"#{credential.pk} {credential.user} {credential.display_name}: {result.summary}"
            )
        summary = f"checked {len(selected)}: {len(selected) - failed} ok, {failed} failed"
        if failed:
            raise CommandError(summary)
        self.stdout.write(summary)
