"""A third-party plugin as the tests install it: an index backend the core has never heard of,
and two comparisons that compute their own scores (one without per-query scores, one with)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from mrl_plugins.components import Column, Comparison, IndexBackend, Params, ShortlistIndex
from mrl_plugins.evaluation.encode import index_ir_set
from mrl_plugins.evaluation.retrieval import per_query_metrics
from mrl_plugins.hookspecs import hookimpl


class NumpyIndex(ShortlistIndex):
    def __init__(self, dim: int, bits: int):
        self.dim, self.bits, self.rows = dim, bits, np.zeros((0, dim), np.float32)

    def add(self, vectors: np.ndarray) -> None:
        if self.bits == 8:  # coarse codes, decoded: what an int8 store keeps of a unit vector
            vectors = np.round(vectors * 127) / 127
        self.rows = np.vstack([self.rows, vectors.astype(np.float32)])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self.rows.T
        ids = np.argsort(-scores, axis=1)[:, :k]
        return np.take_along_axis(scores, ids, 1), ids

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, np.asarray([self.bits], dtype=np.float32))
            np.save(fh, self.rows)

    def bytes_per_vector(self) -> float:
        return self.dim * (1 if self.bits == 8 else 4)

    def __len__(self) -> int:
        return len(self.rows)


class BruteParams(Params):
    bits: Literal[8, 32] = 32


class Brute(IndexBackend):
    """Brute-force numpy search (a third party's engine)."""

    name = "brute"
    Params = BruteParams
    quantized = {"int8": ("brute", {"bits": 8})}

    def create(self, dim: int) -> ShortlistIndex:
        return NumpyIndex(dim, self.params.bits)

    def load(self, path: Path, dim: int) -> ShortlistIndex:
        with open(path, "rb") as fh:
            bits, rows = int(np.load(fh)[0]), np.load(fh)
        index = NumpyIndex(dim, bits)
        index.rows = rows
        return index


class OwnParams(Params):
    model: str = "mrl"
    per_query: bool = False
    note: str = "written by the plugin"


def own_ranking(ctx: Any, model: str) -> dict[int, np.ndarray]:
    queries, corpus = ctx.embeddings(model)
    ranked = {}
    for d in ctx.dims:
        q = queries[:, :d] / np.linalg.norm(queries[:, :d], axis=1, keepdims=True)
        c = corpus[:, :d] / np.linalg.norm(corpus[:, :d], axis=1, keepdims=True)
        ranked[d] = np.argsort(-(q @ c.T), axis=1)[:, : ctx.k]
    return ranked


class OwnScores(Comparison):
    """Ranks by itself and computes its own metrics: plain means, or with each query's scores."""

    name = "own-scores"
    Params = OwnParams
    measured_with = frozenset({"note"})

    def run(self, ctx: Any) -> list[Column]:
        ranked = own_ranking(ctx, self.params.model)
        relevant = index_ir_set(ctx.eval_set)[2]
        per_query = {d: per_query_metrics(ranked[d], relevant, ctx.k) for d in ctx.dims}
        means = {d: {m: float(v.mean()) for m, v in pq.items()} for d, pq in per_query.items()}  # a plain dict
        (ctx.output_dir() / "note.txt").write_text(self.params.note)
        return [Column("", means, per_query=per_query if self.params.per_query else None)]


@hookimpl
def register_index_backends(register):
    register(Brute)


@hookimpl
def register_comparisons(register):
    register(OwnScores)
