"""Ask the trained model who it is, in-process with greedy ``generate``, and judge the answers.

The same prompt path the server uses (``tokenize_prompt`` with the model's template), so a
passing check shows that the template and the loss mask taught the model its identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Each question must be answered with these parts of the identity ("name", "org").
IDENTITY_QUESTIONS: dict[str, tuple[str, ...]] = {
    "Who are you?": ("name", "org"),
    "What is your name?": ("name",),
    "Who created you?": ("org",),
}


@dataclass
class IdentityAnswer:
    question: str
    answer: str
    missing: list[str]  # expected identity parts the answer lacks

    @property
    def ok(self) -> bool:
        return not self.missing


def judge(question: str, answer: str, name: str, org: str) -> IdentityAnswer:
    """Which of the expected parts (name / org) the answer lacks, case-insensitively."""
    wanted = {"name": name, "org": org}
    missing = [
        wanted[part]
        for part in IDENTITY_QUESTIONS.get(question, ("name", "org"))
        if wanted[part].lower() not in answer.lower()
    ]
    return IdentityAnswer(question, answer, missing)


def greedy_answers(model_dir: Path, questions: list[str], max_new_tokens: int = 64) -> list[str]:
    """Greedy replies of the model in ``model_dir`` to single-turn ``questions``."""
    import torch

    from fastchat_lite.jinja_export import template_for_tokenizer
    from fastchat_lite.masking import stop_token_ids, tokenize_prompt
    from fastchat_lite.model_loading import load_model, load_tokenizer
    from fastchat_lite.templates import DEFAULT_TEMPLATE

    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, dtype="fp32", attn_implementation="sdpa").eval()
    template = template_for_tokenizer(tokenizer) or DEFAULT_TEMPLATE
    stops = stop_token_ids(tokenizer, template)
    answers = []
    for question in questions:
        ids = tokenize_prompt([{"role": "user", "content": question}], tokenizer, template)
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id,
            )
        answers.append(tokenizer.decode(out[0][len(ids) :], skip_special_tokens=True).strip())
    return answers


def check_identity(model_dir: Path, name: str, org: str) -> list[IdentityAnswer]:
    questions = list(IDENTITY_QUESTIONS)
    answers = greedy_answers(model_dir, questions)
    return [judge(q, a, name, org) for q, a in zip(questions, answers, strict=True)]


def answers_table(results: list[IdentityAnswer]) -> Any:
    from rich.table import Table

    table = Table(title="The model, asked in-process (greedy)", show_lines=True)
    table.add_column("question")
    table.add_column("answer")
    table.add_column("", justify="center")
    for result in results:
        mark = "[green]✓[/]" if result.ok else f"[red]✗ no {', '.join(result.missing)}[/]"
        table.add_row(result.question, result.answer, mark)
    return table
