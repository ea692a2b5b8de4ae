"""Encoding once: full-width float32 embeddings of texts and of an IR set, and the one
re-normalisation every truncated prefix goes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.types import IRSet


@dataclass
class EncodedIRSet:
    """Full-dimension embeddings of an IR set, rows aligned with ``query_ids``/``corpus_ids``."""

    queries: np.ndarray
    corpus: np.ndarray
    query_ids: list[str]
    corpus_ids: list[str]
    relevant: list[set[int]]
    """Per query row, the corpus row indices that are relevant."""


def index_ir_set(ir: IRSet) -> tuple[list[str], list[str], list[set[int]]]:
    query_ids = list(ir.queries)
    corpus_ids = list(ir.corpus)
    row = {cid: i for i, cid in enumerate(corpus_ids)}
    relevant = [{row[d] for d in ir.relevant[q]} for q in query_ids]
    return query_ids, corpus_ids, relevant


def encode_texts(model: Any, texts: list[str], *, role: str, batch_size: int = 64,
                 progress: bool = False, pool: Any = None) -> np.ndarray:
    """Full-dimension float32 embeddings; ``role`` picks the model's query or document prompt;
    ``pool`` (sentence-transformers' multi-process pool) spreads the work over its processes."""
    fn = getattr(model, f"encode_{role}", None) or model.encode
    kwargs: dict[str, Any] = dict(batch_size=batch_size, convert_to_numpy=True, show_progress_bar=progress)
    if pool is not None:
        kwargs["pool"] = pool
    ctx = getattr(model, "truncate_embeddings", None)
    if ctx is not None:  # a saved model may carry a default truncate_dim: evaluate at full width
        with ctx(None):
            out = fn(texts, **kwargs)
    else:
        out = fn(texts, **kwargs)
    return np.asarray(out, dtype=np.float32)


def encode_ir_set(model: Any, ir: IRSet, *, batch_size: int = 64, progress: bool = False) -> EncodedIRSet:
    """Encode every query and every corpus text exactly once, at full dimension."""
    query_ids, corpus_ids, relevant = index_ir_set(ir)
    queries = encode_texts(model, [ir.queries[q] for q in query_ids], role="query", batch_size=batch_size,
                           progress=progress)
    corpus = encode_texts(model, [ir.corpus[c] for c in corpus_ids], role="document", batch_size=batch_size,
                          progress=progress)
    return EncodedIRSet(queries, corpus, query_ids, corpus_ids, relevant)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (how truncated prefixes are compared everywhere:
    evaluation, search indexes, the adaptor, the warm start)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
