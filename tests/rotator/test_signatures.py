"""rotator.signatures: what reaches each backend of a conversation's thought signatures."""

from rotator.codecs.shared import SIGNATURE_BACKEND_KEY, signature_open, signature_seal
from rotator.signatures import SKIP_SIGNATURE, signatures_fit

CALL = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}


def _history(*model_parts: dict) -> dict:
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "weather?"}]},
            {"role": "model", "parts": list(model_parts)},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather"}}]},
        ]
    }


def test_a_signature_goes_back_to_the_backend_that_minted_it():
    body = _history({**CALL, "thoughtSignature": "c2ln", SIGNATURE_BACKEND_KEY: "code_assist"})
    fitted = signatures_fit(body, backend="code_assist", model="gemini-3-flash-preview")
    assert fitted["contents"][1]["parts"] == [{**CALL, "thoughtSignature": "c2ln"}]


def test_another_backends_signature_is_replaced_by_the_skip_value_on_gemini_3():
    body = _history({**CALL, "thoughtSignature": "c2ln", SIGNATURE_BACKEND_KEY: "gemini_api"})
    fitted = signatures_fit(body, backend="code_assist", model="gemini-3.1-pro-preview")
    assert fitted["contents"][1]["parts"] == [{**CALL, "thoughtSignature": SKIP_SIGNATURE}]


def test_on_2_5_a_foreign_signature_is_dropped_and_nothing_is_added():
    body = _history({**CALL, "thoughtSignature": "c2ln", SIGNATURE_BACKEND_KEY: "gemini_api"})
    fitted = signatures_fit(body, backend="code_assist", model="gemini-2.5-flash")
    assert fitted["contents"][1]["parts"] == [CALL]


def test_only_the_first_call_of_a_current_turn_step_gets_the_skip_value():
    second = {"functionCall": {"name": "get_time", "args": {}}}
    fitted = signatures_fit(_history(CALL, second), backend="gemini_api", model="gemini-3.5-flash")
    assert fitted["contents"][1]["parts"] == [{**CALL, "thoughtSignature": SKIP_SIGNATURE}, second]


def test_turns_before_the_last_user_text_are_left_alone():
    body = _history(CALL)
    body["contents"].append({"role": "user", "parts": [{"text": "and tomorrow?"}]})
    assert signatures_fit(body, backend="gemini_api", model="gemini-3.5-flash") is body


def test_a_clients_own_signature_is_sent_as_it_came():
    body = _history({**CALL, "thoughtSignature": "b3du"})
    assert signatures_fit(body, backend="gemini_api", model="gemini-3.5-flash") is body


def test_a_sealed_signature_opens_only_untampered(db):
    token = signature_seal("c2ln", backend="gemini_api")
    assert signature_open(token) == ("c2ln", "gemini_api")
    assert signature_open(token[:-4] + "AAAA") is None
    assert signature_open("c2ln") is None
    assert "c2ln" not in token
