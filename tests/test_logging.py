"""One proxied request leaves one log line: Rotator's, not the HTTP client libraries' too."""

import logging
import time

import pytest

MODEL = "gemini-2.5-flash"


@pytest.fixture
def logged(caplog) -> pytest.LogCaptureFixture:
    """What the server logs at the level it runs at by default (settings.LOG_LEVEL, INFO)."""
    caplog.set_level(logging.INFO)
    return caplog


def _lines_during(logged: pytest.LogCaptureFixture, send) -> list[logging.LogRecord]:
    logged.clear()
    response = send()
    assert response.status_code == 200, response.text
    # The request line is written as the response ends; give the server thread its turn.
    deadline = time.monotonic() + 5
    while not any(r.name == "rotator.request" for r in logged.records):
        assert time.monotonic() < deadline, "no request line was logged"
        time.sleep(0.01)
    time.sleep(0.1)
    return [r for r in logged.records if r.levelno >= logging.INFO]


def test_one_openai_request_logs_exactly_one_line(live, http, alice, logged):
    records = _lines_during(
        logged,
        lambda: http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {alice.key}"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        ),
    )
    assert [r.name for r in records] == ["rotator.request"], [r.getMessage() for r in records]
    assert records[0].getMessage().startswith("request_id=")


def test_one_native_request_logs_exactly_one_line(live, http, alice, logged):
    records = _lines_during(
        logged,
        lambda: http.post(
            f"/v1beta/models/{MODEL}:generateContent",
            headers={"x-goog-api-key": alice.key},
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        ),
    )
    assert [r.name for r in records] == ["rotator.request"], [r.getMessage() for r in records]
