"""A new install says how to add its first operator, key and credential, then goes quiet."""

import io

from django.contrib.auth.models import User
from django.core.management import call_command

PREFIX = ".venv/bin/python manage.py"


def firststeps() -> list[str]:
    out = io.StringIO()
    call_command("firststeps", "--prefix", PREFIX, stdout=out)
    return out.getvalue().splitlines()


def test_an_empty_database_gets_the_three_commands_to_run(db):
    heading, *steps = firststeps()
    assert "First run" in heading
    commands = [line.split("#")[0].strip() for line in steps]
    assert commands == [
        f"{PREFIX} createsuperuser",
        f"{PREFIX} createapikey alice",
        f"{PREFIX} addcredential alice --gemini-api-key AIza...",
    ]


def test_a_database_with_keys_but_no_operator_asks_only_for_the_operator(alice):
    _, *steps = firststeps()
    assert [line.split("#")[0].strip() for line in steps] == [f"{PREFIX} createsuperuser"]


def test_a_database_with_an_operator_a_key_and_a_credential_prints_nothing(alice):
    User.objects.create_superuser("root", password="root-password-1")
    assert firststeps() == []


def test_an_inactive_staff_user_is_no_operator(alice):
    User.objects.create_user("former", is_staff=True, is_active=False)
    assert len(firststeps()) == 2
