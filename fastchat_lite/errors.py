"""Exception types a user can act on; each message names the input and the fix."""

from __future__ import annotations


class FastChatLiteError(Exception):
    """Base class for every error this package raises on purpose."""


class ConversationError(FastChatLiteError, ValueError):
    """A conversation has the wrong shape (unknown role, bad alternation, missing field)."""


class UnknownTemplateError(FastChatLiteError, KeyError):
    """A template name is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NoTrainableTokensError(FastChatLiteError, ValueError):
    """After tokenizing (and truncating), a sample has no assistant token to learn from."""


class MissingExtraError(FastChatLiteError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""


class InputFileError(FastChatLiteError, OSError):
    """An input file cannot be read as a whole (missing, not JSON/JSONL, not a list)."""


class ApiError(FastChatLiteError):
    """An OpenAI-compatible endpoint refused a request, or kept failing after every retry.

    The message names the URL, the model and the server's error text; ``status`` is the last
    HTTP status (None for a dropped connection).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
