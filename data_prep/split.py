"""``data split``: cut long conversations at exchange boundaries so each piece fits N tokens.

A piece is a run of whole exchanges (human turn + gpt reply), rendered with the training
template (BOS, system prompt and all) and tokenized by :func:`fastchat_lite.encode_conversation`,
the exact training tokenization. Each conversation is tokenized once; the tokens of each turn
are counted from that one pass, pieces are packed greedily from those counts, and every piece
that is not the whole conversation is re-measured with the real function (and shrunk if the
estimate was off), so the guarantee "fits N" never rests on the estimate.

Piece ids are ``<id>_<k>`` (k = 0, 1, ...), also when a conversation fits whole. A leading
system turn is repeated in every piece (it is context, not a turn to learn). An exchange that
alone exceeds N is reported as ``exchange_too_long`` and dropped (default) or, with
``--on-long truncate``, kept alone with its reply cut to fit.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.drops import DropLog, DropReason, Tally
from data_prep.normalize import (
    IdRegistry,
    RecordDropped,
    check_turns,
    duplicate_ids_field,
    raw_turns,
    record_id,
)
from fastchat_lite.config import check_ranges
from fastchat_lite.errors import FastChatLiteError
from fastchat_lite.io import atomic_write, iter_records
from fastchat_lite.templates import DEFAULT_TEMPLATE

Turn = dict[str, str]


@dataclass
class SplitConfig:
    """Options of ``fastchat-lite data split``."""

    tokenizer: str = field(default="", metadata={"help": "tokenizer directory (required)"})
    max_length: int = field(
        default=2048, metadata={"help": "token budget of every piece", "min": 1}
    )
    template: str = field(default=DEFAULT_TEMPLATE, metadata={"help": "conversation template"})
    on_long: str = field(
        default="drop",
        metadata={
            "help": "an exchange longer than --max-length on its own: drop it or truncate "
            "its reply",
            "choices": ["drop", "truncate"],
        },
    )
    duplicate_ids: str = duplicate_ids_field()


class Splitter:
    """Splits one conversation; holds the tokenizer and template."""

    def __init__(self, tokenizer: Any, config: SplitConfig) -> None:
        from fastchat_lite import get_template

        self.tokenizer = tokenizer
        self.template = get_template(config.template)
        self.max_length = config.max_length
        self.truncate = config.on_long == "truncate"

    def length(self, turns: list[Turn]) -> int:
        from fastchat_lite import encode_conversation

        return len(encode_conversation(turns, self.tokenizer, self.template).input_ids)

    def turn_lengths(self, turns: list[Turn]) -> tuple[int, list[int]]:
        """(preamble tokens, tokens of each non-system turn) from one tokenization."""
        from fastchat_lite import encode_conversation

        encoded = encode_conversation(turns, self.tokenizer, self.template)
        counts = Counter(encoded.turn_of_token)
        body = len(turns) - (turns[0]["from"] == "system")
        return counts.get(-1, 0), [counts.get(i, 0) for i in range(body)]

    def split(self, turns: list[Turn]) -> tuple[list[list[Turn]], list[tuple[int, str]]]:
        """Pieces of ``turns`` and the long exchanges met: (exchange number, what was done)."""
        system = turns[:1] if turns[0]["from"] == "system" else []
        body = turns[len(system) :]
        preamble, per_turn = self.turn_lengths(turns)
        if preamble + sum(per_turn) <= self.max_length:
            return [turns], []
        exchanges = [body[i : i + 2] for i in range(0, len(body), 2)]
        costs = [per_turn[i] + per_turn[i + 1] for i in range(0, len(body), 2)]
        pieces: list[list[Turn]] = []
        long: list[tuple[int, str]] = []
        start, used = 0, preamble  # exchanges start..k-1 are packed, costing `used`
        for k, cost in enumerate(costs):
            if k > start and used + cost > self.max_length:
                self._fit(system, exchanges, start, k, pieces, long)
                start, used = k, preamble
            used += cost
        self._fit(system, exchanges, start, len(exchanges), pieces, long)
        return pieces, long

    def _fit(
        self,
        system: list[Turn],
        exchanges: list[list[Turn]],
        start: int,
        stop: int,
        pieces: list[list[Turn]],
        long: list[tuple[int, str]],
    ) -> None:
        """Measure exchanges[start:stop] for real; emit pieces, moving exchanges out if needed."""
        while start < stop:
            take = stop - start
            while True:
                piece = system + [t for ex in exchanges[start : start + take] for t in ex]
                if self.length(piece) <= self.max_length:
                    pieces.append(piece)
                    break
                if take == 1:  # one exchange alone is too long
                    cut = self._truncated(system, exchanges[start]) if self.truncate else None
                    long.append((start, "truncated" if cut else "dropped"))
                    if cut:
                        pieces.append(cut)
                    break
                take -= 1
            start += take

    def _truncated(self, system: list[Turn], exchange: list[Turn]) -> list[Turn] | None:
        """The exchange with the longest reply prefix that fits, or None if none does."""
        human, gpt = exchange
        reply = gpt["value"]
        lo, hi = 0, len(reply)  # invariant: prefix of length lo fits (0 = not checked)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            candidate = [*system, human, {"from": "gpt", "value": reply[:mid]}]
            if self.length(candidate) <= self.max_length:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0 or not reply[:lo].strip():
            return None
        return [*system, human, {"from": "gpt", "value": reply[:lo]}]


def load_tokenizer(path: str) -> Any:
    if not path:
        raise FastChatLiteError("data split needs --tokenizer DIR (a Hugging Face tokenizer dir)")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise FastChatLiteError(f"cannot load tokenizer from {path}: {exc}") from None


def _conversation(raw: Any) -> tuple[str, list[Turn]]:
    if raw.error is not None:
        reason = DropReason.INVALID_UTF8 if "UTF-8" in raw.error else DropReason.INVALID_JSON
        raise RecordDropped(reason, raw.error)
    rid = record_id(raw.value, raw.index) if isinstance(raw.value, dict) else None
    turns = raw_turns(raw.value)
    check_turns(turns)
    body = len(turns) - (bool(turns) and turns[0]["from"] == "system")
    if body == 0 or body % 2:
        raise RecordDropped(DropReason.NOT_ALTERNATING, "must end with a gpt turn")
    return str(rid), turns


def split_file(
    in_path: str | Path, out_path: str | Path, config: SplitConfig, drops: DropLog, progress=True
) -> Tally:
    """Split every conversation of ``in_path`` into ``out_path`` (atomic)."""
    from tqdm import tqdm

    check_ranges(config, "data split")
    splitter = Splitter(load_tokenizer(config.tokenizer), config)
    tally = drops.tally
    ids = IdRegistry(config.duplicate_ids)
    tally.fixed["duplicate_ids_suffixed"] = 0
    notes = Counter({"pieces_written": 0, "records_split": 0, "long_exchanges": 0})
    bar = tqdm(desc="split", unit=" conv", disable=None if progress else True, file=sys.stderr)
    with atomic_write(out_path) as out, bar:
        for raw in iter_records(in_path):
            tally.read += 1
            bar.update()
            try:
                rid, turns = _conversation(raw)
                pieces, long = splitter.split(turns)
            except RecordDropped as drop:
                drops.drop(raw.index, None, drop.reason, drop.detail)
                continue
            except FastChatLiteError as exc:
                drops.drop(raw.index, None, DropReason.BAD_SHAPE, str(exc))
                continue
            if pieces:  # piece ids come from the record's: it must be unique first
                new_id = ids.claim(rid)
                if new_id is None:
                    detail = f"id {rid!r} is taken by an earlier kept record"
                    drops.drop(raw.index, rid, DropReason.DUPLICATE_ID, detail)
                    continue
                tally.fixed["duplicate_ids_suffixed"] += new_id != rid
                rid = new_id
            for k, action in long:
                detail = f"exchange {k} alone exceeds {config.max_length} tokens: {action}"
                drops.drop(raw.index, rid, DropReason.EXCHANGE_TOO_LONG, detail)
            for k, piece in enumerate(pieces):
                record = {"id": f"{rid}_{k}", "conversations": piece}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            tally.kept += bool(pieces)
            notes.update(pieces_written=len(pieces), records_split=len(pieces) > 1)
            notes["long_exchanges"] += len(long)
    tally.notes.update(notes)
    return tally
