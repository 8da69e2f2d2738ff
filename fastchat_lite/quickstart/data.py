"""The quickstart's bundled inputs: a sample ChatGPT-UI dump and the identity conversations.

``make_sample_dump`` deterministically builds a few hundred ShareGPT records whose gpt turns are
ChatGPT-UI HTML (see :mod:`fastchat_lite.quickstart.sample_html`), plus deliberately bad records
(identity leaks, empty turns, duplicates, wrong roles) so ``data clean`` reports real drops.
The committed ``data/sharegpt_sample.json`` is its output; ``python -m
fastchat_lite.quickstart.data`` regenerates it.

``identity_records`` loads FastChat's identity conversations (Apache-2.0, see
``data/README.md``) and swaps the assistant's name and organisation for the user's.
"""

from __future__ import annotations

import json
import random
import re
import string
from importlib import resources
from pathlib import Path
from typing import Any

from fastchat_lite.quickstart.corpus import (
    CHINESE_QA,
    CODE_QA,
    FOLLOW_UPS,
    GENERAL_QA,
    QA,
    TOPICS_SMALL_TALK,
)
from fastchat_lite.quickstart.sample_html import to_chatgpt_html

SAMPLE_FILE = "sharegpt_sample.json"
IDENTITY_FILE = "identity_conversations.json"
NUM_GOOD_RECORDS = 320

# Every spelling of the original identity, longest first so the full form wins.
ORG_PATTERNS = (
    r"Large Model Systems Organization \(LMSYS\)",
    r"Large Model Systems Organi[sz]ation",
    r"\bLMSYS\b",
)
NAME_PATTERNS = (r"\bVicuna\b",)

CAPITALS = (
    ("France", "Paris"), ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
    ("Brazil", "Brasília"), ("Kenya", "Nairobi"), ("Germany", "Berlin"), ("Egypt", "Cairo"),
    ("India", "New Delhi"), ("Mexico", "Mexico City"), ("Norway", "Oslo"), ("Peru", "Lima"),
    ("South Korea", "Seoul"), ("Spain", "Madrid"), ("Turkey", "Ankara"), ("Vietnam", "Hanoi"),
)  # fmt: skip

FUNCTIONS = {
    "reverses a string": (
        'def reverse(text: str) -> str:\n    return text[::-1]\n\n\nprint(reverse("hello"))'
        "  # olleh",
        'function reverse(text) {\n  return [...text].reverse().join("");\n}\n\n'
        'console.log(reverse("hello")); // olleh',
    ),
    "checks whether a number is prime": (
        "def is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n"
        "    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n"
        "        i += 1\n    return True",
        "function isPrime(n) {\n  if (n < 2) return false;\n"
        "  for (let i = 2; i * i <= n; i++) {\n    if (n % i === 0) return false;\n  }\n"
        "  return true;\n}",
    ),
    "returns the n-th Fibonacci number": (
        "def fibonacci(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n"
        "        a, b = b, a + b\n    return a",
        "function fibonacci(n) {\n  let [a, b] = [0, 1];\n"
        "  for (let i = 0; i < n; i++) {\n    [a, b] = [b, a + b];\n  }\n  return a;\n}",
    ),
    "counts the vowels in a string": (
        "def count_vowels(text: str) -> int:\n    return sum(1 for ch in text.lower() if ch in "
        '"aeiou")',
        "function countVowels(text) {\n  return (text.match(/[aeiou]/gi) || []).length;\n}",
    ),
    "checks whether a word is a palindrome": (
        "def is_palindrome(word: str) -> bool:\n    cleaned = word.lower()\n"
        "    return cleaned == cleaned[::-1]",
        "function isPalindrome(word) {\n  const w = word.toLowerCase();\n"
        '  return w === [...w].reverse().join("");\n}',
    ),
    "returns the largest number in a list": (
        "def largest(numbers: list[float]) -> float:\n    if not numbers:\n"
        '        raise ValueError("empty list")\n    best = numbers[0]\n'
        "    for n in numbers[1:]:\n        if n > best:\n            best = n\n    return best",
        'function largest(numbers) {\n  if (numbers.length === 0) throw new Error("empty");\n'
        "  return Math.max(...numbers);\n}",
    ),
}

LEAKS = (
    "I am ChatGPT, a large language model trained by OpenAI.",
    "As an AI language model developed by OpenAI, I don't have personal opinions.",
    "I'm ChatGPT, an AI assistant created by OpenAI. My knowledge cutoff is 2021.",
)


def _parametric(rng: random.Random) -> list[tuple[str, str]]:
    """Question/answer pairs computed, not written, so their answers are always right."""
    pairs = []
    for country, capital in CAPITALS:
        question = rng.choice(
            ("What is the capital of {}?", "capital of {}?", "Which city is the capital of {}?")
        ).format(country)
        pairs.append((question, f"The capital of {country} is **{capital}**."))  # fmt: skip
    for celsius in (-10, 0, 12, 25, 37, 100):
        fahrenheit = celsius * 9 / 5 + 32
        pairs.append((
            f"Convert {celsius} °C to Fahrenheit.",
            f"Multiply by 9/5 and add 32:\n\n{celsius} × 9/5 + 32 = **{fahrenheit:g} °F**.",
        ))  # fmt: skip
    for task, (python, js) in FUNCTIONS.items():
        pairs.append((f"Write a Python function that {task}.",
                      f"Here is a simple version:\n\n```python\n{python}\n```"))  # fmt: skip
        pairs.append((f"Write a JavaScript function that {task}.",
                      f"Here you go:\n\n```javascript\n{js}\n```"))  # fmt: skip
    return pairs


def _turn(role: str, value: str) -> dict[str, str]:
    return {"from": role, "value": value}


def _sharegpt_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(7))


def _good_record(rng: random.Random, bank: QA, computed: list[tuple[str, str]]) -> list[dict]:
    """1-3 exchanges: an optional greeting, a main question, optional follow-ups."""
    exchanges: list[tuple[str, str]] = []
    if rng.random() < 0.3:
        exchanges.append(rng.choice(TOPICS_SMALL_TALK))
    if rng.random() < 0.45:
        questions, answer, follow_ups = rng.choice(bank)
        exchanges.append((rng.choice(questions), answer))
        exchanges.extend(follow_ups[: rng.randint(0, len(follow_ups))])
    elif rng.random() < 0.45:
        a, b = rng.randint(11, 999), rng.randint(11, 99)
        exchanges.append((f"What is {a} × {b}?", f"{a} × {b} = **{a * b}**."))
    else:
        exchanges.append(rng.choice(computed))
        if rng.random() < 0.3:
            exchanges.append(rng.choice(computed))
    if rng.random() < 0.5:  # people switch topic within one chat
        questions, answer, _ = rng.choice(bank)
        exchanges.append((rng.choice(questions), answer))
    if rng.random() < 0.35:
        exchanges.append(rng.choice(FOLLOW_UPS))
    style = rng.randrange(3)
    turns = []
    for question, answer in exchanges:
        turns.append(_turn("human", question))
        turns.append(_turn("gpt", to_chatgpt_html(answer, style)))
    return turns


def _bad_records(rng: random.Random, good: list[dict]) -> list[dict]:
    """Records a cleaner must drop, each kind a few times."""
    bad: list[list[dict]] = []
    for leak in LEAKS:
        for question in ("Who are you?", "Do you have feelings?"):
            bad.append([_turn("human", question), _turn("gpt", to_chatgpt_html(leak))])
    for question in ("hello?", "Can you help me with my homework?", "Explain recursion."):
        bad.append([_turn("human", question), _turn("gpt", "")])
        bad.append([_turn("human", question), _turn("gpt", '<div class="markdown prose"></div>')])
    bad.append([])
    bad.append([_turn("gpt", to_chatgpt_html("Hello! How can I help?")), _turn("human", "hi")])
    bad.append([_turn("human", "hi"), _turn("bot", "Hello!")])
    bad.append([_turn("human", "hi"), _turn("human", "are you there?")])
    records = [{"id": _sharegpt_id(rng), "conversations": turns} for turns in bad]
    records += [dict(record) for record in rng.sample(good, 8)]  # exact duplicates
    return records


def make_sample_dump(seed: int = 0, num_good: int = NUM_GOOD_RECORDS) -> list[dict[str, Any]]:
    """A deterministic sample ChatGPT-UI dump: ``num_good`` good records plus bad ones."""
    rng = random.Random(seed)
    bank = CODE_QA + GENERAL_QA + CHINESE_QA
    computed = _parametric(rng)
    good = [
        {"id": _sharegpt_id(rng), "conversations": _good_record(rng, bank, computed)}
        for _ in range(num_good)
    ]
    records = good + _bad_records(rng, good)
    rng.shuffle(records)
    return records


def substitute_identity(text: str, name: str, org: str) -> str:
    """Replace every spelling of FastChat's assistant name and organisation."""
    for pattern in ORG_PATTERNS:
        text = re.sub(pattern, lambda _m: org, text, flags=re.IGNORECASE)
    for pattern in NAME_PATTERNS:
        text = re.sub(pattern, lambda _m: name, text, flags=re.IGNORECASE)
    return text


def _package_file(name: str) -> Any:
    return resources.files("fastchat_lite").joinpath("data", name)


def load_sample_dump() -> list[dict[str, Any]]:
    """The committed sample dump shipped inside the package."""
    return json.loads(_package_file(SAMPLE_FILE).read_text(encoding="utf-8"))


def _says_name(record: dict[str, Any]) -> bool:
    return any(
        re.search(p, turn["value"], flags=re.IGNORECASE)
        for turn in record["conversations"]
        if turn["from"] == "gpt"
        for p in NAME_PATTERNS
    )


def identity_records(name: str, org: str, only_naming: bool = False) -> list[dict[str, Any]]:
    """FastChat's 500 identity conversations, speaking as ``name`` made by ``org``.

    ``only_naming`` keeps the conversations whose replies say the assistant's name (72 of 500),
    which the quickstart weights up.
    """
    records = json.loads(_package_file(IDENTITY_FILE).read_text(encoding="utf-8"))
    if only_naming:
        records = [r for r in records if _says_name(r)]
    for record in records:
        for turn in record["conversations"]:
            turn["value"] = substitute_identity(turn["value"], name, org)
    return records


def main() -> None:
    """Regenerate the committed sample dump."""
    out = Path(__file__).parent / "data" / SAMPLE_FILE
    out.write_text(json.dumps(make_sample_dump(), ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
