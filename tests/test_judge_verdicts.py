"""Verdict parsing is strict: exactly one verdict in the asked-for form, or VerdictError."""

from __future__ import annotations

import pytest

from llm_judge.errors import VerdictError
from llm_judge.judge import parse_verdict
from llm_judge.prompts import pair_prompt, single_prompt
from llm_judge.verdicts import parse_label, parse_rating, parse_score_pair


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Good answer.\nRating: [[7]]", 7.0),
        ("Rating: [[7.5]]", 7.5),
        ("[[ 10 ]] is deserved; again [[10]]", 10.0),
        ("The reply is fine.\nRating: 6", 6.0),
        ("Rating: [8]", 8.0),
    ],
)
def test_rating_is_read_from_double_brackets_or_a_rating_line(text, expected):
    assert parse_rating(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "A fine answer, I would give it a seven.",
        "Rating: [[7]] ... on reflection Rating: [[4]]",
        "Rating: [[11]]",
        "Rating: [[0]]",
        "",
    ],
)
def test_missing_ambiguous_or_out_of_range_rating_is_an_error(text):
    with pytest.raises(VerdictError):
        parse_rating(text)


@pytest.mark.parametrize(
    ("text", "expected"), [("... so [[A]]", "A"), ("[[b]]", "B"), ("Equal.\n[[C]]", "tie")]
)
def test_pairwise_label_maps_c_to_a_tie(text, expected):
    assert parse_label(text) == expected


@pytest.mark.parametrize("text", ["A is better", "[[A]] or maybe [[B]]", "[[D]]"])
def test_missing_or_contradicting_label_is_an_error(text):
    with pytest.raises(VerdictError):
        parse_label(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8 6\nbecause", (8.0, 6.0)), ("\n 7.5, 9 \nx", (7.5, 9.0)), ("**9/4**", (9.0, 4.0))],
)
def test_score_pair_is_the_first_line_of_two_numbers(text, expected):
    assert parse_score_pair(text) == expected


@pytest.mark.parametrize(
    "text",
    ["Assistant 1: 8, Assistant 2: 6", "8\n6", "8 6 5", "Scores below\n8 6", "8 12", ""],
)
def test_first_line_that_is_not_just_two_scores_is_an_error(text):
    with pytest.raises(VerdictError):
        parse_score_pair(text)


def test_scores_verdict_names_the_winner_or_a_tie():
    assert parse_verdict("scores", "3 8\n")["winner"] == "B"
    assert parse_verdict("scores", "5 5\n")["winner"] == "tie"


def test_second_turn_prompt_shows_the_whole_conversation_and_the_reference():
    prompt = single_prompt(("Q1", "Q2"), ("A1", "A2"), turn=2, reference=("R1", "R2"))
    text = prompt.messages[-1]["content"]
    assert prompt.name == "single-ref-turn2"
    assert all(part in text for part in ("Q1", "A1", "Q2", "A2", "R1", "R2", "second"))
    first = pair_prompt("labels", ("Q1", "Q2"), ("A1", "A2"), ("B1", "B2"), turn=1)
    assert "Q2" not in first.messages[-1]["content"] and first.name == "labels"
