"""Built-in index backends on FAISS: ``flat`` (exact), ``hnsw`` (graph), ``ivf`` (inverted
lists: k-means cells, of which ``nprobe`` are scanned, holding float vectors or PQ codes), ``int8``
(scalar quantiser) and ``binary`` (sign bits, Hamming distance).

All of them index unit-length vectors and rank by inner product (cosine), the metric the run's
evaluation uses. ``int8`` is FAISS's 8-bit scalar quantiser with per-dimension ranges fitted on
the first vectors added: the same uniform quantiser as sentence-transformers'
``quantize_embeddings(precision="uint8")``, but FAISS scores the float query against the decoded
codes (asymmetric distance), which loses less than comparing codes with codes. ``binary`` packs
sign bits with sentence-transformers' ``quantize_embeddings(precision="ubinary")`` into a FAISS
binary index, as ``semantic_search_faiss`` does; its score is ``1 - 2·hamming/dim``, the cosine
of the two ±1 vectors. FAISS is imported inside methods: ``mrl-run validate`` stays light.

FAISS searches a flat index one query at a time (SIMD, no BLAS) unless ``queries × dims`` reaches
its ``distance_compute_blas_threshold`` (128,000 in FAISS 1.15): a batch of 1,000 queries at 48
dims, or of 300 at 384, takes the one-at-a-time path, 3–10× slower than its matrix product
(benchmarks/bench_search.py). The flat backends search with the threshold at 20 queries at
their own width (FAISS's rule before it counted dimensions), restored after each call, so that a
truncated batch is not handicapped against the full-width one it is compared with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..components import IndexBackend, Params, ShortlistIndex
from ..hookspecs import hookimpl


def _faiss() -> Any:
    import faiss

    return faiss


@contextmanager
def blas_from_20_queries(dim: int) -> Iterator[None]:
    """FAISS's flat searches use BLAS from 20 queries on at width ``dim`` (see the module's doc)."""
    cvar = _faiss().cvar
    before = cvar.distance_compute_blas_threshold
    cvar.distance_compute_blas_threshold = 20 * dim
    try:
        yield
    finally:
        cvar.distance_compute_blas_threshold = before


class FaissIndex(ShortlistIndex):
    """A FAISS float index (flat, HNSW or scalar-quantised) over inner product."""

    def __init__(self, index: Any, dim: int, on_gpu: bool = False):
        self.index, self.dim, self.on_gpu = index, dim, on_gpu

    def train(self, sample: np.ndarray) -> None:
        if not self.index.is_trained:
            self.index.train(np.ascontiguousarray(sample, dtype=np.float32))

    def add(self, vectors: np.ndarray) -> None:
        if not self.index.is_trained:
            self.train(vectors)
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with blas_from_20_queries(self.dim):
            return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, path: Path) -> None:
        faiss = _faiss()
        faiss.write_index(faiss.index_gpu_to_cpu(self.index) if self.on_gpu else self.index, str(path))

    def bytes_per_vector(self) -> float:
        if self.on_gpu:
            return float(4 * self.dim)
        n = max(self.index.ntotal, 1)
        hnsw = getattr(self.index, "hnsw", None)
        code = self.index.storage.sa_code_size() if hnsw is not None else self.index.sa_code_size()
        if hnsw is None:
            return float(code)
        # graph links (4-byte ids at every level), per-vector offsets (8) and levels (4)
        return code + (hnsw.neighbors.size() * 4) / n + 12

    def __len__(self) -> int:
        return int(self.index.ntotal)


class FlatParams(Params):
    gpu: bool = Field(True, description="Search on the GPUs when FAISS is a GPU build and GPUs are present.")


def gpus() -> int:
    """GPUs FAISS can use: 0 with faiss-cpu, which has no GPU code."""
    return int(getattr(_faiss(), "get_num_gpus", lambda: 0)())


class Flat(IndexBackend[FlatParams]):
    """Exact search: every vector compared with the query (FAISS IndexFlatIP, float32; on GPUs with a GPU build)."""

    name = "flat"
    Params = FlatParams
    exact = True
    quantized = {"int8": ("int8", {}), "binary": ("binary", {})}

    def _placed(self, index: Any, dim: int) -> ShortlistIndex:
        if self.params.gpu and gpus() > 0:  # a faiss-gpu build on a GPU machine (not exercised by this project's CI)
            return FaissIndex(_faiss().index_cpu_to_all_gpus(index), dim, on_gpu=True)
        return FaissIndex(index, dim)

    def create(self, dim: int) -> ShortlistIndex:
        return self._placed(_faiss().IndexFlatIP(dim), dim)

    def load(self, path: Path, dim: int) -> ShortlistIndex:
        return self._placed(_checked(_faiss().read_index(str(path)), dim), dim)


class HNSWParams(Params):
    m: int = Field(32, ge=4, le=128, description="Graph neighbours per vector (M): more is more accurate and larger.")
    ef_construction: int = Field(80, ge=8,
                                 description="Candidate list while building: higher builds a better graph, slower.")
    ef_search: int = Field(128, ge=8,
                           description="Candidate list while searching (at least the shortlist): higher is more "
                                       "accurate, slower.")
    storage: Literal["float32", "int8"] = Field("float32",
                                                description="How the graph stores vectors: float32, or FAISS's 8-bit "
                                                            "scalar quantiser.")


class HNSW(IndexBackend[HNSWParams]):
    """Approximate search on a navigable small-world graph (FAISS IndexHNSWFlat / IndexHNSWSQ)."""

    name = "hnsw"
    Params = HNSWParams
    quantized = {"int8": ("hnsw", {"storage": "int8"})}

    def create(self, dim: int) -> ShortlistIndex:
        faiss, p = _faiss(), self.params
        if p.storage == "int8":
            index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, p.m, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWFlat(dim, p.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = p.ef_construction
        index.hnsw.efSearch = p.ef_search
        return _HNSWIndex(index, dim, p.ef_search)

    def load(self, path: Path, dim: int) -> ShortlistIndex:
        index = _checked(_faiss().read_index(str(path)), dim)
        index.hnsw.efSearch = self.params.ef_search
        return _HNSWIndex(index, dim, self.params.ef_search)


class _HNSWIndex(FaissIndex):
    def __init__(self, index: Any, dim: int, ef_search: int):
        super().__init__(index, dim)
        self.ef_search = ef_search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.hnsw.efSearch = max(self.ef_search, k)  # a shortlist longer than ef would be cut short
        return super().search(queries, k)


class Int8(IndexBackend):
    """Exact search over 8-bit scalar-quantised vectors: a quarter of float32's memory."""

    name = "int8"

    def create(self, dim: int) -> ShortlistIndex:
        faiss = _faiss()
        return FaissIndex(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT),
                          dim)

    def load(self, path: Path, dim: int) -> ShortlistIndex:
        return FaissIndex(_checked(_faiss().read_index(str(path)), dim), dim)


class IVFParams(Params):
    nlist: int | None = Field(None, ge=1, description="k-means cells; default 4·√n of the training vectors (at most "
                                                      "one cell per 39 of them, FAISS's minimum).")
    nprobe: int = Field(16, ge=1, description="Cells scanned per query: more is more accurate and slower; nprobe = "
                                              "nlist scans everything (exact for Flat cells).")
    pq: int = Field(0, ge=0, description="0: cells hold float vectors (IVF,Flat); m > 0: product-quantiser codes of "
                                         "m sub-vectors (IVF,PQm; m must divide the dimension).")
    pq_bits: Literal[4, 8] = Field(8, description="Bits per sub-vector code with pq > 0: 8 (IVF,PQm: m bytes a vector) "
                                                  "or 4 (FAISS's fast scan, IVF,PQmx4fs: m/2 bytes, scored 32 codes "
                                                  "at a time in SIMD registers).")
    train_size: int = Field(65_536, ge=256, description="Vectors buffered before the cells are trained (all of them "
                                                        "when fewer are added).")


class IVF(IndexBackend[IVFParams]):
    """Approximate search that scans only the ``nprobe`` nearest of ``nlist`` k-means cells (FAISS
    IndexIVFFlat / IndexIVFPQ / IndexIVFPQFastScan with ``pq_bits = 4``, inner product): a
    shortlist that does not score every vector. On the Debian catalogue's real queries
    (``benchmarks/bench_fast_scan.py``) fast-scan cells keep 99% of exact MRR@10 only with a
    quarter of the cells probed, and the label-free probe queries ``mrl-run index`` tunes with do
    not tell those settings from ones that keep less, so its tuning tries only this backend's defaults."""

    name = "ivf"
    Params = IVFParams

    def create(self, dim: int) -> ShortlistIndex:
        if self.params.pq and dim % self.params.pq:
            from ..errors import UserError

            raise UserError(f"index ivf: pq = {self.params.pq} does not divide the width {dim}; choose a divisor "
                            f"(e.g. {', '.join(str(m) for m in (8, 12, 16, 24, 48) if dim % m == 0) or 1}).")
        return _IVFIndex(None, dim, self.params)

    def load(self, path: Path, dim: int) -> ShortlistIndex:
        index = _checked(_faiss().read_index(str(path)), dim)
        return _IVFIndex(index, dim, self.params)


class _IVFIndex(ShortlistIndex):
    """Buffers the first ``train_size`` vectors, trains the cells on them, then adds as it goes:
    cells trained on one small batch of a streamed build would be poor."""

    def __init__(self, index: Any, dim: int, params: IVFParams):
        self.index, self.dim, self.params = index, dim, params
        self._pending: list[np.ndarray] = []

    def _build(self, sample: np.ndarray) -> None:
        faiss, p = _faiss(), self.params
        n = len(sample)
        nlist = max(1, min(p.nlist or round(4 * n ** 0.5), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(self.dim)
        if p.pq:
            if n < 256:
                from ..errors import UserError

                raise UserError(f"index ivf with pq = {p.pq}: its codebooks need at least 256 vectors, got {n}; use "
                                "pq = 0 (float cells) for so small a corpus.")
            if p.pq_bits == 4:
                index = faiss.IndexIVFPQFastScan(quantizer, self.dim, nlist, p.pq, 4, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, p.pq, 8, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # k-means is seeded: the same vectors give the same cells
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        self.index = index  # FAISS's Python wrapper keeps the quantiser alive with the index

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = np.concatenate(self._pending), []
            if self.index is None:
                self._build(pending)
            self.index.add(np.ascontiguousarray(pending, dtype=np.float32))

    def add(self, vectors: np.ndarray) -> None:
        if self.index is not None:
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            return
        self._pending.append(np.asarray(vectors, dtype=np.float32))
        if sum(len(v) for v in self._pending) >= self.params.train_size:
            self._flush()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._flush()
        self.index.nprobe = min(self.params.nprobe, self.index.nlist)
        with blas_from_20_queries(self.dim):  # the coarse quantiser is a flat index
            return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, path: Path) -> None:
        self._flush()
        _faiss().write_index(self.index, str(path))

    def bytes_per_vector(self) -> float:
        self._flush()
        n = max(self.index.ntotal, 1)
        lists = _faiss().downcast_InvertedLists(self.index.invlists)
        if hasattr(lists, "n_per_block"):  # fast scan: codes in blocks of 32 vectors, the last of a cell padded
            blocks = sum(-(-lists.list_size(i) // lists.n_per_block) for i in range(self.index.nlist))
            codes = blocks * lists.block_size / n
        else:
            codes = self.index.code_size
        # each vector's code and its 8-byte id in an inverted list, and the centroids shared out
        return codes + 8 + self.index.nlist * self.dim * 4 / n

    def __len__(self) -> int:
        return (int(self.index.ntotal) if self.index is not None else 0) + sum(len(v) for v in self._pending)


def _checked(index: Any, dim: int) -> Any:
    """A loaded FAISS index must be of the width the manifest says, or every search asserts."""
    if index.d != dim:
        raise ValueError(f"shortlist.index holds vectors of {index.d} dimensions, the manifest says {dim}")
    return index


def ubinary(vectors: np.ndarray) -> np.ndarray:
    """Sign bits packed 8 to a byte, by sentence-transformers' own quantiser."""
    from ..models.compat import quantize_embeddings

    return quantize_embeddings(vectors, precision="ubinary")


COUNTING_FROM = 200
"""Shortlists at least this long select by counting, not by heap (:meth:`BinaryIndex.search`)."""


class BinaryIndex(ShortlistIndex):
    def __init__(self, index: Any, dim: int):
        self.index, self.dim = index, dim

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(ubinary(vectors))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # the same bits as ubinary() (sentence-transformers packs the flattened array, which is
        # row by row when a row is whole bytes), without its input checks: one query is searched
        # in ~100 µs, and they cost several
        codes = np.packbits(queries > 0, axis=1) if self.dim % 8 == 0 else ubinary(queries)
        # FAISS keeps the k best in a heap by default; for a funnel's long shortlists its counting
        # selection (one counter per Hamming distance) is faster: 1.2-2.4x at k = 500-1000 on
        # 135,117 codes one query at a time, never slower there from k = 200 at any code width,
        # within 2% batched (benchmarks/bench_hamming.py)
        self.index.use_heap = k < COUNTING_FROM
        distances, ids = self.index.search(codes, k)
        scores = distances.astype(np.float32)  # cosine of the ±1 codes, in place: 1 - 2 · hamming / bits
        scores *= -2.0 / self.dim
        scores += 1.0
        return scores, ids

    def save(self, path: Path) -> None:
        _faiss().write_index_binary(self.index, str(path))

    def bytes_per_vector(self) -> float:
        return float(self.index.code_size)

    def __len__(self) -> int:
        return int(self.index.ntotal)


class Binary(IndexBackend):
    """Exact Hamming search over sign bits: a 32nd of float32's memory (FAISS IndexBinaryFlat)."""

    name = "binary"
    fast_dims = (128, 256, 512)  # 16-, 32- and 64-byte codes: FAISS's dedicated Hamming kernels

    def create(self, dim: int) -> ShortlistIndex:
        return BinaryIndex(_faiss().IndexBinaryFlat(((dim + 7) // 8) * 8), dim)

    def load(self, path: Path, dim: int) -> ShortlistIndex:
        return BinaryIndex(_checked(_faiss().read_index_binary(str(path)), ((dim + 7) // 8) * 8), dim)


@hookimpl
def register_index_backends(register):
    register(Flat)
    register(HNSW)
    register(IVF)
    register(Int8)
    register(Binary)
