"""Errors of the serving stack, each carrying the HTTP status and OpenAI error fields it maps to.

Every layer raises these (client, worker, API server); the API turns any of them into
``{"error": {"message", "type", "param", "code"}}`` with :attr:`ServeError.status_code`, so no
route builds its own error JSON.
"""

from __future__ import annotations

from fastchat_lite.errors import FastChatLiteError


class ServeError(FastChatLiteError):
    """A serving failure; ``str(exc)`` is a message fit to show the user."""

    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.param = param
        if status_code is not None:
            self.status_code = status_code


class NoWorkerError(ServeError):
    """No live worker serves the model (none registered, all expired, or all unreachable)."""

    status_code = 503
    error_type = "service_unavailable"
    default_code = "no_worker_available"


class ModelNotFoundError(NoWorkerError):
    """No worker has ever served this model name: most likely a typo in ``model``."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"


class InvalidRequestError(ServeError):
    """The request itself is wrong (bad conversation shape, parameter out of range)."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthError(InvalidRequestError):
    """The prompt does not fit the model's context window."""

    default_code = "context_length_exceeded"


class AuthenticationError(ServeError):
    """Missing or wrong API key / worker secret."""

    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class WorkerFailedError(ServeError):
    """A worker died or stopped answering in the middle of a request."""

    status_code = 503
    error_type = "service_unavailable"
    default_code = "worker_failed"


def error_from_status(status_code: int, message: str, code: str | None, param: str | None):
    """Rebuild the matching :class:`ServeError` from an error body another server sent."""
    if status_code == 404 and code == "model_not_found":
        cls: type[ServeError] = ModelNotFoundError
    elif status_code == 503:
        cls = NoWorkerError
    elif status_code == 401:
        cls = AuthenticationError
    elif code == "context_length_exceeded":
        cls = ContextLengthError
    elif 400 <= status_code < 500:
        cls = InvalidRequestError
    else:
        cls = ServeError
    return cls(message, code=code, param=param, status_code=status_code)
