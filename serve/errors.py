"""Errors of the serving stack, each carrying the HTTP status and OpenAI error fields it maps to.

Every layer raises these (client, worker, API server); the API turns any of them into
``{"error": {"message", "type", "param", "code"}}`` with :attr:`ServeError.status_code`, so no
route builds its own error JSON. :meth:`ServeError.to_info` and :meth:`ServeError.from_info` are
the one conversion between the two, in both directions (a client rebuilds a server's error).
"""

from __future__ import annotations

from fastchat_lite.errors import FastChatLiteError
from serve.schemas import ErrorInfo


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

    def to_info(self) -> ErrorInfo:
        """The OpenAI error body's ``error`` object for this exception."""
        return ErrorInfo(
            message=self.message, type=self.error_type, param=self.param, code=self.code
        )

    @classmethod
    def from_info(cls, info: ErrorInfo, status_code: int) -> ServeError:
        """The matching subclass for an error body another server answered with ``status_code``."""
        if status_code == 404 and info.code == "model_not_found":
            kind: type[ServeError] = ModelNotFoundError
        elif status_code == 503:
            kind = NoWorkerError
        elif status_code == 401:
            kind = AuthenticationError
        elif info.code == "context_length_exceeded":
            kind = ContextLengthError
        elif status_code == 413:
            kind = RequestTooLargeError
        elif 400 <= status_code < 500:
            kind = InvalidRequestError
        else:
            kind = ServeError
        return kind(info.message, code=info.code, param=info.param, status_code=status_code)


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


class RequestTooLargeError(InvalidRequestError):
    """The request body is larger than the server accepts (``--max-body-bytes``)."""

    status_code = 413
    default_code = "request_too_large"


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
