"""Near-duplicate conversations: MinHash signatures of word shingles, LSH to find pairs.

A conversation's text is all its turns joined, lowercased, whitespace collapsed; its set is
the shingles of ``SHINGLE_WORDS`` consecutive words (a shorter conversation is one shingle of
all its words), each hashed to 32 bits. Workers compute a ``NUM_PERM``-value signature per
kept record (:class:`Signer`); after the whole input is read the parent decides
(:func:`find_near_duplicates`): records longest first, each one is a near-duplicate of the
most similar record already kept whose estimated Jaccard similarity reaches the threshold,
else it is kept. So the longest conversation of a group survives and every dropped one names
a kept record it resembles. Memory: the signatures (``4 * NUM_PERM`` bytes a record) and
the LSH bucket arrays (8 bytes a band a record), never the texts.

datasketch is imported only when near-duplicate removal is asked for.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_prep.drops import DropLog, DropReason
from fastchat_lite.errors import FastChatLiteError, MissingExtraError
from fastchat_lite.io import atomic_write

if TYPE_CHECKING:
    import numpy as np

    from data_prep.checkpoint import WorkDir

NUM_PERM = 128  # signature length: Jaccard estimates within about +-0.03 near 0.9
SHINGLE_WORDS = 5
SEED = 1  # fixed: signatures of a resumed run must match those of the first
SCHEME = "affine32"  # uint32 values; the permutation is a bijection (no added collisions)
SIGNATURE_BYTES = 4 * NUM_PERM
LSH_RECALL = 0.99  # chance that a pair exactly at the threshold becomes a candidate


def load_datasketch() -> Any:
    try:
        import datasketch
    except ImportError:
        raise MissingExtraError(
            "--near-dup needs datasketch: pip install 'datasketch>=2.0'"
        ) from None
    return datasketch


def shingle_hashes(texts: Sequence[str]) -> np.ndarray:
    """32-bit hashes of the word ``SHINGLE_WORDS``-grams of the texts joined and lowercased.

    Each word is hashed once (crc32); a shingle's hash combines its words' hashes with fixed
    odd multipliers (vectorised, no shingle string is built). A conversation of fewer words
    is one shingle of all of them; an empty one, one shingle.
    """
    import numpy as np

    words = " ".join(" ".join(texts).lower().split()).encode("utf-8").split(b" ")
    hashes = np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=len(words))
    k = min(SHINGLE_WORDS, len(words))
    n = len(words) - k + 1
    mixed = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        mixed += hashes[j : j + n] * np.uint64(_MULTIPLIERS[j])  # wraps mod 2**64
    return (mixed >> np.uint64(32)).astype(np.uint32)


# Odd 64-bit constants (from splitmix64 / xxhash): position j of a shingle gets _MULTIPLIERS[j].
_MULTIPLIERS = (
    0x9E3779B97F4A7C15,
    0xBF58476D1CE4E5B9,
    0x94D049BB133111EB,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
)


class Signer:
    """MinHash signatures of conversations; built once per worker process.

    datasketch's ``MinHash`` (scheme ``affine32``) defines the permutations; applying them is
    the same arithmetic as its ``update_batch`` (a test checks the values are identical),
    done on the shingle hash array directly: its per-value Python loop and per-record object
    would cost a third of the time.
    """

    def __init__(self) -> None:
        import numpy as np

        minhash = load_datasketch().MinHash(NUM_PERM, SEED, scheme=SCHEME)
        self._a, self._b = (np.asarray(p, dtype=np.uint32) for p in minhash.permutations)

    def signature(self, texts: Sequence[str]) -> bytes:
        """``SIGNATURE_BYTES`` bytes (``NUM_PERM`` little-endian uint32) of the texts."""
        hashes = _fmix32(shingle_hashes(texts))
        permuted = hashes[:, None] * self._a + self._b  # wraps mod 2**32: a bijection (a odd)
        return permuted.min(axis=0).astype("<u4").tobytes()


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: the pre-mix of datasketch's affine32 scheme."""
    import numpy as np

    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def lsh_bands(threshold: float) -> tuple[int, int]:
    """(bands, rows per band) for the LSH index: the most rows (fewest chance candidates to
    verify) that still make a pair at ``threshold`` a candidate with ``LSH_RECALL``.

    Candidates are verified on their signatures, so recall matters more than precision
    (datasketch's default balance finds only ~30% of the pairs right at a 0.9 threshold).
    """
    for rows in range(NUM_PERM, 0, -1):
        bands = NUM_PERM // rows
        if 1 - (1 - threshold**rows) ** bands >= LSH_RECALL:
            return bands, rows
    return NUM_PERM, 1


def find_near_duplicates(
    signatures: np.ndarray, lengths: Sequence[int], threshold: float
) -> dict[int, tuple[int, float]]:
    """Which records to drop: position -> (position of the kept record it resembles, Jaccard).

    ``signatures`` is an ``(n, NUM_PERM)`` uint32 array, ``lengths`` the characters of each
    record. Records are visited longest first (ties: earlier position first); a record whose
    estimated Jaccard similarity with an already kept one is ``>= threshold`` is dropped in
    favour of the most similar such record (ties: the longer, then the earlier), else kept.
    Candidates come from LSH buckets (:func:`band_buckets`) and are verified on signatures.
    """
    import numpy as np

    buckets = band_buckets(signatures, *lsh_bands(threshold))
    shared = np.zeros(len(lengths), dtype=bool)  # in some bucket with another record
    for inverse, sizes in buckets:
        shared |= sizes[inverse] > 1
    kept_in: dict[tuple[int, int], list[int]] = {}  # (band, bucket) -> kept positions
    dropped: dict[int, tuple[int, float]] = {}
    for position in sorted(np.flatnonzero(shared).tolist(), key=lambda i: (-lengths[i], i)):
        row = signatures[position]
        keys = [(b, int(inverse[position])) for b, (inverse, _) in enumerate(buckets)]
        candidates = {kept for key in keys for kept in kept_in.get(key, ())}
        best: tuple[float, int, int] | None = None  # (-similarity, -length, kept position)
        for kept in candidates:
            similarity = float(np.count_nonzero(signatures[kept] == row)) / NUM_PERM
            if similarity >= threshold:
                candidate = (-similarity, -lengths[kept], kept)
                best = candidate if best is None else min(best, candidate)
        if best is None:
            for key in keys:
                kept_in.setdefault(key, []).append(position)
        else:
            dropped[position] = (best[2], -best[0])
    return dropped


def band_buckets(
    signatures: np.ndarray, bands: int, rows: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """LSH: per band of ``rows`` signature values, (bucket of each record, size of each
    bucket); two records share a bucket when their values in that band are equal.

    Arrays, not an index of Python objects (datasketch's MinHashLSH holds ~4 KB a record):
    about ``8 * bands`` bytes a record besides the signatures.
    """
    import numpy as np

    buckets = []
    for b in range(bands):
        band = np.ascontiguousarray(signatures[:, b * rows : (b + 1) * rows])
        keys = band.view(np.dtype((np.void, band.itemsize * rows))).ravel()
        _, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)
        buckets.append((inverse.ravel(), sizes))
    return buckets


def remove_near_duplicates(
    work: WorkDir, out_path: str | Path, threshold: float, drops: DropLog
) -> None:
    """Second pass: decide from the work dir's signatures, then copy the survivors of its
    ``kept.jsonl`` to ``out_path`` (input order kept; written in the work dir, then renamed,
    so a kill leaves nothing beside ``out_path``); each near-duplicate is counted with the id
    of the kept record it resembles."""
    import numpy as np

    ids, indexes, lengths = work.kept_index()
    signatures = np.fromfile(work.signatures_path(), dtype="<u4").reshape(-1, NUM_PERM)
    if len(signatures) != len(ids):
        raise FastChatLiteError(
            f"{work.path}: {len(signatures)} signatures for {len(ids)} kept records; "
            "run without --resume to start over"
        )
    dropped = find_near_duplicates(signatures, lengths, threshold)
    del signatures
    with atomic_write(work.path / "unique.jsonl", "wb") as out, work.kept_lines() as lines:
        for position, line in enumerate(lines):
            if position not in dropped:
                out.write(line)
                continue
            kept, similarity = dropped[position]
            detail = f"of {ids[kept]} (Jaccard ~{similarity:.2f})"
            drops.drop(indexes[position], ids[position], DropReason.NEAR_DUPLICATE, detail)
            drops.tally.kept -= 1
    work.publish(out_path, "unique.jsonl")
