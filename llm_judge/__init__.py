"""Evaluation: answers from OpenAI-compatible endpoints, LLM-as-judge grading, win rates,
length-controlled win rates, arena ratings and figures (``fastchat-lite eval ...``)."""
