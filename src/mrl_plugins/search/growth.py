"""How a funnel's shortlist scales with the corpus (issue #37, item 2).

A run chooses how to serve on its validation corpus (a thousand documents, say), and a user
serves a hundred times that. What holds a funnel's quality is whether its shortlist still holds
the exact full-width top k; as the corpus grows, more documents crowd each of those k in the
shortlist index's ranking (a truncated prefix, binary codes, a graph), and a fixed shortlist
holds fewer of them. So the ``funnel`` comparison grows the validation corpus with unlabelled
documents no part of the run saw (:meth:`~mrl_plugins.data.types.DataBundle.unseen_documents`;
recall of the exact top k needs no labels) and measures, at each size, where in the shortlist
index's own ranking each exact top-k document falls (:func:`shortlist_ranks`). From those ranks
come, per size, the recall a shortlist of S keeps and the shortlist that keeps the recall it
had on the validation corpus (:class:`Growth`); a power law fitted to the latter (log shortlist
against log size, least squares) carries it to a declared ``[serving] corpus_size``, marked as
extrapolated. With one measured size the shortlist is scaled in proportion to the corpus: the
rank of a fixed document among n documents drawn alike grows with n (and the fitted exponents
on the Debian catalogue are near 1, see docs/benchmarks.md).

Where it is approximate, said once: the ranks are the shortlist index's own order (exact for
flat, int8 and binary codes; an HNSW or IVF search is itself approximate, searched with the
longest shortlist), and a document in the shortlist is counted as found, which is exact for a
float32 rerank at full width and near it for an int8 rescore.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..components import SearchIndex


def shortlist_ranks(index: SearchIndex, queries: np.ndarray, exact_ids: np.ndarray, longest: int) -> np.ndarray:
    """For each query and each of its exact top-k documents (``exact_ids``, ``(q, k)``, -1 for
    none), its 1-based position in ``index``'s own ranking of its ``longest`` best candidates
    (``search(…, shortlist=None)``: the shortlist index unreranked); ``longest + 1`` when it is not
    among them, 0 where ``exact_ids`` has none."""
    k = exact_ids.shape[1]
    found = index.search(queries, max(longest, k), shortlist=None).ids
    ranks = np.full(exact_ids.shape, longest + 1, dtype=np.int64)
    for i in range(len(exact_ids)):
        hit = exact_ids[i][:, None] == found[i][None, :]
        where = hit.any(axis=1)
        ranks[i, where] = hit[where].argmax(axis=1) + 1
    ranks[exact_ids < 0] = 0
    return ranks


def recall_at(ranks: np.ndarray, shortlist: int) -> float:
    """Share of the exact top-k documents a shortlist of ``shortlist`` holds."""
    valid = ranks[ranks > 0]
    return float((valid <= shortlist).mean()) if valid.size else 0.0


def needed(ranks: np.ndarray, recall: float, longest: int, k: int) -> int | None:
    """The shortest shortlist (at least ``k``) holding ``recall`` of the exact top-k documents;
    ``None`` when even ``longest`` holds less."""
    valid = np.sort(ranks[ranks > 0])
    if not valid.size:
        return None
    count = max(1, math.ceil(recall * valid.size - 1e-9))
    size = int(valid[count - 1])
    return None if size > longest else max(k, size)


@dataclass(frozen=True)
class Growth:
    """One funnel setting (a shortlist of ``shortlist`` at one width) at growing corpus sizes."""

    shortlist: int
    sizes: list[int]
    """Corpus sizes measured, the validation corpus first."""
    recall: list[float]
    """Share of the exact top k that a shortlist of ``shortlist`` holds, at each size."""
    needed: list[int | None]
    """The shortlist that holds ``recall[0]`` (what it held on the validation corpus) at each
    size; ``None`` beyond ``longest``."""
    longest: int
    """The longest shortlist searched to find the ranks."""

    def fit(self) -> tuple[float, float] | None:
        """``(log a, b)`` of ``needed ≈ a · size^b``, least squares over the sizes where it was
        found (two at least, of two sizes), else ``None``."""
        points = [(math.log(n), math.log(s)) for n, s in zip(self.sizes, self.needed) if s]
        if len({x for x, _ in points}) < 2:
            return None
        xs, ys = np.array([x for x, _ in points]), np.array([y for _, y in points])
        b, a = np.polyfit(xs, ys, 1)
        return float(a), float(b)

    @property
    def exponent(self) -> float | None:
        fitted = self.fit()
        return None if fitted is None else round(fitted[1], 3)

    def at(self, size: int) -> int:
        """The shortlist that keeps ``recall[0]`` at ``size`` documents: fitted (:meth:`fit`), or
        in proportion to the corpus from the first size when no fit exists; at most ``size``. An
        estimate: where the exact top k never left the shortlist (the full width) it stays flat."""
        fitted = self.fit()
        if fitted is None:
            estimate = self.shortlist * size / self.sizes[0]
        else:
            estimate = math.exp(fitted[0] + fitted[1] * math.log(size))
        return int(min(size, max(1, math.ceil(round(estimate, 6)))))

    def to_json(self) -> dict[str, Any]:
        return {"shortlist": self.shortlist, "sizes": self.sizes, "recall": [round(r, 4) for r in self.recall],
                "needed": self.needed, "longest": self.longest}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Growth:
        return cls(int(data["shortlist"]), [int(n) for n in data["sizes"]], [float(r) for r in data["recall"]],
                   [None if s is None else int(s) for s in data["needed"]], int(data["longest"]))


def ladder(start: int, asked: list[int], available: int) -> list[int]:
    """The corpus sizes to measure: the validation corpus's ``start``, each asked size above it
    that the ``available`` documents reach, and ``available`` itself when a larger size was asked
    (as far as the data goes)."""
    sizes = [start] + [n for n in sorted(set(asked)) if start < n <= available]
    if any(n > available for n in asked) and available > sizes[-1]:
        sizes.append(available)
    return sizes
