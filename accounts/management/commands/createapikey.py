"""createapikey: issues a Rotator API key to a user (creating the user first if needed)."""

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.management.arguments import positive_int, secret_value
from accounts.services import api_key_create
from common import clock

USERNAME_MAX_CHARS = 150  # django.contrib.auth's column


class Command(BaseCommand):
    help = (
        "Create a Rotator API key for USER, creating the user if it does not exist, and print "
        "the key once (only its hash is stored)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", metavar="USER")
        parser.add_argument("--name", default="", help="A name to recognise the key by.")
        parser.add_argument(
            "--key",
            metavar="VALUE",
            help="Register this existing key instead of generating one ('-' reads it from "
            "standard input).",
        )
        parser.add_argument(
            "--expires-days", type=positive_int, metavar="D", help="Expire after D days."
        )
        parser.add_argument(
            "--models",
            default="",
            metavar="m1,m2",
            help="Comma-separated models the key may use (default: all).",
        )
        parser.add_argument("--rpm", type=positive_int, help="Requests per minute allowed.")
        parser.add_argument("--rpd", type=positive_int, help="Requests per quota day allowed.")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        try:
            User.username_validator(username)
        except ValidationError as exc:
            raise CommandError(f"bad username {username!r}: {' '.join(exc.messages)}") from None
        if len(username) > USERNAME_MAX_CHARS:
            raise CommandError(f"bad username: longer than {USERNAME_MAX_CHARS} characters")
        key = options["key"]
        expires_days = options["expires_days"]
        arguments = {
            "name": options["name"],
            "secret": secret_value(key) if key is not None else None,
            "expires_at": clock.now() + timedelta(days=expires_days) if expires_days else None,
            "allowed_models": [m.strip() for m in options["models"].split(",") if m.strip()],
            "requests_per_minute": options["rpm"],
            "requests_per_day": options["rpd"],
        }
        # One transaction: a refused key must not leave a new, keyless user behind.
        with transaction.atomic():
            user = User.objects.filter(username=username).first()
            created = user is None
            if user is None:
                user = User.objects.create_user(username=username)
            try:
                api_key, secret = api_key_create(user=user, **arguments)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
        who = f"Created user {username} and" if created else f"{username}:"
        self.stdout.write(f"{who} API key {api_key}; it is shown only this once:")
        self.stdout.write(secret)
