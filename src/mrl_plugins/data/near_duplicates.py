"""Evaluation texts with a near-copy among the training texts: what an exact leak check misses."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .types import IRSet, normalise_text


@dataclass
class NearDuplicates:
    """Evaluation texts with a near-copy among the training texts (:func:`find_near_duplicates`)."""

    threshold: float
    queries: int
    documents: int
    examples: list[dict[str, Any]]
    """A few of them: the evaluation text, its nearest training text, their similarity."""

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "queries": self.queries, "documents": self.documents,
                "examples": self.examples}


SHINGLE_WORDS = 3


MINHASHES, BANDS = 64, 16


def _shingles(text: str) -> set[int]:
    """Word 3-grams of the normalised text (the whole text when shorter), as 32-bit hashes
    (CRC-32: the same in every process, unlike ``hash``)."""
    import zlib

    words = normalise_text(text).split()
    grams = [" ".join(words[i:i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))]
    return {zlib.crc32(g.encode("utf-8")) for g in grams}


def _signatures(sets: Sequence[set[int]]) -> Any:
    """MinHash signatures (``MINHASHES`` universal hashes ``(a·x + b) mod p``) of shingle sets."""
    import numpy as np

    rng = np.random.default_rng(0)
    prime = np.uint64((1 << 61) - 1)
    a = rng.integers(1, 1 << 31, MINHASHES, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, MINHASHES, dtype=np.uint64)
    out = np.empty((len(sets), MINHASHES), dtype=np.uint64)
    for i, shingles in enumerate(sets):
        x = np.fromiter(shingles, dtype=np.uint64, count=len(shingles))
        out[i] = ((x[:, None] * a[None, :] + b[None, :]) % prime).min(axis=0)
    return out


def find_near_duplicates(train_texts: Iterable[str], eval_set: IRSet, *, threshold: float = 0.8,
                         examples: int = 5) -> NearDuplicates:
    """Evaluation queries and relevant documents whose word 3-grams overlap a training text's by
    a Jaccard similarity of at least ``threshold``: the near-copies an exact leak check misses (a
    changed word, a version number, a sibling's description). Candidates come from MinHash with
    locality-sensitive hashing (64 hashes in 16 bands: a pair at Jaccard 0.8 is a candidate with
    probability 0.9998), each confirmed on its exact Jaccard; linear in the texts, no model. Exact
    copies count too (:func:`find_leaks` refuses those earlier)."""
    train = list(dict.fromkeys(train_texts))
    queries = list(eval_set.queries.values())
    documents = sorted(eval_set.relevant_texts())
    if not train or not (queries or documents):
        return NearDuplicates(threshold, 0, 0, [])
    train_sets = [_shingles(t) for t in train]
    rows = MINHASHES // BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for i, signature in enumerate(_signatures(train_sets)):
        for band in range(BANDS):
            buckets[band, signature[band * rows:(band + 1) * rows].tobytes()].append(i)
    found: dict[str, int] = {"queries": 0, "documents": 0}
    shown: list[dict[str, Any]] = []
    for side, texts in (("queries", queries), ("documents", documents)):
        sets = [_shingles(t) for t in texts]
        for text, shingles, signature in zip(texts, sets, _signatures(sets)):
            candidates = {j for band in range(BANDS)
                          for j in buckets.get((band, signature[band * rows:(band + 1) * rows].tobytes()), ())}
            best, nearest = 0.0, -1
            for j in candidates:
                similarity = len(shingles & train_sets[j]) / len(shingles | train_sets[j])
                if similarity > best:
                    best, nearest = similarity, j
            if best >= threshold:
                found[side] += 1
                if len(shown) < examples:
                    shown.append({"side": "query" if side == "queries" else "document", "text": text[:160],
                                  "training_text": train[nearest][:160], "jaccard": round(best, 3)})
    return NearDuplicates(threshold, found["queries"], found["documents"], shown)
