"""``data clean --near-dup``: MinHash near-duplicates, the longest of a group kept, reported."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
from data_fixtures import conversation, read_jsonl, reply, write_jsonl

import fastchat_lite.cli as cli
from data_prep.near_dup import NUM_PERM, Signer, find_near_duplicates, shingle_hashes

pytest.importorskip("datasketch")

WORDS = [f"w{i}" for i in range(3000)]


@pytest.fixture
def run_cli(monkeypatch):
    """``fastchat-lite`` with only the data command (other stages may not be installed)."""
    monkeypatch.setattr(cli, "COMMANDS", {"data": "data_prep.cli"})
    return cli.main


def words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def edited(text: str, changes: int, rng: random.Random) -> str:
    """``text`` with ``changes`` random words replaced by shorter ones (each edit changes up
    to 5 shingles)."""
    out = text.split()
    for position in rng.sample(range(len(out)), changes):
        out[position] = f"e{rng.randrange(100)}"
    return " ".join(out)


def cleaned(tmp_path, run_cli, records, *flags) -> tuple[list[str], list[dict]]:
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    args = ["data", "clean", str(src), "-o", str(out), "--report", str(report), "--quiet"]
    assert run_cli([*args, *flags]) == 0
    drops = json.loads(report.read_text(encoding="utf-8"))["drops"]
    return [r["id"] for r in read_jsonl(out)], drops


def test_near_duplicates_keep_the_longest_in_input_order_and_name_it_in_the_report(
    tmp_path, run_cli
):
    rng = random.Random(0)
    question, answer = " ".join(words(rng, 60)), " ".join(words(rng, 400))
    other_q, other_a = " ".join(words(rng, 60)), " ".join(words(rng, 400))
    records = [
        conversation("original", (question, reply(f"<p>{answer}</p>"))),
        conversation("other", (other_q, other_a)),
        conversation("one_edit", (question, edited(answer, 1, rng))),
        conversation("longest", (question, answer + " and one more closing sentence here")),
        conversation("other_copy", (other_q, other_a)),  # exact duplicate
        conversation("SHOUTED", (question.upper(), answer.replace(" ", "\n", 9))),
    ]

    kept, drops = cleaned(tmp_path, run_cli, records, "--near-dup", "0.9")

    assert kept == ["other", "longest"]
    by_id = {d["id"]: d for d in drops}
    assert by_id["other_copy"]["reason"] == "duplicate"
    assert by_id["other_copy"]["detail"] == "of other"
    for rid, index in (("original", 0), ("one_edit", 2), ("SHOUTED", 5)):
        assert by_id[rid]["reason"] == "near_duplicate"
        assert by_id[rid]["index"] == index
        detail = by_id[rid]["detail"]
        assert detail.startswith("of longest (Jaccard ~") and float(detail[-5:-1]) >= 0.9
    assert len(drops) == 4

    kept_without, drops_without = cleaned(tmp_path, run_cli, records)
    assert kept_without == ["original", "other", "one_edit", "longest", "SHOUTED"]
    assert [d["reason"] for d in drops_without] == ["duplicate"]


def test_near_dup_threshold_decides_how_similar_is_a_duplicate(tmp_path, run_cli):
    rng = random.Random(1)
    answer = " ".join(words(rng, 300))
    records = [
        conversation("a", ("question", answer)),
        conversation("b", ("question", edited(answer, 8, rng))),  # Jaccard about 0.75
    ]
    assert cleaned(tmp_path, run_cli, records, "--near-dup", "0.9")[0] == ["a", "b"]
    kept, drops = cleaned(tmp_path, run_cli, records, "--near-dup", "0.6")
    assert kept == ["a"] and drops[0]["reason"] == "near_duplicate"


def test_near_dup_ties_in_length_keep_the_first_seen(tmp_path, run_cli):
    rng = random.Random(2)
    answer = words(rng, 300)
    records = [
        conversation("first", ("q", " ".join([*answer[:150], "xx", *answer[151:]]))),
        conversation("second", ("q", " ".join([*answer[:150], "yy", *answer[151:]]))),
    ]
    kept, drops = cleaned(tmp_path, run_cli, records, "--near-dup", "0.9")
    assert kept == ["first"]
    assert drops[0]["id"] == "second" and drops[0]["detail"].startswith("of first")


def test_near_dup_output_is_the_same_for_any_workers(tmp_path, run_cli):
    rng = random.Random(3)
    bases = [" ".join(words(rng, 200)) for _ in range(12)]
    records = [
        conversation(f"c{i}", ("q", edited(rng.choice(bases), rng.randrange(3), rng) + f" t{i}"))
        for i in range(80)
    ]
    outputs = []
    for workers, chunk in (("1", "32"), ("2", "3")):
        flags = ["--near-dup", "0.8", "--workers", workers, "--chunk-size", chunk]
        result = cleaned(tmp_path, run_cli, records, *flags)
        outputs.append((result, (tmp_path / "out.jsonl").read_bytes()))
    assert outputs[0] == outputs[1]
    kept, drops = outputs[0][0]
    assert 12 <= len(kept) < 40 and {d["reason"] for d in drops} == {"near_duplicate"}


def test_short_conversations_are_one_shingle_of_all_their_words():
    assert len(shingle_hashes(["Hi  there", "friend"])) == 1
    assert shingle_hashes(["Hi  there", "friend"]) == shingle_hashes(["hi there\nFRIEND"])
    assert shingle_hashes(["hi there friend"]) != shingle_hashes(["hi there fiend"])
    assert len(shingle_hashes([""])) == 1
    assert len(shingle_hashes(["one two three four five six"])) == 2  # 5-word shingles


def test_short_near_duplicates_differing_in_case_and_spacing_are_found(tmp_path, run_cli):
    records = [
        conversation("a", ("Hi", "Hello there!")),
        conversation("b", ("hi", "hello THERE!")),  # as long as "a": the first is kept
        conversation("c", ("Hi", "Hello where!")),
    ]
    kept, drops = cleaned(tmp_path, run_cli, records, "--near-dup", "0.9")
    assert kept == ["a", "c"]
    assert (drops[0]["id"], drops[0]["detail"]) == ("b", "of a (Jaccard ~1.00)")


def test_find_near_duplicates_credits_each_drop_to_a_kept_record_it_resembles():
    rng = random.Random(4)
    signer = Signer()
    base = " ".join(words(rng, 400))
    chain = [base]  # each step drifts further: the last resembles the first no more
    for _ in range(6):
        chain.append(edited(chain[-1], 3, rng))
    texts = [*chain, " ".join(words(rng, 400))]
    sigs = np.frombuffer(b"".join(signer.signature([t]) for t in texts), dtype="<u4")
    sigs = sigs.reshape(-1, NUM_PERM)
    lengths = [len(t) + (100 if i == 0 else 0) for i, t in enumerate(texts)]

    dropped = find_near_duplicates(sigs, lengths, 0.85)

    assert 0 not in dropped and len(texts) - 1 not in dropped
    assert dropped  # the first edits are near-duplicates of the (longest) original
    for position, (kept, similarity) in dropped.items():
        assert kept not in dropped and similarity >= 0.85
        assert float(np.mean(sigs[position] == sigs[kept])) == similarity


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2"])
def test_near_dup_threshold_out_of_range_is_a_one_line_error(tmp_path, run_cli, capsys, value):
    src = write_jsonl(tmp_path / "in.jsonl", [conversation("a", ("q", "a"))])
    with pytest.raises(SystemExit) as exited:  # refused by argparse, before any work
        run_cli(["data", "clean", str(src), "-o", str(tmp_path / "o"), "--near-dup", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--near-dup" in err and "> 0 and <= 1" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_datasketch_is_imported_only_with_near_dup(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [conversation("a", ("q", "a"))])
    code = (
        "import sys, fastchat_lite.cli as c\n"
        "c.COMMANDS = {'data': 'data_prep.cli'}\n"
        "try:\n    c.main(['data', 'clean', '--help'])\nexcept SystemExit:\n    pass\n"
        "help_loaded = 'datasketch' in sys.modules\n"
        f"c.main(['data', 'clean', {str(src)!r}, '-o', {str(tmp_path / 'o')!r}, '--quiet'])\n"
        "print(help_loaded, 'datasketch' in sys.modules, 'data_prep.near_dup' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-3:] == ["False", "False", "False"]


@pytest.mark.parametrize("n_words", [1, 4, 5, 6, 80, 900])
def test_signatures_equal_datasketch_minhash_update_batch_of_the_same_shingles(n_words):
    from datasketch import MinHash

    from data_prep.near_dup import SCHEME, SEED

    rng = random.Random(n_words)
    texts = [" ".join(words(rng, n_words)), "Ünïcode\u00a0数据 🎉"]
    reference = MinHash(NUM_PERM, SEED, hashfunc=int, scheme=SCHEME)
    reference.update_batch(shingle_hashes(texts).tolist())
    assert Signer().signature(texts) == reference.hashvalues.astype("<u4").tobytes()
