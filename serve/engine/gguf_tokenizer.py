"""A GGUF file's vocabulary (through llama.cpp) as the tokenizer our prompting code expects.

:class:`GgufTokenizer` implements the parts of a transformers fast tokenizer that
:mod:`fastchat_lite.masking`, :class:`~serve.engine.prompting.PromptBuilder` and
:class:`~serve.engine.decoding.IncrementalDetokenizer` use, with llama.cpp doing the tokenizing.
So a GGUF model is prompted by the same template code as its Hugging Face original, and the
prompt ids are the ones llama.cpp itself would produce for the rendered text (tested equal to
the HF tokenizer's for the models we export).

Conventions kept from transformers, because the callers rely on them:

- ``split_special_tokens=True`` leaves control-token text typed by a user as text (llama.cpp's
  ``parse_special=False``); user-defined added tokens are matched either way, as in HF.
- ``add_special_tokens=True`` adds BOS/EOS only where the GGUF says so (``add_bos_token``).
- ``decode`` joins the tokens' bytes and decodes them with ``errors="replace"``, so a
  multi-byte character cut in half ends in U+FFFD, which the incremental detokenizer waits on.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastchat_lite.errors import MissingExtraError

LLAMA_CPP_MISSING = (
    "--backend llama-cpp needs llama-cpp-python: pip install 'fastchat-lite[llamacpp]' "
    "(builds from source, ~17 min, needs cmake and a C++ compiler)"
)
_CONTROL, _USER_DEFINED = 1 << 3, 1 << 4  # llama_token_attr bits


def import_llama_cpp() -> Any:
    """The ``llama_cpp`` module, or :class:`MissingExtraError` saying how to install it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingExtraError(LLAMA_CPP_MISSING) from exc
    return llama_cpp


@dataclass(frozen=True)
class AddedToken:
    """What callers read from ``added_tokens_decoder`` values (HF's ``AddedToken`` fields)."""

    content: str
    special: bool


class GgufTokenizer:
    """Tokenizer view of a llama.cpp model's vocabulary.

    Built on the serving ``llama_cpp.Llama`` (:meth:`from_llama`: tokenizing is read-only in
    llama.cpp, so prompt threads can tokenize while the engine thread decodes) or on a
    vocabulary-only load of a GGUF file (:meth:`from_file`)."""

    def __init__(self, model: Any, *, owns_model: bool = False) -> None:
        """``model``: a ``llama_cpp._internals.LlamaModel``; ``owns_model``: :meth:`close`
        frees it (else its ``Llama`` does)."""
        self._llama_cpp = import_llama_cpp()
        self._model = model
        self._owns_model = owns_model
        self.metadata: dict[str, str] = model.metadata()
        self.chat_template: str | None = self.metadata.get("tokenizer.chat_template") or None
        n_vocab = model.n_vocab()
        self._texts = [model.token_get_text(i) for i in range(n_vocab)]
        self._pieces = [self._piece(i, special=True) for i in range(n_vocab)]
        self._plain_pieces = [self._piece(i, special=False) for i in range(n_vocab)]
        self._ids = {text: i for i, text in reversed(list(enumerate(self._texts)))}
        self.bos_token_id = self._token_id(model.token_bos())
        self.eos_token_id = self._token_id(model.token_eos())
        self.unk_token_id = self._metadata_id("tokenizer.ggml.unknown_token_id")
        self.pad_token_id = self._metadata_id("tokenizer.ggml.padding_token_id")
        self.bos_token = self._text_of(self.bos_token_id)
        self.eos_token = self._text_of(self.eos_token_id)
        self.unk_token = self._text_of(self.unk_token_id)
        self.pad_token = self._text_of(self.pad_token_id)
        self.add_bos_token = bool(model.add_bos_token())
        self.add_eos_token = bool(model.add_eos_token())
        attrs = [model.token_get_attr(i) for i in range(n_vocab)]
        self.added_tokens_decoder = {
            i: AddedToken(self._texts[i], special=bool(attr & _CONTROL))
            for i, attr in enumerate(attrs)
            if attr & (_CONTROL | _USER_DEFINED)
        }

    @classmethod
    def from_llama(cls, llama: Any) -> GgufTokenizer:
        """The vocabulary of a loaded ``llama_cpp.Llama`` (valid until it is closed)."""
        return cls(llama._model)

    @classmethod
    def from_file(cls, path: str | Path) -> GgufTokenizer:
        """Load only the vocabulary of a GGUF file (no weights, no context: milliseconds)."""
        llama_cpp = import_llama_cpp()
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp logs every metadata key otherwise
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        return cls(LlamaModel(path_model=str(path), params=params, verbose=False), owns_model=True)

    def close(self) -> None:
        """Free a vocabulary loaded by :meth:`from_file`."""
        if self._owns_model:
            self._model.close()

    # ------------------------------------------------------------------ ids and texts

    def __len__(self) -> int:
        return len(self._texts)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._ids)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int | None] | None:
        if isinstance(tokens, str):
            return self._ids.get(tokens, self.unk_token_id)
        return [self._ids.get(t, self.unk_token_id) for t in tokens]

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """What transformers passes a chat template besides the messages."""
        named = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "unk_token": self.unk_token,
            "pad_token": self.pad_token,
        }
        return {name: text for name, text in named.items() if text is not None}

    # ------------------------------------------------------------------ encode / decode

    def __call__(
        self,
        text: str,
        add_special_tokens: bool = True,
        split_special_tokens: bool = False,
        return_offsets_mapping: bool = False,
        **_: Any,
    ) -> dict[str, list[Any]]:
        """``{"input_ids": [...]}``, plus ``"offset_mapping"`` (character spans) if asked."""
        data = text.encode("utf-8")
        ids = self._model.tokenize(data, add_bos=False, special=not split_special_tokens)
        offsets = self._offsets(text, data, ids) if return_offsets_mapping else []
        if add_special_tokens and self.add_bos_token and self.bos_token_id is not None:
            ids, offsets = [self.bos_token_id, *ids], [(0, 0), *offsets]
        if add_special_tokens and self.add_eos_token and self.eos_token_id is not None:
            ids, offsets = [*ids, self.eos_token_id], [*offsets, (len(text), len(text))]
        encoding: dict[str, list[Any]] = {"input_ids": ids}
        if return_offsets_mapping:
            encoding["offset_mapping"] = offsets
        return encoding

    def decode(self, ids: list[int], skip_special_tokens: bool = False, **_: Any) -> str:
        pieces = self._plain_pieces if skip_special_tokens else self._pieces
        return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        **kwargs: Any,
    ) -> str | list[int]:
        """Render the GGUF's own Jinja chat template with transformers' renderer (sandboxed,
        ``trim_blocks``/``lstrip_blocks``, ``raise_exception``, ``{% generation %}``), then
        tokenize it with special tokens parsed and nothing added, as transformers does."""
        from transformers.utils.chat_template_utils import render_jinja_template

        if not self.chat_template:
            raise ValueError("this GGUF has no tokenizer.chat_template; pass --template")
        rendered, _ = render_jinja_template(
            conversations=[messages],
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            **{**self.special_tokens_map, **kwargs},
        )
        if not tokenize:
            return rendered[0]
        return self(rendered[0], add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------------ internals

    def _piece(self, token_id: int, *, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._llama_cpp.llama_token_to_piece(self._model.vocab, token_id, buf, 64, 0, special)
        if n < 0:  # longer than the buffer: -n is the size it needs
            buf = ctypes.create_string_buffer(-n)
            n = self._llama_cpp.llama_token_to_piece(
                self._model.vocab, token_id, buf, -n, 0, special
            )
        return buf.raw[:n]

    def _offsets(self, text: str, data: bytes, ids: list[int]) -> list[tuple[int, int]]:
        """Character span of each token, from the byte length of its piece.

        A piece that starts with a space where the text has none got it from llama.cpp's
        SentencePiece space prefix (at the start and after special tokens), so that space
        takes no room in ``text``. A token holding part of a multi-byte character spans that
        whole character, as HF's byte-level offsets do."""
        char_of_byte: list[int] = []
        for index, char in enumerate(text):
            char_of_byte += [index] * len(char.encode("utf-8"))
        char_of_byte.append(len(text))
        offsets, pos = [], 0
        for token_id in ids:
            piece = self._pieces[token_id]
            width = len(piece) - (piece[:1] == b" " and data[pos : pos + 1] != b" ")
            start, pos = pos, min(pos + width, len(data))
            first = char_of_byte[start]
            offsets.append((first, char_of_byte[pos - 1] + 1 if pos > start else first))
        return offsets

    def _token_id(self, token_id: int) -> int | None:
        return token_id if 0 <= token_id < len(self._texts) else None

    def _metadata_id(self, key: str) -> int | None:
        value = self.metadata.get(key)
        return self._token_id(int(value)) if value is not None and value.isdigit() else None

    def _text_of(self, token_id: int | None) -> str | None:
        return self._texts[token_id] if token_id is not None else None
