"""common.redact: no secret survives, and masks show little."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.redact import message_clean, secret_mask, secret_redact

# Shaped like the real thing, made up for these tests.
STANDARD_KEY = "AIzaSyD3moKeyForTestsOnly_abcdefghix9Qk"  # AIza + 35
AUTH_KEY = "AQ.Ab8RN6Jm-TestOnlyAuthKey.abcdefghij"
ACCESS_TOKEN = "ya29.a0AfB_byC-TestOnlyAccessToken.xyz123"
REFRESH_TOKEN = "1//0gTestOnlyRefreshToken-abcdefghijkl"
CLIENT_SECRET = "GOCSPX-TestOnlyClientSecret-abc"

SECRET_ALPHABET = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
)
secrets_strategy = st.text(SECRET_ALPHABET, min_size=12, max_size=60)


@pytest.mark.parametrize(
    ("text", "credential"),
    [
        pytest.param(f"the key {STANDARD_KEY} failed", STANDARD_KEY, id="a standard AIza key"),
        pytest.param(f"auth key {AUTH_KEY} failed", AUTH_KEY, id="an AQ. auth key"),
        pytest.param(f"Bearer {ACCESS_TOKEN}", ACCESS_TOKEN, id="an OAuth access token"),
        pytest.param(f'"refresh_token": "{REFRESH_TOKEN}"', REFRESH_TOKEN, id="a refresh token"),
        pytest.param(f"client_secret={CLIENT_SECRET}", CLIENT_SECRET, id="a client secret"),
    ],
)
def test_each_google_credential_is_masked_without_being_named(text: str, credential: str) -> None:
    redacted = secret_redact(text)

    assert credential not in redacted
    assert secret_mask(credential) in redacted


def test_a_key_query_parameter_is_masked_whatever_its_value() -> None:
    url = "https://generativelanguage.googleapis.com/v1beta/models?key=NotAGoogleShape123&alt=sse"

    redacted = secret_redact(url)

    assert "NotAGoogleShape123" not in redacted
    assert redacted.endswith("?key=NotA…e123&alt=sse")


@pytest.mark.parametrize("name", ["key", "KEY", "api_key", "api-key", "apikey"])
def test_key_parameters_under_their_usual_names_are_masked(name: str) -> None:
    assert secret_redact(f"GET /x?{name}=value-of-the-key-1234 HTTP/1.1") == (
        f"GET /x?{name}=valu…1234 HTTP/1.1"
    )


def test_a_word_merely_ending_in_key_is_left_alone() -> None:
    assert secret_redact("monkey=banana-bread-recipe") == "monkey=banana-bread-recipe"


def test_a_key_parameter_in_a_url_is_masked_once_keeping_the_parameter_name() -> None:
    assert secret_redact(f"?key={STANDARD_KEY}") == "?key=AIza…x9Qk"


def test_a_given_secret_is_masked_wherever_it_occurs() -> None:
    secret = "opaque-secret-value-42"

    redacted = secret_redact(f"{secret} and again:{secret}!", secrets=[secret])

    assert redacted == "opaq…e-42 and again:opaq…e-42!"


def test_given_secrets_shorter_than_eight_characters_or_empty_are_ignored() -> None:
    assert secret_redact("the code 1234567 is fine", secrets=["1234567", ""]) == (
        "the code 1234567 is fine"
    )


def test_overlapping_given_secrets_are_masked_as_one_span() -> None:
    first, second = "abcdefgh12345678", "12345678ijklmnop"

    redacted = secret_redact("xx abcdefgh12345678ijklmnop yy", secrets=[first, second])

    assert redacted == "xx abcd…mnop yy"


def test_text_without_secrets_is_unchanged() -> None:
    text = "You exceeded your current quota, please check your plan and billing details."

    assert secret_redact(text, secrets=["not-in-the-text-at-all"]) == text


@pytest.mark.parametrize(
    ("secret", "mask"),
    [
        pytest.param("", "", id="empty"),
        pytest.param("ab", "…", id="2 chars show nothing"),
        pytest.param("abc", "…c", id="3 chars show 1"),
        pytest.param("abcdef", "…ef", id="6 chars show 2"),
        pytest.param("abcdefghijk", "…jk", id="11 chars show 2"),
        pytest.param("abcdefghijkl", "abcd…ijkl", id="12 chars show first and last 4"),
        pytest.param(STANDARD_KEY, "AIza…x9Qk", id="a key"),
    ],
)
def test_a_mask_has_the_documented_shape(secret: str, mask: str) -> None:
    assert secret_mask(secret) == mask


@given(st.text(min_size=1, max_size=200))
def test_a_mask_never_reveals_more_than_eight_characters_or_a_third_of_a_short_secret(
    secret: str,
) -> None:
    mask = secret_mask(secret)
    shown = len(mask) - 1  # Every character but the one "…" comes from the secret.

    assert shown <= 8
    if len(secret) < 12:
        assert shown <= len(secret) // 3
        assert mask == "…" + secret[len(secret) - shown :]
    else:
        assert mask == secret[:4] + "…" + secret[-4:]


@given(
    secrets=st.lists(secrets_strategy, min_size=1, max_size=4),
    fillers=st.lists(st.text(max_size=30), min_size=5, max_size=5),
)
def test_no_given_secret_survives_redaction(secrets: list[str], fillers: list[str]) -> None:
    text = fillers[0] + "".join(
        secret + filler for secret, filler in zip(secrets, fillers[1:], strict=False)
    )

    redacted = secret_redact(text, secrets=secrets)

    for secret in secrets:
        assert secret not in redacted


@given(
    text=st.text(SECRET_ALPHABET, min_size=8, max_size=80),
    count=st.integers(1, 4),
    data=st.data(),
)
def test_no_secret_cut_from_the_text_itself_survives_redaction(
    text: str, count: int, data: st.DataObject
) -> None:
    # Secrets that overlap each other and the rest of the text in every possible way.
    secrets = []
    for _ in range(count):
        start = data.draw(st.integers(0, len(text) - 8))
        end = data.draw(st.integers(start + 8, len(text)))
        secrets.append(text[start:end])

    redacted = secret_redact(text, secrets=secrets)

    for secret in secrets:
        assert secret not in redacted


@given(st.text(max_size=300))
def test_redacting_twice_changes_nothing_more(text: str) -> None:
    once = secret_redact(text)

    assert secret_redact(once) == once


def test_a_cleaned_message_is_redacted_collapsed_and_cut() -> None:
    text = f"API key\n\n   {STANDARD_KEY}\tis   suspended. " + "x" * 600

    cleaned = message_clean(text, max_chars=60)

    assert cleaned.startswith("API key AIza…x9Qk is suspended. xxx")
    assert len(cleaned) == 60
    assert cleaned.endswith("…")


def test_a_short_message_is_not_cut() -> None:
    assert message_clean("  fine\r\n") == "fine"


def test_control_characters_cannot_forge_a_log_line() -> None:
    assert message_clean("ok\x00\x1b[2Jnext\u0085line") == "ok [2Jnext line"


@given(text=st.text(max_size=700), secret=secrets_strategy, max_chars=st.integers(0, 600))
def test_a_cleaned_message_fits_and_never_holds_the_secret(
    text: str, secret: str, max_chars: int
) -> None:
    cleaned = message_clean(text + secret + text, secrets=[secret], max_chars=max_chars)

    assert len(cleaned) <= max_chars
    assert secret not in cleaned
