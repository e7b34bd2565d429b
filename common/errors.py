"""Domain exceptions; rendered in the client's dialect by rotator.render, nowhere else."""


class RotatorError(Exception):
    """Base: an answer Rotator gives the client instead of upstream's."""

    status = 500
    openai_type = "server_error"
    google_status = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_seconds = retry_after_seconds


class BadRequest(RotatorError):
    status = 400
    openai_type = "invalid_request_error"
    google_status = "INVALID_ARGUMENT"


class AuthenticationFailed(RotatorError):
    status = 401
    openai_type = "invalid_request_error"
    google_status = "UNAUTHENTICATED"


class ModelNotAllowed(RotatorError):
    status = 403
    openai_type = "permission_error"
    google_status = "PERMISSION_DENIED"


class NotFound(RotatorError):
    status = 404
    openai_type = "invalid_request_error"
    google_status = "NOT_FOUND"


class MethodNotAllowed(RotatorError):
    status = 405
    openai_type = "invalid_request_error"
    google_status = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, allow: tuple[str, ...], code: str | None = None) -> None:
        super().__init__(message, code=code)
        # The methods the route answers: HTTP requires them in a 405's Allow header.
        self.allow = allow


class RequestTimeout(RotatorError):
    status = 408
    openai_type = "invalid_request_error"
    google_status = "DEADLINE_EXCEEDED"


class PayloadTooLarge(RotatorError):
    status = 413
    openai_type = "invalid_request_error"
    google_status = "INVALID_ARGUMENT"


class KeyLimitExceeded(RotatorError):
    """The caller's own Rotator key is over its per-minute or per-day limit."""

    status = 429
    openai_type = "rate_limit_error"
    google_status = "RESOURCE_EXHAUSTED"


class NoCredentialAvailable(RotatorError):
    """Every credential that could serve the model is cooling down or exhausted."""

    status = 429
    openai_type = "rate_limit_error"
    google_status = "RESOURCE_EXHAUSTED"


class PoolEmpty(RotatorError):
    """The caller's pool has no usable credential at all: the operator must add one."""

    status = 503
    openai_type = "server_error"
    google_status = "UNAVAILABLE"


class StateUnavailable(RotatorError):
    """The database or Redis cannot be reached: nothing can be decided safely, so say so."""

    status = 503
    openai_type = "server_error"
    google_status = "UNAVAILABLE"


class AliasesChanged(RotatorError):
    """A pick refused to go on with an alias table older than the shared one (an alias
    changed in another process since this one last read them). The request is served again
    on the fresh table (rotator.views); a client sees this only when aliases keep changing
    while it retries."""

    status = 503
    openai_type = "server_error"
    google_status = "UNAVAILABLE"


class UpstreamUnreachable(RotatorError):
    status = 502
    openai_type = "server_error"
    google_status = "UNAVAILABLE"


class UpstreamError(RotatorError):
    """Upstream's own error answer, passed to the client (its status and message)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        google_status: str = "",
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        if google_status:
            self.google_status = google_status
        self.openai_type = "invalid_request_error" if 400 <= status < 500 else "server_error"
        self.code = google_status or None
