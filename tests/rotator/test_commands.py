"""Operator commands for the rotation engine: resetquotas and rotate, seen from a client."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from rotator.models import Mark, PoolState

MODEL = "gemini-2.5-flash"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}


def run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def _chat(http, persona):
    return http.post(
        "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {persona.key}"}
    )


def test_resetquotas_brings_an_exhausted_pool_back_before_the_daily_reset(
    live, http, alice, bob, fake_gemini
):
    for persona in (alice, bob):
        for secret in persona.upstream_keys:
            fake_gemini.behave(secret, "quota_day", model=MODEL, times=1)
        assert _chat(http, persona).status_code == 429
    assert Mark.objects.filter(reason=Mark.Reason.QUOTA_EXHAUSTED).count() == 5

    assert run("resetquotas", "alice") == ["cleared 3 quota mark(s) in 1 pool(s)"]
    assert _chat(http, alice).status_code == 200
    assert _chat(http, bob).status_code == 429

    assert run("resetquotas") == ["cleared 2 quota mark(s) in 1 pool(s)"]
    assert _chat(http, bob).status_code == 200


def test_resetquotas_leaves_rate_limits_alone(live, http, bob, fake_gemini):
    for secret in bob.upstream_keys:
        fake_gemini.behave(secret, "rate_limit_minute", model=MODEL, times=1)
    assert _chat(http, bob).status_code == 429
    assert run("resetquotas", "bob") == ["cleared 0 quota mark(s) in 0 pool(s)"]
    assert _chat(http, bob).status_code == 429


def test_rotate_names_the_credential_now_first_and_the_next_request_uses_it(
    live, http, bob, fake_gemini
):
    for number, credential in enumerate(bob.credentials, start=1):
        credential.label = f"bob-{number}"
        credential.save(update_fields=["label"])
    first_before = run("rotate", "bob")[0]
    line = run("rotate", "bob")[0]
    assert line != first_before
    (first,) = [c for c in bob.credentials if line == f"bob: {c.display_name} is now first of 2"]
    assert _chat(http, bob).status_code == 200
    assert fake_gemini.requests[-1].secret == first.secret()
    assert PoolState.objects.get(user=bob.user).rotated_at is not None


def test_rotate_says_when_a_pool_has_nothing_to_rotate_to(charlie):
    assert run("rotate", "charlie") == ["charlie: rotated, but no credential in the pool is usable"]


@pytest.mark.parametrize("command", [["rotate", "nobody"], ["resetquotas", "nobody"]])
def test_rotation_commands_refuse_an_unknown_user(db, command):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run(*command)


def test_rotate_needs_a_user(db):
    with pytest.raises(CommandError, match="the following arguments are required: USER"):
        run("rotate")
