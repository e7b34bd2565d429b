"""How Rotator names things it receives from clients and from Google."""


def model_bare(name: str) -> str:
    """A model id without Google's "models/" prefix: the form Rotator stores, marks, counts
    and compares ("models/gemini-2.5-pro" and "gemini-2.5-pro" are one model)."""
    return name.removeprefix("models/")


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value (scheme in any case),
    None for another scheme or an empty token."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
