"""The `rotator` command (pyproject's entry point): Django's management commands."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.boot import settings_load_or_exit

    settings_load_or_exit()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
