"""The names and types of what a run measures: retrieval metrics at a cut-off k (computed per
dimension after re-normalising), the overlap with exact search, the encoding speed ratio, and
what a search configuration costs. Everything that scores, records or reads a number spells its
name here (results.json, comparisons, the report).
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel


class Metric(str, Enum):
    """A retrieval metric at cut-off k, computed per dimension after re-normalising."""

    MRR = "mrr"
    RECALL = "recall"
    NDCG = "ndcg"

    @property
    def title(self) -> str:  # type: ignore[override]  # shadows str.title on purpose: the metric's printed name
        return {"mrr": "MRR", "recall": "Recall", "ndcg": "nDCG"}[self.value]

    def key(self, k: int) -> str:
        """The name in ``results.json`` and in comparisons' metric dicts, e.g. ``mrr@10``."""
        return f"{self.value}@{k}"


OVERLAP = "overlap"
"""Search configurations also report ``overlap@k``: the share of the exact full-dimension top k
they return (not a relevance metric, so not in :data:`METRICS`)."""


ENCODE_SPEEDUP = "encode_speedup"
"""A column may also report how fast it encodes on the CPU: documents per second as a ratio to the
torch float32 model in the same run (the ``export`` comparison does); the report prints it."""


def overlap_key(k: int) -> str:
    return f"{OVERLAP}@{k}"


METRICS: tuple[Metric, ...] = tuple(Metric)


Metrics = dict[str, float]
"""One dimension's scores, e.g. ``{"mrr@10": 0.81, "recall@10": 0.93, "ndcg@10": 0.84}``."""


class SearchCost(BaseModel):
    """What searching one configuration costs, per vector and per query.

    Memory is what the shortlist index holds in RAM; the full-dimension vectors a funnel reranks
    with are read for the shortlist only and may stay on disk (memory-mapped), so they are
    counted apart. Times are medians measured in the same run, interleaved with exact
    full-dimension float32 search, whose time is the denominator of the ratios.
    """

    index_bytes: float
    """Bytes per vector held in memory by the shortlist index."""
    rerank_bytes: float = 0.0
    """Bytes per vector of the vectors read to rerank (0 without reranking)."""
    ms_single: float
    """Median milliseconds per query, one query at a time."""
    ms_batch: float
    """Milliseconds per query when all queries are searched in one batch."""
    ms_single_p95: float | None = None
    """95th percentile milliseconds per query, one query at a time (``None`` in results written
    before it was recorded)."""
    ratio_single: float
    """``ms_single`` / the same for exact full-dimension float32 search (lower is faster)."""
    ratio_batch: float
