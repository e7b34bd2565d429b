"""resetquotas: ends every quota-exhausted mark now (all pools or one user's)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.management.arguments import user_by_name
from common import clock
from rotator.pool import quotas_reset


class Command(BaseCommand):
    help = (
        "Clear quota-exhausted marks now, before the daily reset (all pools, or USER's): for "
        "when the quota is known to be back. Rate-limit marks and invalid credentials stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USER", nargs="?")

    def handle(self, *args: Any, username: str | None, **options: Any) -> None:
        user_id = user_by_name(username).pk if username is not None else None
        self.stdout.write(quotas_reset(user_id=user_id, now=clock.now(), force=True).summary)
