"""rotator.pool.credential_report: what each verdict does to the credential that got it."""

import asyncio

import pytest

from accounts.models import Credential
from common import clock
from rotator import pool
from rotator.classify import Outcome, Verdict
from rotator.models import Mark, UpstreamErrorLog


def _report(credential: Credential, verdict: Verdict) -> None:
    """Reports `verdict` for `credential` as the request loop does, on its pool's snapshot."""

    async def report() -> None:
        key = await pool.api_key_authenticate(presented=_KEY[0], now=clock.now())
        await pool.credential_pick(
            key=key, model="gemini-2.5-flash", excluded=(), first_attempt=True, now=clock.now()
        )
        snapshot = await pool._snapshot_current(user_id=credential.user_id)
        view = snapshot.credentials[credential.id]
        await pool.credential_report(
            credential=view, model="gemini-2.5-flash", verdict=verdict, status=None, now=clock.now()
        )

    asyncio.run(report())


# The key of the pool under test (set by the fixture, read by _report).
_KEY: list[str] = []


@pytest.fixture
def first(alice) -> Credential:
    _KEY[:] = [alice.key]
    return alice.credentials[0]


pytestmark = pytest.mark.django_db(transaction=True)


def test_empty_answers_never_open_the_circuit_breaker(first, settings):
    settings.CIRCUIT_BREAKER_FAILURES = 2
    for _ in range(4):
        _report(first, Verdict(Outcome.EMPTY, message="empty answer: MALFORMED_FUNCTION_CALL"))
    assert not Mark.objects.exists()
    assert UpstreamErrorLog.objects.filter(credential=first).count() == 4


def test_transient_failures_open_the_circuit_breaker_after_the_setting(first, settings):
    settings.CIRCUIT_BREAKER_FAILURES = 2
    for _ in range(2):
        _report(first, Verdict(Outcome.TRANSIENT, message="503"))
    assert Mark.objects.get(credential=first).reason == Mark.Reason.UNSTABLE


def test_a_suspension_is_permanent_and_an_invalid_key_is_not(alice, first):
    _report(first, Verdict(Outcome.SUSPENDED, message="disabled for the Terms of Service"))
    _report(alice.credentials[1], Verdict(Outcome.INVALID, message="API key not valid"))
    statuses = dict(Credential.objects.values_list("id", "status"))
    assert statuses[first.id] == Credential.Status.SUSPENDED
    assert statuses[alice.credentials[1].id] == Credential.Status.INVALID


def test_a_client_error_changes_nothing(first):
    _report(first, Verdict(Outcome.CLIENT_ERROR, message="Invalid JSON payload"))
    assert not Mark.objects.exists() and not UpstreamErrorLog.objects.exists()
    assert Credential.objects.get(id=first.id).status == Credential.Status.ACTIVE
