"""Conversation templates: one registry that both renders prompts and exports Jinja chat templates.

A template is data, not code: a handful of strings around the system prompt, the user turns and
the assistant turns. The same fields drive three things that must never disagree:

* :func:`render_segments` - the text the trainer tokenizes and the server feeds the model;
* :func:`fastchat_lite.chat_template` - the Jinja ``chat_template`` saved with a trained model,
  with ``{% generation %}`` around what the loss is computed on;
* the loss mask in :mod:`fastchat_lite.masking`, built from the segments' ``trained`` flags.

Inside template strings, ``{bos}`` and ``{eos}`` stand for the tokenizer's BOS / EOS tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastchat_lite.errors import ConversationError, UnknownTemplateError
from fastchat_lite.messages import Message

# The template used when nothing names one: FastChat's Vicuna v1.1 format.
DEFAULT_TEMPLATE = "vicuna_v1.1"

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ALPACA_SYSTEM = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
BOS, EOS = "{bos}", "{eos}"


@dataclass(frozen=True)
class Template:
    """The strings that turn a list of messages into one prompt.

    Rendering order: ``begin``, then ``system_prefix + system + system_suffix`` (only when the
    system text is non-empty), then for each user turn ``user_prefix + content + user_suffix``
    and for each assistant turn ``assistant_prefix + [content + assistant_end] +
    assistant_after``, where the bracketed part is what the loss is computed on.
    """

    name: str
    system_message: str = ""
    begin: str = BOS
    system_prefix: str = ""
    system_suffix: str = ""
    user_prefix: str = ""
    # Llama-2 folds the first user turn into the [INST] block the system prompt opened.
    first_user_prefix_after_system: str | None = None
    user_suffix: str = ""
    assistant_prefix: str = ""
    assistant_end: str = EOS
    assistant_after: str = ""
    generation_prompt: str = ""
    # Literal texts the template itself emits as special tokens (besides {bos}/{eos}).
    special_texts: tuple[str, ...] = ()
    # Extra texts that end a reply at serving time (the end-of-turn token is always one).
    stop_strings: tuple[str, ...] = field(default=())

    @property
    def reply_lead(self) -> str:
        """Template text between the generation prompt and the reply (Vicuna: the space after
        ``ASSISTANT:``). A model trained on this template generates it first; the server strips
        it so a reply reads "I am ..." rather than " I am ..."."""
        prompt, prefix = self.generation_prompt, self.assistant_prefix
        return prefix[len(prompt) :] if prefix.startswith(prompt) else ""

    def end_of_turn(self, eos_token: str | None) -> str:
        """The literal end-of-turn token text (``</s>`` for Vicuna, ``<|im_end|>`` for ChatML)."""
        return self.assistant_end.strip().replace(EOS, eos_token or "")


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text.

    ``kind`` is ``"template"`` for text the template wrote (special-token texts inside it are
    real special tokens) or ``"content"`` for text a user or model wrote (always tokenized as
    plain text). ``trained`` marks what the loss covers; ``turn`` is the index of the message
    the segment belongs to (-1 for the preamble), used for turn-boundary truncation.
    """

    text: str
    kind: str
    trained: bool
    turn: int


_REGISTRY: dict[str, Template] = {}


def register_template(template: Template, *, override: bool = False) -> Template:
    """Add a template to the registry; refuses to silently replace one unless ``override``."""
    if template.name in _REGISTRY and not override:
        raise ValueError(f"template {template.name!r} is already registered")
    _REGISTRY[template.name] = template
    return template


def get_template(name: str | Template) -> Template:
    """Look a template up by name (a :class:`Template` is returned as is)."""
    if isinstance(name, Template):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTemplateError(
            f"unknown template {name!r}; known templates: {', '.join(list_templates())}"
        ) from None


def list_templates() -> list[str]:
    return sorted(_REGISTRY)


def _fill(text: str, bos: str | None, eos: str | None) -> str:
    return text.replace(BOS, bos or "").replace(EOS, eos or "")


def _template_segment(text: str, turn: int, *, trained: bool = False) -> Segment:
    return Segment(text, "template", trained, turn)


def render_segments(
    messages: list[Message],
    template: str | Template,
    *,
    bos_token: str | None,
    eos_token: str | None,
    add_generation_prompt: bool = False,
) -> list[Segment]:
    """Render messages as segments; ``"".join(s.text for s in ...)`` is the prompt text.

    ``messages`` may start with one system message; the rest must alternate user/assistant
    starting with user. Raises :class:`ConversationError` otherwise.
    """
    tpl = get_template(template)
    system = tpl.system_message
    body = list(messages)
    if body and body[0].role == "system":
        system = body[0].content
        body = body[1:]
    _check_alternation(body)

    segments: list[Segment] = []
    if tpl.begin:
        segments.append(_template_segment(_fill(tpl.begin, bos_token, eos_token), -1))
    if system:
        segments.append(_template_segment(tpl.system_prefix, -1))
        segments.append(Segment(system, "content", False, -1))
        segments.append(_template_segment(tpl.system_suffix, -1))
    for turn, message in enumerate(body):
        if message.role == "user":
            prefix = tpl.user_prefix
            if turn == 0 and system and tpl.first_user_prefix_after_system is not None:
                prefix = tpl.first_user_prefix_after_system
            segments.append(_template_segment(prefix, turn))
            segments.append(Segment(message.content, "content", False, turn))
            segments.append(_template_segment(tpl.user_suffix, turn))
        else:
            segments.append(_template_segment(tpl.assistant_prefix, turn))
            segments.append(Segment(message.content, "content", True, turn))
            end = _fill(tpl.assistant_end, bos_token, eos_token)
            segments.append(_template_segment(end, turn, trained=True))
            after = _fill(tpl.assistant_after, bos_token, eos_token)
            segments.append(_template_segment(after, turn))
    if add_generation_prompt:
        segments.append(_template_segment(tpl.generation_prompt, len(body)))
    return [s for s in segments if s.text]


def render_prompt(
    messages: list[Message],
    template: str | Template,
    *,
    bos_token: str | None = None,
    eos_token: str | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """The prompt as one string (what the exported Jinja chat template renders too)."""
    segments = render_segments(
        messages,
        template,
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
    )
    return "".join(s.text for s in segments)


def _check_alternation(body: list[Message]) -> None:
    for index, message in enumerate(body):
        expected = "user" if index % 2 == 0 else "assistant"
        if message.role != expected:
            raise ConversationError(
                f"message {index} has role {message.role!r} but {expected!r} was expected: "
                "after an optional system message, turns must alternate user/assistant "
                "starting with user"
            )


register_template(
    Template(
        name=DEFAULT_TEMPLATE,
        system_message=VICUNA_SYSTEM,
        system_suffix=" ",
        user_prefix="USER: ",
        user_suffix=" ",
        assistant_prefix="ASSISTANT: ",
        assistant_end=EOS,
        generation_prompt="ASSISTANT:",
    )
)
register_template(
    Template(
        name="alpaca",
        system_message=ALPACA_SYSTEM,
        system_suffix="\n\n",
        user_prefix="### Instruction:\n",
        user_suffix="\n\n",
        assistant_prefix="### Response:\n",
        assistant_end=EOS,
        assistant_after="\n\n",
        generation_prompt="### Response:\n",
        stop_strings=("### Instruction:",),
    )
)
register_template(
    Template(
        name="chatml",
        begin="",
        system_prefix="<|im_start|>system\n",
        system_suffix="<|im_end|>\n",
        user_prefix="<|im_start|>user\n",
        user_suffix="<|im_end|>\n",
        assistant_prefix="<|im_start|>assistant\n",
        assistant_end="<|im_end|>",
        assistant_after="\n",
        generation_prompt="<|im_start|>assistant\n",
        special_texts=("<|im_start|>", "<|im_end|>"),
    )
)
register_template(
    Template(
        name="llama-2",
        system_prefix="[INST] <<SYS>>\n",
        system_suffix="\n<</SYS>>\n\n",
        user_prefix="[INST] ",
        first_user_prefix_after_system="",
        user_suffix=" ",
        assistant_prefix="[/INST] ",
        assistant_end=" " + EOS,
        assistant_after=BOS,
        generation_prompt="[/INST]",
    )
)
