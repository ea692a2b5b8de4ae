"""The adaptor's k-fold cross-validation over the training pairs (its ``cv_folds``; :mod:`.adaptor`
says when it helps and when it does not)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.split import pair_folds
from ..data.types import normalise_text
from ..evaluation.metrics import Metric
from ..evaluation.retrieval import score_dims
from ..evidence.stats import paired_p_value
from .adaptor_fit import AdaptorNet, AdaptorParams, best_epoch, checkpoints, fit_adaptor


@dataclass(frozen=True)
class CrossValidation:
    """What k-fold cross-validation over the training pairs chose, and the per-query evidence
    behind the per-width gate (every fold's queries, in fold order)."""

    folds: int
    epoch: int
    adapted: dict[int, np.ndarray]
    """Per width: each query's MRR@k under the net of its fold's fit, stopped at :attr:`epoch`."""
    plain: dict[int, np.ndarray]
    """Per width: each query's MRR@k un-adapted (epoch 0, the identity)."""

    @property
    def queries(self) -> int:
        return len(next(iter(self.plain.values())))

    def facts(self) -> dict[str, Any]:
        """For results.json (``facts["cv"]``): the gate reads ``delta`` and ``p`` per width."""
        dims = sorted(self.plain, reverse=True)
        return {"folds": self.folds, "queries": self.queries,
                "adapted": {str(d): round(float(self.adapted[d].mean()), 4) for d in dims},
                "plain": {str(d): round(float(self.plain[d].mean()), 4) for d in dims},
                "delta": {str(d): round(float((self.adapted[d] - self.plain[d]).mean()), 4) for d in dims},
                "p": {str(d): round(paired_p_value(self.adapted[d], self.plain[d]), 4) for d in dims}}


def fold_retrieval(pairs: Sequence[tuple[str, str]], rows: Sequence[int]
                   ) -> tuple[list[str], list[str], list[set[int]]]:
    """A fold's retrieval set: its distinct queries, its distinct documents (one per normalised
    text) and each query's relevant documents among them."""
    queries: dict[str, str] = {}
    documents: dict[str, int] = {}
    doc_texts: list[str] = []
    relevant: dict[str, set[int]] = {}
    for i in rows:
        query, document = pairs[i]
        q, d = normalise_text(query), normalise_text(document)
        queries.setdefault(q, query)
        if d not in documents:
            documents[d] = len(doc_texts)
            doc_texts.append(document)
        relevant.setdefault(q, set()).add(documents[d])
    return list(queries.values()), doc_texts, [relevant[q] for q in queries]


def cross_validate(known: Mapping[str, np.ndarray], fit: Sequence[str], pairs: Sequence[tuple[str, str]],
                   dims: list[int], p: AdaptorParams, k: int = 10) -> CrossValidation:
    """k-fold cross-validation of the adaptor over ``pairs`` (see the module's docstring):
    ``known`` maps every text of ``fit`` and ``pairs`` to its (full-width) embedding. The chosen
    epoch is the one with the best mean MRR@k over every fold's queries and the run's widths;
    epoch 0 (no adaptor) included, the earliest of equals."""
    key = Metric.MRR.key(k)
    epochs = checkpoints(p)
    scored: dict[int, dict[int, list[np.ndarray]]] = {e: {d: [] for d in dims} for e in epochs}
    folds = [rows for rows in pair_folds(pairs, p.cv_folds, p.seed) if rows]
    for rows in folds:
        held = {normalise_text(t) for i in rows for t in pairs[i]}
        inside = set(rows)
        fold_fit = [t for t in fit if normalise_text(t) not in held]
        fold_pairs = [pair for i, pair in enumerate(pairs) if i not in inside]
        queries, documents, relevant = fold_retrieval(pairs, rows)
        q_emb = np.stack([known[t] for t in queries])
        c_emb = np.stack([known[t] for t in documents])
        encoded = None
        if fold_pairs and p.ranking_weight > 0:
            encoded = (np.stack([known[q] for q, _ in fold_pairs]), np.stack([known[d] for _, d in fold_pairs]))
        at = iter(epochs)

        def judge(net: AdaptorNet, at: Any = at, q_emb: np.ndarray = q_emb, c_emb: np.ndarray = c_emb,
                  relevant: list[set[int]] = relevant) -> float:
            found = score_dims(net.apply(q_emb), net.apply(c_emb), relevant, dims, k=k)
            for d, by_width in scored[next(at)].items():
                by_width.append(found.per_query[d][key])
            return float(np.mean([found[d][key] for d in dims]))

        fit_adaptor(np.stack([known[t] for t in fold_fit]), encoded, dims, p, judge)
    joined = {e: {d: np.concatenate(parts) for d, parts in by_width.items()} for e, by_width in scored.items()}
    means = {e: float(np.mean([v.mean() for v in by_width.values()])) for e, by_width in joined.items()}
    best = best_epoch(means)
    return CrossValidation(len(folds), best, joined[best], joined[0])
