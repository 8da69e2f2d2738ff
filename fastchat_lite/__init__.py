"""fastchat-lite core: what every stage imports (data_prep, train and serve import only this).

Rooms: ``messages`` / ``templates`` (+ DEFAULT_TEMPLATE) / ``jinja_export`` conversation formats;
``masking`` tokenize + loss mask; ``model_loading`` / ``tiny`` models; ``config`` dataclass
configs as flags and YAML; ``io`` atomic files and record readers; ``processes`` child
processes; ``errors``; ``cli`` the ``fastchat-lite`` command table. ``quickstart/`` is the
recipe that runs the stage commands end to end; nothing in the core imports it.

Importing this package is cheap: nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

from fastchat_lite.errors import (
    ConversationError,
    FastChatLiteError,
    InputFileError,
    MissingExtraError,
    NoTrainableTokensError,
    UnknownTemplateError,
)
from fastchat_lite.jinja_export import chat_template
from fastchat_lite.masking import (
    IGNORE_INDEX,
    encode_conversation,
    stop_token_ids,
    tokenize_conversation,
    tokenize_prompt,
)
from fastchat_lite.messages import Message, to_messages, to_sharegpt
from fastchat_lite.templates import (
    DEFAULT_TEMPLATE,
    Template,
    get_template,
    list_templates,
    register_template,
    render_prompt,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TEMPLATE",
    "IGNORE_INDEX",
    "ConversationError",
    "FastChatLiteError",
    "InputFileError",
    "Message",
    "MissingExtraError",
    "NoTrainableTokensError",
    "Template",
    "UnknownTemplateError",
    "__version__",
    "chat_template",
    "encode_conversation",
    "get_template",
    "list_templates",
    "register_template",
    "render_prompt",
    "stop_token_ids",
    "to_messages",
    "to_sharegpt",
    "tokenize_conversation",
    "tokenize_prompt",
]
