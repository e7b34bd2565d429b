"""A wrong encryption key fails loudly at start-up, /healthz says so, and keys can be rotated."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from accounts.encryption import EncryptionKeyMismatch
from accounts.models import Credential, EncryptionCanary
from accounts.services import credential_add
from tests.conftest import persona_create
from tests.support.processes import Rotator

CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.django_db(transaction=True)
def test_a_server_started_with_another_key_stops_with_one_line_naming_the_variable(
    fake_gemini, tmp_path
):
    persona_create("dora", credentials=1)
    log = tmp_path / "stderr"
    with log.open("wb") as stderr:
        server = Rotator(
            fake_gemini,
            env={"ROTATOR_ENCRYPTION_KEY": Fernet.generate_key().decode()},
            stderr=stderr,
        )
        try:
            # uvicorn's exit status when the application refuses to start.
            assert server.process.wait(timeout=60) == 3
        finally:
            server.stop()
    lines = [line for line in log.read_text().splitlines() if "ROTATOR_ENCRYPTION_KEY" in line]
    assert len(lines) == 1 and "rotator: configuration error:" in lines[0]


def test_healthz_is_not_ok_when_the_key_does_not_open_the_stored_secrets(http, alice, settings):
    assert http.get("/healthz").json()["encryption"] == "ok"
    settings.ROTATOR_ENCRYPTION_KEY = Fernet.generate_key().decode()
    response = http.get("/healthz")
    assert response.status_code == 503
    assert "ROTATOR_ENCRYPTION_KEY" in response.json()["encryption"]


def test_a_credential_the_key_cannot_open_is_skipped_and_marked_unreadable(http, alice):
    stranger = Fernet(Fernet.generate_key())
    broken = alice.credentials[0]
    Credential.objects.filter(id=broken.id).update(
        secret_encrypted=stranger.encrypt(b"AIzaUnderAnotherKey").decode()
    )
    headers = {"authorization": f"Bearer {alice.key}"}
    statuses = [http.post("/v1/chat/completions", json=CHAT, headers=headers).status_code]
    statuses += [http.post("/v1/chat/completions", json=CHAT, headers=headers).status_code]
    statuses += [http.post("/v1/chat/completions", json=CHAT, headers=headers).status_code]
    assert statuses == [200, 200, 200]
    broken.refresh_from_db()
    assert broken.status == Credential.Status.UNREADABLE
    assert "ROTATOR_ENCRYPTION_KEY" in broken.last_error


def test_rotateencryptionkey_moves_every_secret_to_the_new_key(http, alice, settings):
    before = alice.upstream_keys
    new_key = Fernet.generate_key().decode()
    settings.ROTATOR_ENCRYPTION_KEY = new_key
    # The old key (derived from SECRET_KEY) may still read, for the rotation only.
    settings.ROTATOR_PREVIOUS_ENCRYPTION_KEYS = ["SECRET_KEY"]
    call_command("rotateencryptionkey")
    settings.ROTATOR_PREVIOUS_ENCRYPTION_KEYS = []
    after = [c.secret() for c in Credential.objects.filter(user=alice.user).order_by("id")]
    assert after == before
    assert http.get("/healthz").json()["encryption"] == "ok"
    assert EncryptionCanary.objects.count() == 1
    headers = {"authorization": f"Bearer {alice.key}"}
    assert http.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200


def test_adding_a_credential_under_a_wrong_key_is_refused(alice, settings):
    settings.ROTATOR_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(EncryptionKeyMismatch, match="ROTATOR_ENCRYPTION_KEY"):
        credential_add(user=alice.user, api_key="AIzaWrittenUnderTheWrongKey" + "x" * 12)
