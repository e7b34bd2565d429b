"""rotateencryptionkey: re-encrypt every stored secret under ROTATOR_ENCRYPTION_KEY."""

from typing import Any

from django.core.management.base import BaseCommand

from accounts.encryption import encryption_key_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored credential under ROTATOR_ENCRYPTION_KEY, reading them with it "
        "or a key in ROTATOR_PREVIOUS_ENCRYPTION_KEYS, in one transaction."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(encryption_key_rotate().summary)
