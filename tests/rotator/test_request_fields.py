"""Every chat request field of the wrong type is a 400 naming it, never a 500 (property test)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotator.validate import CHAT_FIELD_TYPES

CHAT = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}

JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return next(name for name, kind in JSON_TYPES.items() if isinstance(value, kind))


def _allowed(value: object, types: tuple[str, ...]) -> bool:
    kind = _json_type(value)
    return kind in types or (kind == "integer" and "number" in types)


def test_stream_options_that_is_not_an_object_is_a_400_naming_it(http, alice):
    body = {**CHAT, "stream": True, "stream_options": "x"}
    response = http.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {alice.key}"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream_options"


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(field=st.sampled_from(sorted(CHAT_FIELD_TYPES)), value=json_values)
def test_any_json_value_in_any_chat_field_is_answered_without_a_server_error(
    http, alice, field, value
):
    body = {**CHAT, field: value}
    response = http.post(
        "/v1/chat/completions",
        content=json.dumps(body),
        headers={"authorization": f"Bearer {alice.key}", "content-type": "application/json"},
    )
    assert response.status_code < 500, response.text
    required = field in ("model", "messages")
    if (value is not None or required) and not _allowed(value, CHAT_FIELD_TYPES[field]):
        assert response.status_code == 400
        assert response.json()["error"]["param"] == field


@pytest.mark.parametrize("value", [{"include_usage": "yes"}, {"include_usage": 1}])
def test_include_usage_must_be_a_boolean(http, alice, value):
    body = {**CHAT, "stream": True, "stream_options": value}
    response = http.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {alice.key}"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream_options.include_usage"
