"""listcredentials: a table of credentials with their state; secrets masked."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Prefetch

from accounts.management.arguments import user_by_name
from accounts.models import Credential
from common import clock
from rotator.models import Mark

COLUMNS = ("ID", "USER", "KIND", "LABEL", "SECRET", "STATUS", "ENABLED", "COOLDOWNS")


class Command(BaseCommand):
    help = "List every credential (or USER's) with status and active cooldowns; secrets masked."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USER", nargs="?")

    def handle(self, *args: Any, username: str | None, **options: Any) -> None:
        now = clock.now()
        active = Mark.objects.filter(until__gt=now).order_by("until")
        credentials = (
            Credential.objects.select_related("user")
            .prefetch_related(Prefetch("marks", queryset=active))
            .order_by("user__username", "position", "id")
        )
        if username is not None:
            credentials = credentials.filter(user=user_by_name(username))
        rows = [
            (
                str(c.pk),
                str(c.user),
                c.kind,
                c.label or "-",
                c.secret_mask,
                c.status,
                "yes" if c.enabled else "no",
                "; ".join(
                    f"{m.model} {m.reason} until {m.until:%Y-%m-%d %H:%M} UTC"
                    for m in c.marks.all()
                )
                or "-",
            )
            for c in credentials
        ]
        widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        for row in [COLUMNS, *rows]:
            cells = (value.ljust(width) for value, width in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
        self.stdout.write(f"{len(rows)} credential(s)")
