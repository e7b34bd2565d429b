"""rotator.adapters.openai_compat: what the shortcut's stream parses once it is the client's."""

import orjson
import pytest

from rotator.adapters.http import InBandError
from rotator.adapters.openai_compat import _decoder_after_content


class _Credential:
    is_oauth = False

    def secret(self) -> str:
        return "AIzaTestSecret" + "x" * 25


def test_after_the_first_content_only_what_rotator_reads_is_parsed():
    decode = _decoder_after_content(_Credential())
    text = b'{"choices":[{"index":0,"delta":{"content":"say \\"error\\" or \\"usage\\""}}]}'
    assert decode(text) == (text, None), "relayed as it came, unparsed"
    usage = b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}'
    assert decode(usage) == (usage, orjson.loads(usage))
    assert decode(b"[DONE]") == (b"[DONE]", None)


def test_after_the_first_content_an_error_object_or_a_malformed_event_still_ends_the_stream():
    decode = _decoder_after_content(_Credential())
    with pytest.raises(InBandError) as raised:
        decode(b'{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}')
    assert raised.value.status == 503
    for malformed in (b'{"choices":[{"delta":{"content":"cut', b"oops"):
        with pytest.raises(orjson.JSONDecodeError):
            decode(malformed)
