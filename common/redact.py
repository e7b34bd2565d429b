"""Masking of secrets in any text Rotator stores, logs or shows: the one place that does it."""

import logging
import re
from collections.abc import Hashable, Iterable

_ELLIPSIS = "…"

# Given secrets shorter than this are ignored: masking every "1234" in a message would shred
# it, and nothing Google issues is that short.
_SECRET_MIN_CHARS = 8

# Secrets this long show their first and last 4 characters; shorter ones show at most a third
# of themselves, and never more than 2 characters.
_MASK_LONG_MIN_CHARS = 12

# Google credentials recognised even when the caller did not name them. `key=` comes first in
# the alternation so that `?key=AIza...` masks the whole value once, keeping its name. The
# `key=` value may contain "…" so that an already masked value is recognised and left alone
# (redacting twice changes nothing).
_CREDENTIAL = re.compile(
    r"(?P<name>(?<![0-9A-Za-z])(?i:(?:api[_-]?)?key)=)(?P<value>[^\s&#\"'<>,;)\]}\\]+)"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|AQ\.[0-9A-Za-z_\-.]{20,}"
    r"|ya29\.[0-9A-Za-z_\-.]+"
    r"|1//[0-9A-Za-z_\-]{20,}"
    r"|GOCSPX-[0-9A-Za-z_\-]+"
)

# What `secret_mask` produces: a `key=` value of this shape was masked already.
_MASKED = re.compile(r"[^…]{0,4}…[^…]{0,4}")

# Control characters are blanked so that upstream text cannot forge log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WHITESPACE = re.compile(r"\s+")


def secret_mask(secret: str) -> str:
    """Returns the displayable form of `secret`: "AIza…x9Qk" when it has at least 12
    characters, otherwise "…" and at most its last 2 characters (never more than a third of
    it); "" for "". A mask never reveals more than 8 characters."""
    if not secret:
        return ""
    if len(secret) >= _MASK_LONG_MIN_CHARS:
        return f"{secret[:4]}{_ELLIPSIS}{secret[-4:]}"
    shown = min(2, len(secret) // 3)
    return _ELLIPSIS + secret[len(secret) - shown :]


# Secrets this process holds whose shape nobody can recognise (an OAuth account's refresh and
# access tokens, its client secret), by owner: masked in every text, whoever redacts it. An
# owner's new secrets replace its old ones, so the registry stays as small as the pool.
_registered: dict[Hashable, tuple[str, ...]] = {}


def secrets_register(*, owner: Hashable, secrets: Iterable[str]) -> None:
    """Makes `secret_redact` mask `secrets` everywhere from now on, in place of what `owner`
    registered before."""
    _registered[owner] = tuple(secret for secret in secrets if secret)


def secrets_forget() -> None:
    """Drops every registered secret (tests: each starts from an empty process)."""
    _registered.clear()


def secret_redact(text: str, *, secrets: Iterable[str] = ()) -> str:
    """Returns `text` with every occurrence of each given or registered secret (those of 8
    characters or more) and everything that looks like a Google credential replaced by its
    mask."""
    # list() copies in one step under the GIL: other threads may register meanwhile.
    registered = [secret for owned in list(_registered.values()) for secret in owned]
    given = tuple(
        {secret for secret in (*secrets, *registered) if len(secret) >= _SECRET_MIN_CHARS}
    )
    text = _given_secrets_mask(text, secrets=given)
    text = _CREDENTIAL.sub(_credential_mask, text)
    # A mask shows a few characters of the text around it, and a caller's secret may contain
    # "…"; either could in theory rebuild a secret. Replacing what is left by a bare "…"
    # shortens the text each time, so this ends.
    while any(secret in text for secret in given):
        for secret in given:
            text = text.replace(secret, _ELLIPSIS)
    return text


def message_clean(text: str, *, secrets: Iterable[str] = (), max_chars: int = 500) -> str:
    """Returns `text` redacted with `secret_redact`, control characters and whitespace runs
    collapsed to single spaces, and cut to at most `max_chars` characters ending in "…"."""
    text = secret_redact(text, secrets=secrets)
    # Redacting before cutting: a cut secret would no longer match and would leak its head.
    text = _WHITESPACE.sub(" ", _CONTROL.sub(" ", text)).strip()
    if len(text) <= max_chars:
        return text
    if max_chars < 1:
        return ""
    return text[: max_chars - 1] + _ELLIPSIS


def _given_secrets_mask(text: str, *, secrets: tuple[str, ...]) -> str:
    """Masks every occurrence of `secrets` in `text`. Occurrences that overlap or touch are
    masked as one span, so that no mask ends up showing part of a neighbouring secret."""
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        start = text.find(secret)
        while start != -1:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    if not spans:
        return text
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    pieces: list[str] = []
    position = 0
    for start, end in merged:
        pieces.append(text[position:start])
        pieces.append(secret_mask(text[start:end]))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _credential_mask(match: re.Match[str]) -> str:
    name, value = match.group("name"), match.group("value")
    if name is None:
        return secret_mask(match.group(0))
    if _MASKED.fullmatch(value):
        return match.group(0)
    return name + secret_mask(value)


class SecretRedactFilter(logging.Filter):
    """A logging filter that masks credentials (`secret_redact`) in a record's message and
    its text arguments, for log lines Rotator does not write itself: uvicorn's access log
    prints each request's query string, where Google's clients send `?key=`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = secret_redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                secret_redact(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True
