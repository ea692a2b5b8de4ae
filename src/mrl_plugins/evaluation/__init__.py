"""Encode once, score every width.

``metrics``    the names and types of what is measured (MRR@k, Recall@k, nDCG@k, overlap, costs)
``encode``     full-width embeddings of texts and IR sets, encoded once; the re-normalisation
``retrieval``  ranking by cosine at each width and the retrieval metrics per query

Queries and corpus are encoded a single time at full dimension; each dimension then costs one
slice, one re-normalisation and a chunked similarity search (sentence-transformers'
InformationRetrievalEvaluator with ``truncate_dim`` re-encodes everything per dimension; see
benchmarks/). ``from mrl_plugins.evaluation import evaluate`` is the one call most users need.
Nothing here reads or writes a run folder (:mod:`mrl_plugins.evidence` does).
"""

from __future__ import annotations

from typing import Any

_PUBLIC = {
    "encode": ("EncodedIRSet", "encode_ir_set", "encode_texts", "index_ir_set", "normalise"),
    "retrieval": ("Scores", "evaluate", "overlap_at_k", "per_query_metrics", "ranking_metrics", "score_dims",
                  "scores_of", "top_k"),
    "metrics": ("METRICS", "Metric", "Metrics", "SearchCost", "overlap_key"),
}
__all__ = sorted(name for names in _PUBLIC.values() for name in names)


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: the contract imports :mod:`.metrics` alone, and
    must not pay for numpy and the scorers at ``mrl-run plugins``."""
    if name in _PUBLIC["encode"]:
        from . import encode as module
    elif name in _PUBLIC["retrieval"]:
        from . import retrieval as module  # type: ignore[no-redef]
    elif name in _PUBLIC["metrics"]:
        from . import metrics as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module 'mrl_plugins.evaluation' has no attribute {name!r}")
    return getattr(module, name)
