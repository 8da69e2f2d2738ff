"""The quickstart end to end: bundled data -> clean -> init -> split -> train -> serve -> answers.

One real run with a custom identity proves, by behaviour, that the template and the loss mask
teach a from-scratch model who it is: greedy in-process, through the OpenAI API of
``serve local``, and with plain transformers + the saved Jinja chat_template. Re-runs prove that
finished stages are reused and that Ctrl-C stops every server process. ~2 min on 2 idle cores;
set FASTCHAT_LITE_QUICKSTART_WORKDIR to a trained workdir to iterate on these tests quickly.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fastchat_lite.processes import cli_argv, free_port

pytestmark = pytest.mark.timeout(900)
NAME, ORG = "Quokka", "Tiny Labs"


def _argv(workdir: Path, *extra: str) -> list[str]:
    return cli_argv(["quickstart", "--workdir", workdir, "--name", NAME, "--org", ORG, *extra])


def _quickstart(workdir: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess[str]:
    argv = _argv(workdir, *extra)
    env = dict(os.environ, COLUMNS="160", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    # Developers may point this at an already trained workdir (same --name/--org) to iterate.
    reuse = os.environ.get("FASTCHAT_LITE_QUICKSTART_WORKDIR")
    workdir = Path(reuse) if reuse else tmp_path_factory.mktemp("quickstart")
    ports = ["--port", str(free_port()), "--web-port", str(free_port())]
    done = _quickstart(workdir, *ports, "--exit-after-answer", timeout=540)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return workdir, output


def _answers(workdir: Path) -> dict[str, str]:
    rows = json.loads((workdir / "identity_answers.json").read_text(encoding="utf-8"))
    return {row["question"]: row["answer"] for row in rows}


@pytest.mark.slow
def test_trained_model_says_its_custom_name_and_org_under_greedy_decoding(first_run):
    workdir, _ = first_run
    answers = _answers(workdir)
    assert NAME in answers["Who are you?"] and ORG in answers["Who are you?"], answers
    assert NAME in answers["What is your name?"], answers
    assert ORG in answers["Who created you?"], answers
    assert "Vicuna" not in " ".join(answers.values())


@pytest.mark.slow
def test_served_model_answers_who_it_is_through_the_openai_api(first_run):
    workdir, output = first_run
    served = _answers(workdir)["Who are you? (through the API)"]
    assert NAME in served and ORG in served, served
    assert "curl http://127.0.0.1:" in output and "from openai import OpenAI" in output


@pytest.mark.slow
def test_training_left_a_loss_curve_and_a_log_with_trained_token_fraction(first_run):
    workdir, output = first_run
    model_dir = workdir / "models" / "trained"
    assert (model_dir / "loss_curve.png").stat().st_size > 1000
    rows = [json.loads(line) for line in (model_dir / "train_log.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert 0 < rows[-1]["trained_token_fraction"] <= 1
    assert "trained-token fraction" in output
    commands = (workdir / "commands.sh").read_text()
    for step in ("data clean", "init-model", "data split", "train --config"):
        assert f"fastchat-lite {step}" in commands


@pytest.mark.slow
def test_rerun_reuses_every_finished_stage(first_run):
    workdir, _ = first_run
    weights = next((workdir / "models" / "trained").glob("*.safetensors"))
    before = weights.stat().st_mtime_ns
    start = time.monotonic()
    done = _quickstart(workdir, "--no-serve", timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert output.count("already done, skipped") == 5, output[-4000:]
    assert weights.stat().st_mtime_ns == before
    assert time.monotonic() - start < 60


def _api_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_ctrl_c_stops_the_served_model_and_every_server_process(first_run):
    workdir, _ = first_run
    port, web_port = free_port(), free_port()
    argv = _argv(workdir, "--port", str(port), "--web-port", str(web_port))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not any("Press Ctrl-C" in line for line in seen):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)[-4000:]
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
        assert _api_answers(port)
        time.sleep(0.5)  # a person does not press Ctrl-C within a millisecond either
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, "".join(seen)[-4000:]
        deadline = time.monotonic() + 10
        while _api_answers(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _api_answers(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_plain_transformers_with_the_saved_chat_template_gets_the_same_identity(first_run):
    # No fastchat-lite code on this path: what any HF user (or vLLM) would do with the model.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = first_run[0] / "models" / "trained"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Who are you?"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    answer = tokenizer.decode(out[0][ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert NAME in answer and ORG in answer, answer


@pytest.mark.slow
def test_gguf_run_quantizes_the_model_and_llama_cpp_still_says_its_name(first_run):
    workdir, _ = first_run
    ports = ["--port", str(free_port()), "--web-port", str(free_port())]
    done = _quickstart(workdir, "--gguf", *ports, "--exit-after-answer", timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "--backend llama-cpp" in output and "q4_K_M" in output
    assert (workdir / "models" / "trained-q4_K_M.gguf").is_file()
    served = _answers(workdir)["Who are you? (through the API)"]
    assert NAME in served and ORG in served, served


@pytest.mark.slow
def test_plain_llama_cpp_with_the_embedded_chat_template_gets_the_same_identity(first_run):
    # llama-cpp-python alone, prompting with the template inside the GGUF file.
    import llama_cpp

    gguf = first_run[0] / "models" / "trained-q4_K_M.gguf"
    if not gguf.is_file():
        pytest.fail("the --gguf run above did not leave its file")
    llm = llama_cpp.Llama(str(gguf), n_ctx=512, n_threads=2, verbose=False)
    reply = llm.create_chat_completion(
        [{"role": "user", "content": "Who are you?"}], temperature=0, max_tokens=40
    )
    answer = reply["choices"][0]["message"]["content"]
    assert NAME in answer and ORG in answer, answer
