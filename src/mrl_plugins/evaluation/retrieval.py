"""Encode once, score many dimensions: MRR@k, Recall@k and nDCG@k per Matryoshka dimension.

Queries and corpus are encoded a single time at full dimension. Each dimension then costs one
slice, one re-normalisation and a chunked similarity search, so evaluating 4 or 8 dimensions
costs little more than evaluating one (sentence-transformers' InformationRetrievalEvaluator
with ``truncate_dim`` re-encodes everything per dimension; see benchmarks/).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.types import IRSet
from .encode import encode_ir_set, normalise
from .metrics import Metric, Metrics

if TYPE_CHECKING:
    import torch


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int, *, corpus_chunk: int = 50_000,
          query_chunk: int = 1024) -> np.ndarray:
    """Indices of the ``k`` highest dot products per query, best first, in bounded memory."""
    import torch

    k = min(k, corpus.shape[0])
    c_all = torch.from_numpy(np.ascontiguousarray(corpus))
    result = np.empty((queries.shape[0], k), dtype=np.int64)
    for qs in range(0, queries.shape[0], query_chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[qs : qs + query_chunk]))
        best_scores: torch.Tensor | None = None
        best_idx: torch.Tensor | None = None
        for cs in range(0, corpus.shape[0], corpus_chunk):
            scores = q @ c_all[cs : cs + corpus_chunk].T
            s, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            i = i + cs
            if best_scores is None or best_idx is None:
                best_scores, best_idx = s, i
            else:
                s = torch.cat([best_scores, s], dim=1)
                i = torch.cat([best_idx, i], dim=1)
                best_scores, order = torch.topk(s, k, dim=1)
                best_idx = torch.gather(i, 1, order)
        assert best_idx is not None  # the corpus is not empty
        result[qs : qs + q.shape[0]] = best_idx.numpy()
    return result


TIE = 1e-5
"""Full-width cosines this close count as equal (float32 sums in another order differ by ~1e-7)."""


def overlap_at_k(ranked: np.ndarray, exact: np.ndarray, k: int, *, queries: np.ndarray | None = None,
                 corpus: np.ndarray | None = None) -> float:
    """The mean over queries of :func:`overlap_per_query`."""
    return float(np.mean(overlap_per_query(ranked, exact, k, queries=queries, corpus=corpus)))


def overlap_per_query(ranked: np.ndarray, exact: np.ndarray, k: int, *, queries: np.ndarray | None = None,
                      corpus: np.ndarray | None = None) -> np.ndarray:
    """Per query, the share of the exact top ``k`` that ``ranked`` returns in its top ``k`` (recall@k
    against exact search; -1, an empty slot, is never found).

    Given the full-width unit ``queries`` and ``corpus`` that ``exact`` was searched with, **up to
    ties**: a returned document counts when its full-width cosine is at least the exact k-th's
    (within :data:`TIE`), as exact search's own ties do. By id alone, a corpus with repeated texts
    scores a setting by how it breaks ties among the copies: 7% of 30,550 Debian paragraphs repeat
    another's vector, and a float 192-dim funnel with a shortlist of 1,000 found 0.93 of the exact
    ids there and 1.00 of the exact top 10 up to ties (issue #37). Without the vectors (or when the
    corpus has fewer than ``k`` documents), by id."""
    found = np.asarray(ranked)[:, :k]
    exact = np.asarray(exact)[:, :k]
    if queries is None or corpus is None or exact.shape[1] < k or (exact < 0).any():
        return np.array([len(set(a.tolist()) & set(e.tolist()) - {-1}) / k for a, e in zip(found, exact)])
    q = np.asarray(queries, dtype=np.float32)
    kth = np.einsum("qd,qd->q", q, corpus[exact[:, -1]])
    valid = found >= 0
    scores = np.einsum("qd,qnd->qn", q, corpus[np.where(valid, found, 0)])
    return ((scores >= kth[:, None] - TIE) & valid).sum(axis=1) / k


class Scores(dict):
    """Metrics per dimension, ``{dim: {"mrr@10": …}}``, that also keep every query's own scores
    (``per_query[dim][metric]``, one value per evaluation query, in order), from which a run
    computes confidence intervals and paired tests. A plain dict serves wherever this does."""

    def __init__(self, *args: Any, per_query: dict[int, dict[str, np.ndarray]] | None = None):
        super().__init__(*args)
        self.per_query = per_query or {}


def per_query_metrics(ranked: np.ndarray, relevant: Sequence[set[int]], k: int) -> dict[str, np.ndarray]:
    """Each query's reciprocal rank, recall (share of its relevant documents in its top k) and nDCG, at k."""
    n = len(relevant)
    mrr, recall, ndcg = np.zeros(n), np.zeros(n), np.zeros(n)
    for q, (row, rel) in enumerate(zip(ranked, relevant)):
        hits = [int(doc) in rel for doc in row[:k]]
        first = next((i for i, h in enumerate(hits) if h), None)
        mrr[q] = 0.0 if first is None else 1.0 / (first + 1)
        recall[q] = sum(hits) / len(rel)
        dcg = sum(1.0 / math.log2(i + 2) for i, h in enumerate(hits) if h)
        idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), k)))
        ndcg[q] = dcg / idcg
    return {Metric.MRR.key(k): mrr, Metric.RECALL.key(k): recall, Metric.NDCG.key(k): ndcg}


def ranking_metrics(ranked: np.ndarray, relevant: Sequence[set[int]], k: int) -> Metrics:
    """Mean MRR@k, Recall@k and nDCG@k over the queries."""
    return {key: float(values.mean()) for key, values in per_query_metrics(ranked, relevant, k).items()}


def scores_of(ranked: dict[int, np.ndarray], relevant: Sequence[set[int]], k: int) -> Scores:
    """Mean metrics per dimension, keeping each query's scores."""
    per_query = {d: per_query_metrics(ids, relevant, k) for d, ids in ranked.items()}
    return Scores({d: {m: float(v.mean()) for m, v in pq.items()} for d, pq in per_query.items()}, per_query=per_query)


def score_dims(
    queries: np.ndarray,
    corpus: np.ndarray,
    relevant: Sequence[set[int]],
    dims: Sequence[int],
    *,
    k: int = 10,
    corpus_chunk: int = 50_000,
) -> Scores:
    """Metrics at each dimension: slice the first ``d`` columns, re-normalise, rank by cosine."""
    full = queries.shape[1]
    ranked = {}
    for d in dims:
        if d > full:
            raise ValueError(f"dimension {d} is larger than the embeddings' {full}")
        ranked[d] = top_k(normalise(queries[:, :d]), normalise(corpus[:, :d]), k, corpus_chunk=corpus_chunk)
    return scores_of(ranked, relevant, k)


def evaluate(model: Any, ir: IRSet, dims: Sequence[int], *, k: int = 10, batch_size: int = 64) -> dict[int, Metrics]:
    """Encode once and score every dimension: the one call most users need."""
    enc = encode_ir_set(model, ir, batch_size=batch_size)
    return score_dims(enc.queries, enc.corpus, enc.relevant, dims, k=k)


