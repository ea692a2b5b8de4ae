"""Encode once, score many dimensions: MRR@k, Recall@k and nDCG@k per Matryoshka dimension.

Queries and corpus are encoded a single time at full dimension. Each dimension then costs one
slice, one re-normalisation and a chunked similarity search, so evaluating 4 or 8 dimensions
costs little more than evaluating one (sentence-transformers' InformationRetrievalEvaluator
with ``truncate_dim`` re-encodes everything per dimension; see benchmarks/).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .components import Metrics
from .data import IRSet
from .evidence.results import Metric
from .evidence.rundir import EVALUATION, RunDir

if TYPE_CHECKING:
    import torch


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


def overlap_at_k(ranked: np.ndarray, exact: np.ndarray, k: int) -> float:
    """The mean share of the exact top ``k`` that ``ranked`` returns in its top ``k``."""
    return float(np.mean([len(set(a[:k].tolist()) & set(e[:k].tolist())) / k for a, e in zip(ranked, exact)]))


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


# -- a run's evaluation, saved with it ------------------------------------------------------------
EVALUATION_DIR = EVALUATION
"""Where a run keeps its evaluation set (``eval_set.json.gz``) and every model's evaluation
embeddings (``<key>.queries.npy``, ``<key>.corpus.npy``, float32, rows in the set's order): enough
to re-score a finished run, or to search its corpus in ``mrl-run demo``, without encoding again."""


def save_evaluation(folder: Path, ir: IRSet, encoded: dict[str, EncodedIRSet]) -> Path:
    import gzip
    import json

    out = RunDir(folder).evaluation
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(encoded.values()))
    payload = {
        "queries": [[q, ir.queries[q]] for q in first.query_ids],
        "corpus": [[d, ir.corpus[d]] for d in first.corpus_ids],
        "relevant": {q: sorted(ir.relevant[q]) for q in first.query_ids},
    }
    with gzip.open(out / "eval_set.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(payload, fh, ensure_ascii=False)
    for key, enc in encoded.items():
        np.save(out / f"{key}.queries.npy", enc.queries)
        np.save(out / f"{key}.corpus.npy", enc.corpus)
    return out


@dataclass
class SavedEvaluation:
    """A run's saved evaluation set, and the embeddings of each of its models."""

    ir: IRSet
    query_ids: list[str]
    corpus_ids: list[str]
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]]
    """model key → full-dimension (queries, corpus), rows in ``query_ids`` / ``corpus_ids`` order."""

    @property
    def relevant_rows(self) -> list[set[int]]:
        row = {d: i for i, d in enumerate(self.corpus_ids)}
        return [{row[d] for d in self.ir.relevant[q]} for q in self.query_ids]


def load_evaluation(run_dir: Path) -> SavedEvaluation:
    import gzip
    import json

    from .errors import UserError

    folder = RunDir(run_dir).evaluation
    path = folder / "eval_set.json.gz"
    if not path.is_file():
        raise UserError(
            f"{run_dir}: no saved evaluation set ({EVALUATION_DIR}/eval_set.json.gz); runs of mrl-plugins 0.2 and "
            "later save one. Run the recipe again with this version."
        )
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            payload = json.load(fh)
        query_ids = [q for q, _ in payload["queries"]]
        corpus_ids = [d for d, _ in payload["corpus"]]
        relevant = {q: set(d) for q, d in payload["relevant"].items()}
        ir = IRSet(dict(payload["queries"]), dict(payload["corpus"]), relevant)
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); {DAMAGED}") from None
    if not query_ids or not corpus_ids or set(ir.relevant) - set(query_ids):
        raise UserError(f"{path}: its queries, documents and relevance lists disagree; {DAMAGED}")
    embeddings = {}
    for file in sorted(folder.glob("*.queries.npy")):
        key = file.name[: -len(".queries.npy")]
        embeddings[key] = (_saved_array(file, len(query_ids)),
                           _saved_array(folder / f"{key}.corpus.npy", len(corpus_ids)))
        if embeddings[key][0].shape[1] != embeddings[key][1].shape[1]:
            raise UserError(f"{folder}: the saved embeddings of '{key}' disagree ({embeddings[key][0].shape[1]} dims "
                            f"for queries, {embeddings[key][1].shape[1]} for documents); {DAMAGED}")
    return SavedEvaluation(ir, query_ids, corpus_ids, embeddings)


DAMAGED = ("the run's files are damaged. Run the recipe again, or search an index instead: "
           "'mrl-run index RUN CORPUS -o INDEX' then 'mrl-run demo RUN --index INDEX'.")


def _saved_array(path: Path, rows: int) -> np.ndarray:
    """One saved embedding matrix: there, whole, ``rows`` finite rows of one width."""
    from .errors import UserError

    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: missing (its partner file is there); {DAMAGED}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); {DAMAGED}") from None
    if array.ndim != 2 or array.shape[0] != rows or array.dtype.kind != "f":
        raise UserError(f"{path}: holds {array.dtype} {array.shape}, expected {rows} rows of floats (one per saved "
                        f"text); {DAMAGED}")
    if not np.isfinite(array).all():
        raise UserError(f"{path}: holds values that are not finite; {DAMAGED}")
    return array


def save_per_query(folder: Path, per_query: dict[str, dict[int, dict[str, np.ndarray]]]) -> None:
    """Every column's per-query scores (``evaluation/per_query.npz``), so that any two columns
    can be compared query by query after the run (``mrl_plugins.stats.paired_p_value``)."""
    import json

    out = RunDir(folder).evaluation
    out.mkdir(parents=True, exist_ok=True)
    index: list[list[Any]] = []
    arrays: dict[str, Any] = {}
    for key, by_dim in per_query.items():
        for dim, by_metric in by_dim.items():
            for metric, values in by_metric.items():
                arrays[f"a{len(index)}"] = np.asarray(values, dtype=np.float32)
                index.append([key, int(dim), metric])
    np.savez_compressed(out / "per_query.npz", **arrays)
    (out / "per_query.json").write_text(json.dumps(index, ensure_ascii=False))


def load_per_query(run_dir: Path) -> dict[str, dict[int, dict[str, np.ndarray]]]:
    import json

    folder = RunDir(run_dir).evaluation
    index = json.loads((folder / "per_query.json").read_text())
    arrays = np.load(folder / "per_query.npz")
    out: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    for i, (key, dim, metric) in enumerate(index):
        out.setdefault(key, {}).setdefault(dim, {})[metric] = arrays[f"a{i}"]
    return out
