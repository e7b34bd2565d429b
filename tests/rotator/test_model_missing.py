"""A 404 marks only what it proves: the method family it came from, for long only when the
credential's own model list agrees, and the client hears 404, not 429."""

import pytest

from common import clock
from rotator.models import Mark

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = {"content": {"parts": [{"text": "embed me"}]}}
CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hello"}]}


def _embed_on_chat_model(http, key: str):
    return http.post(
        "/v1beta/models/gemini-2.5-flash:embedContent",
        headers={"x-goog-api-key": key},
        json=EMBED,
    )


def test_an_embedding_call_on_a_chat_model_does_not_stop_chat(http, alice):
    first = _embed_on_chat_model(http, alice.key)
    chat = http.post(
        "/v1/chat/completions", headers={"authorization": f"Bearer {alice.key}"}, json=CHAT
    )
    again = _embed_on_chat_model(http, alice.key)
    assert first.status_code == 404
    assert chat.status_code == 200, chat.text
    assert again.status_code == 404, again.text
    assert "retry-after" not in again.headers
    assert again.json()["error"]["status"] == "NOT_FOUND"


def test_an_openai_embedding_on_a_chat_model_answers_404_in_openai_shape_every_time(http, alice):
    body = {"model": "gemini-2.5-flash", "input": "embed me"}
    headers = {"authorization": f"Bearer {alice.key}"}
    answers = [http.post("/v1/embeddings", headers=headers, json=body) for _ in range(2)]
    chat = http.post("/v1/chat/completions", headers=headers, json=CHAT)
    assert [a.status_code for a in answers] == [404, 404], answers[-1].text
    assert "retry-after" not in answers[-1].headers
    assert isinstance(answers[-1].json()["error"]["message"], str)
    assert chat.status_code == 200


def test_a_404_for_a_model_the_credential_lists_marks_it_briefly(http, alice, fake_gemini):
    flaky = alice.credentials[0]
    fake_gemini.behave(flaky.secret(), "not_found", model="gemini-2.5-flash", times=1)
    response = http.post(
        "/v1/chat/completions", headers={"authorization": f"Bearer {alice.key}"}, json=CHAT
    )
    assert response.status_code == 200  # another credential served it
    mark = Mark.objects.get(credential=flaky, model="gemini-2.5-flash")
    assert mark.reason == Mark.Reason.MODEL_NOT_FOUND
    assert (mark.until - clock.now()).total_seconds() <= 61


def test_a_404_for_a_model_the_credential_does_not_list_marks_it_until_the_reset(
    http, alice, fake_gemini
):
    response = http.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {alice.key}"},
        json={**CHAT, "model": "gemini-9-imaginary"},
    )
    assert response.status_code == 404
    marks = Mark.objects.filter(model="gemini-9-imaginary")
    assert marks.count() == 3
    assert {m.until for m in marks} == {clock.daily_reset_next(clock.now())}
