"""rotate: moves a user's pool on to its next credential."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.management.arguments import user_by_name
from common import clock
from rotator.pool import pool_rotate


class Command(BaseCommand):
    help = (
        "Rotate USER's pool: the next credential becomes first in line, and every credential's "
        "'requests since rotation' count restarts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USER")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        result = pool_rotate(user_id=user_by_name(username).pk, now=clock.now())
        if result.first_credential is None:
            self.stdout.write(f"{username}: rotated, but no credential in the pool is usable")
        else:
            self.stdout.write(
                f"{username}: {result.first_credential.display_name} is now first "
                f"of {result.pool_size}"
            )
