"""Operator commands for keys and credentials: happy paths and one-line refusals."""

import io
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accounts.models import ApiKey, Credential
from accounts.secrets import digest
from accounts.services import OUR_KEY_RULE
from common import clock
from rotator.models import Mark

NEW_KEY = "AIzaAddedFromTheCommandLine00000000000000"
ENV_NAMES = ("API_KEYS", "ACCOUNTS", "GCP_SERVICE_ACCOUNT", "GCP_SERVICE_ACCOUNT_1")


def run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


@pytest.fixture
def no_import_environment(monkeypatch):
    for name in [*ENV_NAMES, *(n for n in os.environ if n.startswith("GCP_SERVICE_ACCOUNT"))]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def oauth_file(tmp_path: Path) -> Path:
    path = tmp_path / "oauth_creds.json"
    path.write_text(json.dumps({"refresh_token": "1//0gCommandLineRefresh-abcdefgh"}))
    return path


# --------------------------------------------------------------------------- createapikey


def test_createapikey_creates_the_user_and_prints_the_key_once(db):
    summary, key = run("createapikey", "dora", "--name", "laptop")
    assert summary.startswith("Created user dora and API key laptop (")
    assert "shown only this once" in summary
    api_key = ApiKey.objects.get(user__username="dora")
    assert api_key.digest == digest(key)
    assert api_key.name == "laptop"
    assert not User.objects.get(username="dora").has_usable_password()


def test_createapikey_for_an_existing_user_applies_every_option(alice):
    summary, key = run(
        "createapikey",
        "alice",
        "--key",
        "sk-what-clients-already-send",
        "--expires-days",
        "30",
        "--models",
        "gemini-2.5-pro, models/gemini-2.5-flash",
        "--rpm",
        "10",
        "--rpd",
        "1000",
    )
    assert summary.startswith("alice: API key")
    assert key == "sk-what-clients-already-send"
    api_key = ApiKey.objects.get(digest=digest(key))
    assert api_key.user == alice.user
    assert api_key.allowed_models == ["gemini-2.5-pro", "gemini-2.5-flash"]
    assert (api_key.requests_per_minute, api_key.requests_per_day) == (10, 1000)
    assert api_key.expires_at - clock.now() > timedelta(days=29, hours=23)


def test_createapikey_reads_the_key_from_standard_input(alice, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("sk-piped-in-not-in-history\n"))
    assert run("createapikey", "alice", "--key", "-")[1] == "sk-piped-in-not-in-history"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--key", "short"], OUR_KEY_RULE),
        (["--rpm", "0"], "must be a whole number of at least 1"),
        (["--expires-days", "soon"], "must be a whole number of at least 1"),
    ],
)
def test_createapikey_refuses_bad_input_and_creates_nobody(db, args, reason):
    with pytest.raises(CommandError, match=re.escape(reason)):
        run("createapikey", "erin", *args)
    assert not User.objects.filter(username="erin").exists()


def test_createapikey_refuses_a_key_that_is_already_registered(alice):
    with pytest.raises(CommandError, match="already registered"):
        run("createapikey", "alice", "--key", alice.key)


def test_createapikey_refuses_a_malformed_username(db):
    with pytest.raises(CommandError, match="bad username"):
        run("createapikey", "no spaces allowed")


# -------------------------------------------------------------------------- addcredential


def test_addcredential_adds_an_api_key(alice):
    (line,) = run(
        "addcredential",
        "alice",
        "--gemini-api-key",
        NEW_KEY,
        "--label",
        "spare",
        "--project-label",
        "p1",
    )
    added = Credential.objects.get(secret_digest=digest(NEW_KEY))
    assert line == f"alice: added #{added.pk} spare (AIza…0000) (Gemini API key)"
    assert (added.user, added.project_label) == (alice.user, "p1")
    assert NEW_KEY not in line


def test_addcredential_adds_an_oauth_file(charlie, oauth_file):
    (line,) = run("addcredential", "charlie", "--oauth-file", str(oauth_file))
    assert "(Gemini CLI OAuth account)" in line
    assert Credential.objects.get(user=charlie.user).kind == Credential.Kind.GEMINI_OAUTH


def test_addcredential_reports_a_duplicate(alice):
    (line,) = run("addcredential", "alice", "--gemini-api-key", alice.upstream_keys[1])
    assert line.endswith("is already in the pool; nothing added")
    assert Credential.objects.filter(user=alice.user).count() == 3


def test_addcredential_to_a_full_pool_replaces_the_oldest(alice, settings):
    settings.MAX_CREDENTIALS = 3
    (line,) = run("addcredential", "alice", "--gemini-api-key", NEW_KEY)
    assert f"the oldest, {alice.credentials[0].display_name}, was removed" in line
    assert not Credential.objects.filter(pk=alice.credentials[0].pk).exists()


def test_addcredential_reads_the_key_from_standard_input(alice, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(NEW_KEY + "\n"))
    run("addcredential", "alice", "--gemini-api-key", "-")
    assert Credential.objects.filter(secret_digest=digest(NEW_KEY)).exists()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["nobody", "--gemini-api-key", NEW_KEY], "no user named 'nobody'"),
        (["alice", "--gemini-api-key", "not a key"], "does not look like a Gemini API key"),
        (["alice", "--oauth-file", "/nonexistent/oauth.json"], "cannot read /nonexistent/"),
        (["alice"], "one of the arguments --gemini-api-key --oauth-file is required"),
    ],
)
def test_addcredential_refuses_bad_input(alice, args, reason):
    with pytest.raises(CommandError, match=reason):
        run("addcredential", *args)
    assert Credential.objects.filter(user=alice.user).count() == 3


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"refresh_token": "1//0g-cut', "must be a JSON object"),
        ('{"access_token": "ya29.x"}', "need a refresh_token"),
    ],
)
def test_addcredential_refuses_a_bad_oauth_file(alice, tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=reason) as refusal:
        run("addcredential", "alice", "--oauth-file", str(path))
    assert "1//0g-cut" not in str(refusal.value)


# ---------------------------------------------------------------------- importcredentials


def test_importcredentials_reads_the_environment_of_the_replaced_systems(
    charlie, no_import_environment
):
    no_import_environment.setenv("API_KEYS", f"{NEW_KEY},AIzaSecondFromEnv000000000000000000000")
    no_import_environment.setenv(
        "ACCOUNTS", json.dumps([{"refresh_token": "1//0g-env-account", "projectId": "proj-9"}])
    )
    no_import_environment.setenv("GCP_SERVICE_ACCOUNT_1", json.dumps({"refresh_token": "1//0g-sa"}))
    (line,) = run("importcredentials", "charlie")
    assert line == "charlie: 4 added, 0 updated, 0 duplicate(s), 0 replaced"
    assert Credential.objects.filter(user=charlie.user).count() == 4


def test_importcredentials_reads_a_file_and_reports_duplicates_and_rejects(bob, tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(f"{NEW_KEY}\n{bob.upstream_keys[0]}\nnope\n")
    (line,) = run("importcredentials", "bob", "--file", str(path))
    assert line.startswith(
        "bob: 1 added, 0 updated, 1 duplicate(s), 0 replaced; 1 rejected: line 3"
    )
    assert Credential.objects.filter(user=bob.user).count() == 3


def test_importcredentials_fails_when_nothing_could_be_imported(charlie, tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text("nope\nnot a key either\n")
    with pytest.raises(CommandError, match=r"nothing imported: .*2 rejected: line 1") as refusal:
        run("importcredentials", "charlie", "--file", str(path))
    assert "not a key either" not in str(refusal.value)


def test_importcredentials_fails_when_there_is_nothing_to_import(charlie, no_import_environment):
    with pytest.raises(CommandError, match="nothing to import: set API_KEYS"):
        run("importcredentials", "charlie")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["nobody"], "no user named 'nobody'"),
        (["charlie", "--file", "/nonexistent/keys.txt"], "cannot read /nonexistent/keys.txt"),
    ],
)
def test_importcredentials_refuses_bad_input(charlie, args, reason):
    with pytest.raises(CommandError, match=reason):
        run("importcredentials", *args)


# ------------------------------------------------------------------------ listcredentials


def test_listcredentials_shows_a_masked_table_with_cooldowns(alice, bob):
    Mark.objects.create(
        credential=alice.credentials[0],
        model="gemini-2.5-pro",
        reason=Mark.Reason.QUOTA_EXHAUSTED,
        until=clock.now() + timedelta(hours=3),
    )
    lines = run("listcredentials")
    header = ["ID", "USER", "KIND", "LABEL", "SECRET", "STATUS", "ENABLED", "COOLDOWNS"]
    assert lines[0].split() == header
    assert lines[-1] == "5 credential(s)"
    assert "gemini-2.5-pro quota_exhausted until" in lines[1]
    output = "\n".join(lines)
    for secret in alice.upstream_keys + bob.upstream_keys:
        assert secret not in output
    assert "AIza…xxxx" in output


def test_listcredentials_for_one_user(alice, bob):
    lines = run("listcredentials", "bob")
    assert lines[-1] == "2 credential(s)"
    assert all(" bob " in line for line in lines[1:-1])


def test_listcredentials_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run("listcredentials", "nobody")


# ----------------------------------------------------------------------- checkcredentials


def test_checkcredentials_checks_each_credential(bob):
    lines = run("checkcredentials", "bob")
    assert lines[-1] == "checked 2: 2 ok, 0 failed"
    assert lines[0] == f"#{bob.credentials[0].pk} bob {bob.credentials[0].display_name}: ok"


def test_checkcredentials_fails_and_marks_a_refused_credential(bob, fake_gemini):
    refused = bob.credentials[1]
    fake_gemini.behave(refused.secret(), "invalid_key")
    with pytest.raises(CommandError, match="checked 1: 0 ok, 1 failed"):
        run("checkcredentials", "--id", str(refused.pk))
    refused.refresh_from_db()
    assert refused.status == Credential.Status.INVALID


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["nobody"], "no user named 'nobody'"),
        (["charlie"], "no credentials to check"),
        (["--id", "999999"], "no credential with id 999999"),
        (["--id", "zero"], "must be a whole number of at least 1"),
    ],
)
def test_checkcredentials_refuses_bad_input(charlie, args, reason):
    with pytest.raises(CommandError, match=reason):
        run("checkcredentials", *args)


def test_checkcredentials_refuses_an_id_from_another_pool(alice, bob):
    with pytest.raises(CommandError, match="no credential with id"):
        run("checkcredentials", "bob", "--id", str(alice.credentials[0].pk))


# ----------------------------------------------------------------- from the command line


def test_a_refused_command_exits_non_zero_with_one_line(db):
    """Run as an operator would: the reason on one line of stderr, no traceback."""
    database = connection.settings_dict
    if database["ENGINE"].endswith("sqlite3"):
        url = f"sqlite:///{Path(database['NAME']).resolve()}"
    else:
        password = f":{database['PASSWORD']}" if database["PASSWORD"] else ""
        port = f":{database['PORT']}" if database["PORT"] else ""
        url = f"postgres://{database['USER']}{password}@{database['HOST']}{port}/{database['NAME']}"
    result = subprocess.run(
        [sys.executable, "manage.py", "listcredentials", "nobody"],
        cwd=django_settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "CommandError: no user named 'nobody' (createapikey nobody creates one)"
    ]
