"""Exception types of the evaluation stage; each message names the file or record and the fix."""

from __future__ import annotations

from fastchat_lite.errors import FastChatLiteError


class QuestionFileError(FastChatLiteError):
    """A question, answer, judgment or vote file is missing or has a malformed record."""


class VerdictError(FastChatLiteError, ValueError):
    """A judge's reply does not hold a verdict in the format its prompt asked for."""


class NothingToShowError(FastChatLiteError):
    """``eval show`` / ``eval arena`` found no usable judgments or votes."""
