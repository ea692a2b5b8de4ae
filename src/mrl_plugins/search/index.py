"""A funnel index: shortlist with the first dimensions, rerank with the full vectors.

``FunnelIndex`` keeps two things per document: its first ``shortlist_dim`` dimensions,
re-normalised, in a shortlist index of any registered backend (``flat``, ``hnsw``, ``ivf``,
``int8``, ``binary`` built in; a plugin can add another engine), and its full vector (float32,
float16 or int8 codes) for reranking. ``search(queries, k, shortlist=N)`` takes the N best candidates from the
shortlist index and reranks them by cosine at ``rerank_dim`` (the full dimension by default);
``shortlist=None`` returns the shortlist index's own top k, unreranked. A funnel whose shortlist
is the whole corpus is exact full-dimension search.

The rerank runs in FAISS's C++ (``knn_inner_products_by_idx``: the same inner products and heap
that ``IndexRefineFlat`` runs over its refine index, here over the rerank store itself), so that a
store memory-mapped from disk is reranked in place: FAISS's ``IndexRefine`` would need the full
vectors in RAM as an index of their own, and cannot refine a binary shortlist at all. Vectors are
stored unit-length at full width, so the C++ inner product is the cosine. An ``int8`` store
(sentence-transformers' calibrated scalar quantiser, ranges from the first vectors added, a
quarter of float32's bytes) decodes each query's candidates and scores them by cosine in numpy,
query by query (see ``FunnelIndex._rerank_int8``). A ``float16`` store, or a rerank at fewer
dimensions than the full width, is
reranked in numpy: cosine at ``rerank_dim`` of the decoded vectors.

A saved index is a folder (:mod:`.folder`: its manifest, the checks of its files, the text store).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..components import IndexBackend, SearchHits, SearchIndex, ShortlistIndex
from ..embed.stamp import ModelStamp
from ..errors import UserError
from ..evaluation.encode import normalise
from .folder import FORMAT, Manifest, NpyAppender, StoreDtype, read_manifest


@dataclass
class FunnelIndex(SearchIndex):
    """Shortlist at ``shortlist_dim`` in a backend's index; rerank at ``rerank_dim``."""

    full_dim: int
    shortlist_dim: int
    backend: IndexBackend
    rerank_dim: int | None = None
    store_dtype: StoreDtype = "float32"
    model: ModelStamp | None = None
    shortlist: ShortlistIndex = field(init=False)
    normalised: bool = field(default=True, init=False)
    """Whether the stored vectors are unit-length at full width (every index built by mrl-plugins
    0.4 on; older ones stored what the model returned and rerank in numpy)."""
    ranges: np.ndarray | None = field(default=None, init=False, repr=False)
    """An ``int8`` store's calibration: per dimension, the minimum and maximum ``(2, full_dim)``."""
    _affine: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    _chunks: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _vectors: np.ndarray | None = field(default=None, init=False, repr=False)
    _spool: NpyAppender | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rerank_dim = self.rerank_dim or self.full_dim
        if not 0 < self.shortlist_dim <= self.full_dim or not 0 < self.rerank_dim <= self.full_dim:
            raise UserError(
                f"shortlist dimension {self.shortlist_dim} and rerank dimension {self.rerank_dim} must be between 1 "
                f"and the model's dimension {self.full_dim}."
            )
        self.shortlist = self.backend.create(self.shortlist_dim)

    # -- building ------------------------------------------------------------------------------
    def spool(self, folder: Path) -> None:
        """Write the full vectors to ``folder/vectors.npy`` as they are added, instead of keeping
        them in memory (called before the first :meth:`add`; :meth:`save` into the same folder
        then only finishes the file). Memory then holds the shortlist index alone."""
        if self.count:
            raise RuntimeError("spool() before the first add()")
        self._spool = NpyAppender(Path(folder) / "vectors.npy", self.store_dtype, self.full_dim)

    def add(self, embeddings: np.ndarray, texts: list[str] | None = None) -> None:
        """Append full-dimension embeddings (ids continue from :attr:`count`); the texts are kept
        by the index folder's text store, not here."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.full_dim:
            raise UserError(f"expected embeddings of shape (n, {self.full_dim}), got {embeddings.shape}.")
        prefixes = normalise(embeddings[:, : self.shortlist_dim])
        if len(self.shortlist) == 0:
            self.shortlist.train(prefixes)
        self.shortlist.add(prefixes)
        unit = normalise(embeddings)
        if self.store_dtype == "int8":
            if self.ranges is None:  # calibrated on the first vectors added, as the int8 shortlist backend is
                self.ranges = np.stack([unit.min(axis=0), unit.max(axis=0)]).astype(np.float32)
            stored = quantize_int8(unit, self.ranges)
        else:
            stored = unit.astype(self.store_dtype)
        if self._spool is not None:
            self._spool.append(stored)
        else:
            self._chunks.append(stored)
        self._vectors = None

    @classmethod
    def over(cls, unit: np.ndarray, backend: IndexBackend, shortlist_dim: int, *, store_dtype: StoreDtype = "float32",
             model: ModelStamp | None = None, block: int = 65536) -> FunnelIndex:
        """A funnel over vectors already unit-length at full width (another index's float32
        store, memory-mapped): the shortlist index built block by block, and the rerank store
        shared with ``unit`` when it is float32 (no copy), else encoded from it. What
        ``mrl-run index``'s tuning builds each candidate setting with."""
        index = cls(unit.shape[1], shortlist_dim, backend, store_dtype=store_dtype, model=model)
        stored = []
        for start in range(0, len(unit), block):
            part = np.asarray(unit[start : start + block], dtype=np.float32)
            prefixes = normalise(part[:, :shortlist_dim])
            if start == 0:
                index.shortlist.train(prefixes)
            index.shortlist.add(prefixes)
            if store_dtype == "int8":
                if index.ranges is None:
                    index.ranges = np.stack([part.min(axis=0), part.max(axis=0)]).astype(np.float32)
                stored.append(quantize_int8(part, index.ranges))
            elif store_dtype != "float32":
                stored.append(part.astype(store_dtype))
        index._vectors = unit if store_dtype == "float32" else np.concatenate(stored)
        return index

    @property
    def vectors(self) -> np.ndarray:
        """The stored full-dimension vectors, ``(count, full_dim)``, in the store's dtype (int8
        codes for an ``int8`` store: :meth:`decoded` gives float32)."""
        if self._spool is not None:
            return self._spool.array()
        if self._vectors is None or self._chunks:
            parts = ([self._vectors] if self._vectors is not None else []) + self._chunks
            self._vectors = np.concatenate(parts) if parts else np.zeros((0, self.full_dim), self.store_dtype)
            self._chunks = []
        return self._vectors

    def decoded(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Stored vectors as float32 (int8 codes decoded with the store's ranges)."""
        stored = self.vectors[rows]
        if self.store_dtype == "int8":
            assert self.ranges is not None
            return dequantize_int8(stored, self.ranges)
        return np.asarray(stored, dtype=np.float32)

    @property
    def count(self) -> int:
        return len(self.shortlist)

    # -- searching -----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, shortlist: int | None = None) -> SearchHits:
        """The ``k`` best documents per query: reranked at ``rerank_dim`` from the ``shortlist``
        best candidates of the shortlist index, or that index's own top ``k`` when ``shortlist``
        is ``None``. Scores are cosine similarities at the dimension that ranked them."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.full_dim:
            raise UserError(f"queries have {queries.shape[1]} dimensions; this index expects {self.full_dim}.")
        if shortlist is not None and shortlist < k:
            raise UserError(f"the shortlist ({shortlist}) must be at least k ({k}).")
        n = min(shortlist or k, self.count)
        with one_query_threads(len(queries)):
            # normalised once at full width: the shortlist's query when it is full width too, the
            # rerank's always (one query is searched in ~0.1 ms, and each pass costs several µs)
            unit = normalise(queries)
            prefix = unit if self.shortlist_dim == self.full_dim else normalise(unit[:, : self.shortlist_dim])
            scores, ids = self.shortlist.search(prefix, n)
            if shortlist is None:
                return _pad(SearchHits(ids[:, :k], scores[:, :k]), k)
            return _pad(self._rerank(unit, ids, k), k)

    def _rerank(self, unit: np.ndarray, candidates: np.ndarray, k: int) -> SearchHits:
        """The candidates reranked for the queries ``unit`` (unit length at full width)."""
        if self.rerank_dim == self.full_dim and self.normalised:
            if self.store_dtype == "float32":
                return self._rerank_faiss(unit, candidates, k)
            if self.store_dtype == "int8":
                return self._rerank_int8(unit, candidates, k)
        return self._rerank_numpy(unit, candidates, k)

    def _rerank_faiss(self, q: np.ndarray, candidates: np.ndarray, k: int) -> SearchHits:
        """Inner products with the candidates' stored unit vectors and the top k, in FAISS's C++
        (parallel over queries): no Python per query, the store read in place. Candidates are
        row ids into the store, -1 only at the end of a row."""
        faiss: Any = __import__("faiss")  # untyped: its SWIG module has no stubs

        store = self.vectors
        if not store.flags.c_contiguous:
            store = np.ascontiguousarray(store)
        q = np.ascontiguousarray(q, dtype=np.float32)
        cand = np.ascontiguousarray(candidates, dtype=np.int64)
        n, width = cand.shape
        kk = min(k, width)
        scores, ids = np.empty((n, kk), np.float32), np.empty((n, kk), np.int64)
        faiss.knn_inner_products_by_idx(
            faiss.swig_ptr(q), faiss.swig_ptr(store), faiss.swig_ptr(cand), self.full_dim, n, len(store), width, kk,
            faiss.swig_ptr(scores), faiss.swig_ptr(ids), width,  # the last: the candidates' row stride
        )
        scores[ids < 0] = -np.inf
        return SearchHits(ids, scores)

    def _rerank_int8(self, q: np.ndarray, candidates: np.ndarray, k: int) -> SearchHits:
        """The int8 store, query by query: its candidates' codes decoded (``codes · step + start +
        128 · step``, the store's calibrated ranges), their cosine with the query, the top k by a
        partial sort. One query's candidates (``shortlist × full_dim`` floats) stay in cache. 0.9
        decoded the distinct candidates of a whole batch at once and reranked them in FAISS: that
        wrote blocks of tens of MB several times over and ran 1.6× slower batched than these lines
        written by hand at a shortlist of 500, and one query paid for a deduplication it did not
        need (``benchmarks/bench_index_tuning.py`` compares them)."""
        n, width = candidates.shape
        kk = min(k, width)
        ids, scores = np.full((n, kk), -1, np.int64), np.full((n, kk), -np.inf, np.float32)
        steps, base = self._int8_affine()
        store = self.vectors
        for row in range(n):
            cand = candidates[row]
            cand = cand[cand >= 0]
            if not len(cand):
                continue
            decoded = store[cand].astype(np.float32)
            decoded *= steps
            decoded += base
            norms = np.sqrt(np.einsum("ij,ij->i", decoded, decoded))
            cosine = decoded @ q[row] / np.maximum(norms, 1e-12)
            m = min(kk, len(cand))
            top = np.argpartition(-cosine, m - 1)[:m] if m < len(cand) else np.arange(len(cand))
            top = top[np.argsort(-cosine[top], kind="stable")]
            ids[row, :m], scores[row, :m] = cand[top], cosine[top]
        return SearchHits(ids, scores)

    def _int8_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """The int8 store's decoding ``codes · steps + base``, computed once per calibration."""
        assert self.ranges is not None
        cached = self._affine
        if cached is None or cached[0] is not self.ranges:
            steps = (self.ranges[1] - self.ranges[0]) / 255
            cached = self._affine = (self.ranges, steps, self.ranges[0] + 128 * steps)
        return cached[1], cached[2]

    def _rerank_numpy(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> SearchHits:
        r = self.rerank_dim or self.full_dim
        q = normalise(queries[:, :r])
        out_ids = np.full((len(q), min(k, candidates.shape[1])), -1, dtype=np.int64)
        out_scores = np.full(out_ids.shape, -np.inf, dtype=np.float32)
        step = max(1, (64 << 20) // max(1, candidates.shape[1] * r * 4))  # ~64 MB of candidates at a time
        for start in range(0, len(q), step):
            cand = candidates[start : start + step]
            valid = cand >= 0
            rows = np.where(valid, cand, 0)
            flat = np.unique(rows)  # read each row once (and in order, for a memory-mapped store)
            vecs = normalise(self.decoded(flat)[:, :r])[np.searchsorted(flat, rows)]
            scores = np.einsum("qd,qnd->qn", q[start : start + step], vecs)
            scores[~valid] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")[:, : out_ids.shape[1]]
            found = np.take_along_axis(valid, order, 1)
            out_ids[start : start + step] = np.where(found, np.take_along_axis(cand, order, 1), -1)
            out_scores[start : start + step] = np.take_along_axis(scores, order, 1)
        return SearchHits(out_ids, out_scores)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.discard()

    # -- memory ---------------------------------------------------------------------------------
    def index_bytes(self) -> float:
        """Bytes per vector the shortlist index holds in memory."""
        return self.shortlist.bytes_per_vector()

    def rerank_bytes(self) -> float:
        """Bytes per vector read to rerank (the stored prefix up to ``rerank_dim``)."""
        return float((self.rerank_dim or self.full_dim) * np.dtype(self.store_dtype).itemsize)

    # -- files ----------------------------------------------------------------------------------
    def manifest(self, backend_name: str, backend_params: dict[str, Any]) -> dict[str, Any]:
        from .. import __version__

        return {
            "format": FORMAT, "version": 2 if self.store_dtype == "int8" else 1,
            "created_by": f"mrl-plugins {__version__}",
            "model": None if self.model is None else {"name": self.model.name, "probe": list(self.model.probe)},
            "full_dim": self.full_dim, "shortlist_dim": self.shortlist_dim, "rerank_dim": self.rerank_dim,
            "index": {"name": backend_name, "params": backend_params}, "count": self.count,
            "store_dtype": self.store_dtype, "normalised": self.normalised,
        }

    def save(self, folder: Path, *, texts: Path | None = None, shortlist: int | None = None) -> Path:
        """Write the index into ``folder`` (created; it must not hold files already); ``shortlist``
        is the default shortlist ``mrl-run search`` reranks (the run's serving choice)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.shortlist.save(folder / "shortlist.index")
        if self._spool is not None and self._spool.path == folder / "vectors.npy":
            self._vectors, self._spool = self._spool.finish(), None
        else:
            np.save(folder / "vectors.npy", self.vectors)
        if self.ranges is not None:
            np.save(folder / "store_ranges.npy", self.ranges)
        manifest = self.manifest(self.backend.name, self.backend.params.model_dump(mode="json"))
        manifest["texts"] = texts is not None
        if shortlist is not None:
            manifest["shortlist"] = shortlist
        tmp = folder / ".manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, folder / "manifest.json")  # written last: a folder without it is not an index
        return folder

    @classmethod
    def load(cls, folder: str | Path, backend: IndexBackend, *, mmap: bool = True) -> FunnelIndex:
        """Read a saved index; ``backend`` must be the class the manifest names (see :func:`open_index`)."""
        folder = Path(folder)
        m = read_manifest(folder)
        index = cls.__new__(cls)
        index.full_dim, index.shortlist_dim, index.rerank_dim = m.full_dim, m.shortlist_dim, m.rerank_dim
        index.backend, index.store_dtype = backend, m.store_dtype
        index.model = ModelStamp(m.model.name, tuple(m.model.probe)) if m.model else None
        index._chunks, index.normalised, index.ranges, index._affine = [], m.normalised, None, None
        index._spool = None
        try:
            index.shortlist = backend.load(folder / "shortlist.index", m.shortlist_dim)
            index._vectors = np.load(folder / "vectors.npy", mmap_mode="r" if mmap else None)
            if index.store_dtype == "int8":
                index.ranges = np.load(folder / "store_ranges.npy")
                if index.ranges.shape != (2, index.full_dim) or index.ranges.dtype != np.float32:
                    raise ValueError(f"store_ranges.npy holds {index.ranges.dtype} {index.ranges.shape}, "
                                     f"expected float32 (2, {index.full_dim})")
        except (UserError, ImportError):
            raise  # ImportError: the backend's library is missing, not the files (open_index says which)
        except Exception as exc:
            raise UserError(f"{folder}: the index files cannot be read ({type(exc).__name__}: {exc}); rebuild it "
                            "with 'mrl-run index'.") from None
        if len(index.shortlist) != m.count or index._vectors.shape != (m.count, m.full_dim):
            raise UserError(
                f"{folder}: the files disagree with manifest.json (it says {m.count} vectors of {m.full_dim} "
                f"dimensions; the shortlist holds {len(index.shortlist)}, vectors.npy {index._vectors.shape}). The "
                "folder is corrupt or incomplete; rebuild it with 'mrl-run index'."
            )
        return index


def funnel_index(backend: IndexBackend, full_dim: int, shortlist_dim: int, *, rerank_dim: int | None = None,
                 store_dtype: str = "float32", model: ModelStamp | None = None, replace: bool = False) -> SearchIndex:
    """An empty funnel over ``backend``: the engine's own when the backend is an
    :class:`~mrl_plugins.components.Engine` (it holds the whole funnel), else the core's
    :class:`FunnelIndex` over the backend's shortlist index. The one place that decides, so that
    ``mrl-run index``, the ``funnel`` comparison, the demo and the conformance kit build alike;
    ``replace`` lets an engine replace what it holds under the same name (``--overwrite``)."""
    from ..components import Engine

    if isinstance(backend, Engine):
        return backend.funnel(full_dim, shortlist_dim, rerank_dim=rerank_dim, store_dtype=store_dtype, model=model,
                              replace=replace)
    return FunnelIndex(full_dim, shortlist_dim, backend, rerank_dim=rerank_dim,
                       store_dtype=store_dtype, model=model)  # type: ignore[arg-type]


def open_funnel(backend: IndexBackend, folder: Path, manifest: Manifest, *, mmap: bool = True) -> SearchIndex:
    """The index saved in ``folder`` (its manifest read and checked): reopened by the engine that
    holds it, or as the core's :class:`FunnelIndex` over ``backend``."""
    from ..components import Engine

    if isinstance(backend, Engine):
        return backend.open(folder, manifest, mmap=mmap)
    return FunnelIndex.load(folder, backend, mmap=mmap)


_THREADS: list[int] = []
"""Threads set by :func:`search_threads` (innermost last): while one is set, searches keep it."""


@contextlib.contextmanager
def search_threads(threads: int) -> Iterator[None]:
    """Every search in the block on ``threads`` OpenMP (FAISS) and BLAS threads, one query or a
    batch (``mrl-run search --threads``); restored after."""
    from threadpoolctl import threadpool_limits

    faiss: Any = __import__("faiss")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    _THREADS.append(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        _THREADS.pop()
        faiss.omp_set_num_threads(before)


@contextlib.contextmanager
def one_query_threads(queries: int) -> Iterator[None]:
    """One query searches on one OpenMP thread (FAISS), restored after; a batch keeps them all
    (unless :func:`search_threads` set a number for both).

    A single query has little to spread: FAISS parallelises most searches over queries, and its
    threads then mostly wait on each other. Issue #37 measured one query of the binary + int8
    funnel at 67 ms on a busy 2-core machine (1,015× exact search); an OpenMP barrier waiting for
    a thread that other load keeps off its core is the usual cause of such stalls, and one thread
    has no barrier to wait at. ``benchmarks/bench_index_tuning.py`` times the tuned setting with
    the other core busy."""
    if queries != 1 or _THREADS:
        yield
        return
    faiss: Any = __import__("faiss")
    before = faiss.omp_get_max_threads()
    if before == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def quantize_int8(vectors: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """sentence-transformers' ``quantize_embeddings(precision="int8", ranges=...)``: 256 steps
    between each dimension's calibrated minimum and maximum, as int8 (values outside are clipped)."""
    starts, steps = ranges[0], (ranges[1] - ranges[0]) / 255
    codes = (vectors - starts) / np.where(steps > 0, steps, 1.0) - 128
    return np.clip(np.round(codes), -128, 127).astype(np.int8)


def dequantize_int8(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """The float32 vectors int8 codes stand for (each code the centre of its step)."""
    starts, steps = ranges[0], (ranges[1] - ranges[0]) / 255
    return (np.asarray(codes, dtype=np.float32) + 128) * steps + starts


def _pad(hits: SearchHits, k: int) -> SearchHits:
    missing = k - hits.ids.shape[1]
    if missing <= 0:
        return hits
    return SearchHits(
        np.pad(hits.ids, ((0, 0), (0, missing)), constant_values=-1),
        np.pad(hits.scores, ((0, 0), (0, missing)), constant_values=-np.inf),
    )
