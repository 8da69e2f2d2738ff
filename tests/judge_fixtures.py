"""A judge stand-in for the ``eval`` tests and the README's demo run: an OpenAI-compatible
``/v1/chat/completions`` on loopback that reads our judge prompts and answers them the way a
real judge might, or misbehaves on purpose.

Its verdicts come from a fixed heuristic (how word-like and on-topic an answer is), not a
language model. Misbehaviour is chosen by text in the question, so a test file of questions
is the scenario:

- ``MALFORMED-ONCE``: the first reply for a prompt has no verdict, later ones are fine;
- ``ALWAYS-MALFORMED``: no reply ever holds a verdict;
- ``ALWAYS-A``: pairwise verdicts always prefer the first answer (position bias);
and ``StandIn.rate_limit_first`` answers 429 to the first call for each prompt.

Run it by hand for a demo: ``python tests/judge_fixtures.py --port 8100``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

_WORD = re.compile(r"[A-Za-z]+")


def answer_quality(question: str, answer: str) -> float:
    """0..1: the share of answer tokens that look like English words, plus topic overlap."""
    tokens = answer.split()
    if not tokens:
        return 0.0
    wordlike = sum(bool(re.fullmatch(r"[A-Za-z][a-z']{0,11}[.,!?;:]?", t)) for t in tokens)
    topic = {w.lower() for w in _WORD.findall(question) if len(w) > 3}
    overlap = len(topic & {w.lower() for w in _WORD.findall(answer)}) / max(len(topic), 1)
    return min(1.0, 0.8 * wordlike / len(tokens) + 0.4 * overlap)


def score(question: str, answer: str) -> int:
    return 1 + round(9 * answer_quality(question, answer))


def _sections(text: str, speaker: str) -> list[str]:
    pattern = rf"### {speaker}\n(.*?)(?=\n\n### |\n</)"
    return re.findall(pattern, text, flags=re.DOTALL)


@dataclass
class StandIn:
    rate_limit_first: bool = False
    calls: Counter = field(default_factory=Counter)  # prompt text -> calls
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> count

    def reply(self, system: str, prompt: str) -> tuple[int, str]:
        self.calls[prompt] += 1
        nth = self.calls[prompt]
        if self.rate_limit_first and nth == 1:
            return 429, ""
        questions = _sections(prompt, "User")
        question = questions[-1] if questions else ""
        if "ALWAYS-MALFORMED" in prompt or ("MALFORMED-ONCE" in prompt and nth == 1):
            return 200, "Both answers have merit and I would not like to commit to a verdict."
        if "impartial grader" in system:
            answer = _sections(prompt, "Assistant")[-1]
            return (
                200,
                f"The reply is judged on its substance.\nRating: [[{score(question, answer)}]]",
            )
        a = score(question, _sections(prompt, "Assistant A")[-1])
        b = score(question, _sections(prompt, "Assistant B")[-1])
        if "ALWAYS-A" in prompt:
            a, b = 9, 2
        if "first line of your reply" in prompt:
            return 200, f"{a} {b}\nScores follow the stand-in heuristic."
        label = "A" if a > b else "B" if b > a else "C"
        return 200, f"Compared on substance.\n[[{label}]]"


def create_standin_app(standin: StandIn | None = None) -> FastAPI:
    app = FastAPI()
    app.state.standin = standin or StandIn()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        messages = body["messages"]
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        status, text = app.state.standin.reply(system, messages[-1]["content"])
        app.state.standin.statuses[status] += 1
        if status != 200:
            error = {"message": "rate limited", "type": "rate_limit", "param": None, "code": None}
            return JSONResponse({"error": error}, status, headers={"Retry-After": "0"})
        usage = {"prompt_tokens": len(messages[-1]["content"]) // 4, "completion_tokens": 12}
        usage["total_tokens"] = usage["prompt_tokens"] + 12
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        choice["finish_reason"] = "stop"
        reply = {"id": "judge", "object": "chat.completion", "created": 0, "model": body["model"]}
        return JSONResponse({**reply, "choices": [choice], "usage": usage})

    return app


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, port: int) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1:``port`` in a thread; yields its /v1 base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the judge stand-in did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(create_standin_app(), host="127.0.0.1", port=args.port, log_level="warning")
