"""A deployment's settings: named hosts, HTTPS-only cookies and HSTS, private files."""

import os
import stat
import subprocess
import sys

import httpx
import pytest
from django.conf import settings

from tests.support.processes import Rotator

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_deployment_without_allowed_hosts_does_not_start(fake_gemini, tmp_path):
    log = tmp_path / "stderr"
    with log.open("wb") as stderr:
        server = Rotator(fake_gemini, env={"ALLOWED_HOSTS": None}, stderr=stderr)
        try:
            assert server.process.wait(timeout=60) != 0
        finally:
            server.stop()
    assert "ALLOWED_HOSTS is required" in log.read_text()


@pytest.fixture
def deployed(fake_gemini):
    """A server configured as behind a TLS proxy, which says so in X-Forwarded-Proto."""
    server = Rotator(fake_gemini, env={"ALLOWED_HOSTS": "rotator.example", "HTTPS": None})
    try:
        server.wait_answering()
        yield server
    finally:
        server.stop()


def test_behind_https_cookies_are_secure_and_browsers_are_told_to_stay(deployed):
    over_tls = {"host": "rotator.example", "x-forwarded-proto": "https"}
    response = httpx.get(f"{deployed.url}/admin/login/", headers=over_tls)
    assert response.status_code == 200
    assert "max-age=31536000" in response.headers["strict-transport-security"]
    cookie = response.headers["set-cookie"]
    assert "csrftoken=" in cookie and "Secure" in cookie
    plain = httpx.get(f"{deployed.url}/admin/login/", headers={"host": "rotator.example"})
    assert plain.status_code == 301
    assert plain.headers["location"].startswith("https://rotator.example/")


def test_a_host_not_in_allowed_hosts_is_refused(deployed):
    evil = {"host": "evil.example", "x-forwarded-proto": "https"}
    assert httpx.get(f"{deployed.url}/admin/login/", headers=evil).status_code == 400


def test_the_embedded_default_creates_its_secret_key_and_database_private(tmp_path):
    environment = {**os.environ, "ROTATOR_VAR_DIR": str(tmp_path), "SECRET_KEY": ""}
    environment.pop("DATABASE_URL", None)
    environment.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        env=environment,
        cwd=settings.BASE_DIR,
        check=True,
    )
    for name in ("secret_key", "db.sqlite3"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    # SQLite gives its write-ahead log the database file's mode.
    wal = tmp_path / "db.sqlite3-wal"
    assert not wal.exists() or stat.S_IMODE(wal.stat().st_mode) == 0o600
