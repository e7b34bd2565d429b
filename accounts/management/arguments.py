"""What operator commands share: finding the user, reading a secret or a file, numbers."""

import argparse
import sys

from django.contrib.auth.models import User
from django.core.management.base import CommandError

STDIN = "-"


def user_by_name(username: str) -> User:
    """Returns the user called `username`; raises CommandError naming it when there is none."""
    try:
        return User.objects.get(username=username)
    except User.DoesNotExist:
        raise CommandError(
            f"no user named {username!r} (createapikey {username} creates one)"
        ) from None


def text_read(path: str) -> str:
    """The UTF-8 text of the file at `path`, or of standard input for '-' (which keeps a
    secret out of the shell history). Raises CommandError saying why it cannot."""
    if path == STDIN:
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8-sig") as file:
            return file.read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CommandError(f"cannot read {path}: not UTF-8 text") from None


def secret_value(value: str) -> str:
    """A secret given on the command line, or read from standard input when it is '-'."""
    return sys.stdin.readline().strip() if value == STDIN else value


def positive_int(value: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return number
