"""Schemathesis against the live server: every operation in /api/schema/, schema-valid and
schema-violating inputs, no 500s and no answer that contradicts the schema."""

import hypothesis
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

MASTER = "master-key-for-tests-0123456789"
# Per operation and mode: 28 operations x 2 modes x 12 take about forty seconds.
EXAMPLES = 12


def test_every_operation_honours_the_schema(live, settings):
    """Each operation runs on its own so that one failure does not hide the others.

    (Schemathesis' pytest loader for fixtures is not used: it relies on a pytest internal that
    pytest 9 no longer has.)"""
    settings.MASTER_API_KEY = MASTER
    # Schemathesis checks authentication by sending wrong keys hundreds of times a minute,
    # which the sign-in throttle would answer with 429 (tests/rotator/test_throttle.py).
    settings.SIGNIN_FAILURES_PER_MINUTE = 1_000_000
    schema = schemathesis.openapi.from_url(f"{live}/api/schema/?format=json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: schemathesis.Case) -> None:
                # positive_data_acceptance expects every schema-valid input to succeed; some
                # are refused with 400 by design (an unknown user id, a username that is
                # taken, a string that is not a Gemini key), which a schema cannot express.
                case.call_and_validate(
                    headers={"Authorization": f"Bearer {MASTER}"},
                    excluded_checks=[positive_data_acceptance],
                )

            try:
                exercise()
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
