"""The judge's instructions, written for this project, built from a few parts.

A prompt is chosen by verdict format (``single``: one answer scored 1-10; ``labels``: two
answers, ``[[A]]``/``[[B]]``/``[[C]]``; ``scores``: two answers, Vicuna's first line of two
scores), by turn (the second turn shows the whole conversation and grades the last reply)
and by whether a reference answer is shown (math, reasoning, coding). Its name and
:data:`PROMPT_VERSION` are part of every judgment's cache key: edit a text, bump the version.
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_VERSION = "fcl-2024.1"

CRITERIA = (
    "Weigh how helpful the reply is, whether it stays relevant to what was asked, whether it "
    "is accurate, and its depth, creativity and level of detail. Reward substance, not "
    "length: a longer reply is not better for being longer."
)
REFERENCE_RULE = (
    "A reference answer is given. Use it to check correctness: work out whether each reply "
    "reaches the same result, and point out every mistake before you decide. A reply that "
    "reaches a wrong result cannot score well, however well it is written."
)
FAIRNESS_RULE = (
    "Judge the two replies on their content only. Which one comes first, how long each one "
    "is, and what the assistants are called must not change your verdict."
)
SECOND_TURN_RULE = (
    "The conversation has two user messages. Grade only the reply to the second one, taking "
    "into account what was said before it."
)

OUTPUT_SINGLE = (
    "Start with a short explanation. Then, on the last line, give your rating from 1 to 10 "
    "in exactly this form: Rating: [[7]]"
)
OUTPUT_LABELS = (
    "Start with a short explanation comparing the two replies. Then, on the last line, give "
    "exactly one verdict: [[A]] if assistant A is better, [[B]] if assistant B is better, "
    "[[C]] if they are equally good."
)
OUTPUT_SCORES = (
    "Give each assistant a score from 1 to 10. The first line of your reply must hold only "
    "the two scores, assistant A's first, separated by a space (for example: 8 6). Explain "
    "your scores from the second line on."
)

SYSTEM_SINGLE = "You are a careful, impartial grader of an AI assistant's replies."
SYSTEM_PAIR = "You are a careful, impartial judge comparing the replies of two AI assistants."


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    messages: list[dict[str, str]]


def _conversation(questions: tuple[str, ...], answers: tuple[str, ...], who: str) -> str:
    lines = []
    for question, answer in zip(questions, answers, strict=True):
        lines += [f"### User\n{question}", f"### {who}\n{answer}"]
    return "\n\n".join(lines)


def _reference(reference: tuple[str, ...] | None, turn: int) -> str:
    if reference is None:
        return ""
    shown = reference[:turn]
    if turn == 1:
        return f"<reference answer>\n{shown[0]}\n</reference answer>\n\n"
    parts = [f"Reference reply to user message {i + 1}:\n{r}" for i, r in enumerate(shown)]
    return "<reference answer>\n" + "\n\n".join(parts) + "\n</reference answer>\n\n"


def prompt_name(verdict: str, turn: int, with_reference: bool) -> str:
    return f"{verdict}{'-ref' if with_reference else ''}{'-turn2' if turn > 1 else ''}"


def single_prompt(
    questions: tuple[str, ...],
    answers: tuple[str, ...],
    turn: int,
    reference: tuple[str, ...] | None = None,
) -> JudgePrompt:
    """Grade the model's reply to ``questions[turn - 1]`` (``turn`` counts from 1)."""
    rules = [CRITERIA]
    if reference is not None:
        rules.append(REFERENCE_RULE)
    if turn > 1:
        rules.append(SECOND_TURN_RULE)
    rules.append(OUTPUT_SINGLE)
    body = (
        "Grade the assistant's reply below.\n\n"
        + "\n".join(rules)
        + "\n\n"
        + _reference(reference, turn)
        + "<conversation>\n"
        + _conversation(questions[:turn], answers[:turn], "Assistant")
        + "\n</conversation>"
    )
    return JudgePrompt(
        prompt_name("single", turn, reference is not None),
        [{"role": "system", "content": SYSTEM_SINGLE}, {"role": "user", "content": body}],
    )


def pair_prompt(
    verdict: str,
    questions: tuple[str, ...],
    answers_a: tuple[str, ...],
    answers_b: tuple[str, ...],
    turn: int,
    reference: tuple[str, ...] | None = None,
) -> JudgePrompt:
    """Compare assistant A's and B's replies; ``verdict`` is ``labels`` or ``scores``."""
    rules = [CRITERIA, FAIRNESS_RULE]
    if reference is not None:
        rules.append(REFERENCE_RULE)
    if turn > 1:
        rules.append(SECOND_TURN_RULE)
    rules.append(OUTPUT_LABELS if verdict == "labels" else OUTPUT_SCORES)
    body = (
        "Compare the two assistants' replies below.\n\n"
        + "\n".join(rules)
        + "\n\n"
        + _reference(reference, turn)
        + "<assistant A>\n"
        + _conversation(questions[:turn], answers_a[:turn], "Assistant A")
        + "\n</assistant A>\n\n<assistant B>\n"
        + _conversation(questions[:turn], answers_b[:turn], "Assistant B")
        + "\n</assistant B>"
    )
    return JudgePrompt(
        prompt_name(verdict, turn, reference is not None),
        [{"role": "system", "content": SYSTEM_PAIR}, {"role": "user", "content": body}],
    )
