"""A funnel index: shortlist with the first dimensions, rerank with the full vectors.

``FunnelIndex`` keeps two things per document: its first ``shortlist_dim`` dimensions,
re-normalised, in a shortlist index of any registered backend (``flat``, ``hnsw``, ``int8``,
``binary`` built in; a plugin can add another engine), and its full float32 (or float16)
vector for reranking. ``search(queries, k, shortlist=N)`` takes the N best candidates from the
shortlist index and reranks them by cosine at ``rerank_dim`` (the full dimension by default);
``shortlist=None`` returns the shortlist index's own top k, unreranked. A funnel whose shortlist
is the whole corpus is exact full-dimension search.

The rerank runs in FAISS's C++ (``knn_inner_products_by_idx``: the same inner products and heap
that ``IndexRefineFlat`` runs over its refine index, here over the rerank store itself), so that a
store memory-mapped from disk is reranked in place: FAISS's ``IndexRefine`` would need the full
vectors in RAM as an index of their own, and cannot refine a binary shortlist at all. Vectors are
stored unit-length at full width, so the C++ inner product is the cosine. An ``int8`` store
(sentence-transformers' calibrated scalar quantiser, ranges from the first vectors added, a
quarter of float32's bytes) decodes the candidates' rows to unit float32 and reranks that block
the same way. A ``float16`` store, or a rerank at fewer dimensions than the full width, is
reranked in numpy: cosine at ``rerank_dim`` of the decoded vectors.

A saved index is a folder: ``manifest.json`` (format version, model, dimensions, backend,
count), the backend's ``shortlist.index``, ``vectors.npy`` (memory-mapped when loaded, so a large
index keeps only its shortlist in RAM; ``store_ranges.npy`` beside it for an ``int8`` store) and,
when built from texts, ``texts.jsonl`` with an ``offsets.npy`` to read any one line. An index
with an ``int8`` store is format version 2 (older readers say "upgrade"); others stay version 1.
A folder that does not match its manifest, or a model other than the one that built it, is a
clear error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..components import IndexBackend, ShortlistIndex
from ..errors import UserError
from ..evaluation import normalise

FORMAT = "mrl-plugins-index"
VERSION = 2
"""The newest format this code reads and writes; an index is written as version 1 unless it needs 2
(an ``int8`` store), so that every index an older mrl-plugins can read is still written for it."""
PROBE = "mrl-plugins index probe: which model embedded this corpus?"
StoreDtype = Literal["float32", "float16", "int8"]


@dataclass(frozen=True)
class ModelStamp:
    """Which model embedded an index: its name and its embedding of a fixed probe sentence, so
    a query embedded by another model is refused whatever the model is called."""

    name: str
    probe: tuple[float, ...]

    @classmethod
    def of(cls, model: Any, name: str) -> ModelStamp:
        from ..evaluation import encode_texts

        vector = encode_texts(model, [PROBE], role="document")[0]
        return cls(name, tuple(round(float(v), 6) for v in vector[:16]))

    def matches(self, other: ModelStamp) -> bool:
        return len(self.probe) == len(other.probe) and np.allclose(self.probe, other.probe, atol=1e-3)


@dataclass
class SearchHits:
    """Per query, the ``k`` best corpus ids (-1 pads a short list) and their scores."""

    ids: np.ndarray
    scores: np.ndarray


@dataclass
class FunnelIndex:
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
    _chunks: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _vectors: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rerank_dim = self.rerank_dim or self.full_dim
        if not 0 < self.shortlist_dim <= self.full_dim or not 0 < self.rerank_dim <= self.full_dim:
            raise UserError(
                f"shortlist dimension {self.shortlist_dim} and rerank dimension {self.rerank_dim} must be between 1 "
                f"and the model's dimension {self.full_dim}."
            )
        self.shortlist = self.backend.create(self.shortlist_dim)

    # -- building ------------------------------------------------------------------------------
    def add(self, embeddings: np.ndarray) -> None:
        """Append full-dimension embeddings (ids continue from :attr:`count`)."""
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
            self._chunks.append(quantize_int8(unit, self.ranges))
        else:
            self._chunks.append(unit.astype(self.store_dtype))
        self._vectors = None

    @property
    def vectors(self) -> np.ndarray:
        """The stored full-dimension vectors, ``(count, full_dim)``, in the store's dtype (int8
        codes for an ``int8`` store: :meth:`decoded` gives float32)."""
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
        scores, ids = self.shortlist.search(normalise(queries[:, : self.shortlist_dim]), n)
        if shortlist is None:
            return _pad(SearchHits(ids[:, :k], scores[:, :k]), k)
        return _pad(self._rerank(queries, ids, k), k)

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> SearchHits:
        if self.rerank_dim == self.full_dim and self.normalised:
            if self.store_dtype == "float32":
                return self._rerank_faiss(normalise(queries), candidates, k)
            if self.store_dtype == "int8":
                return self._rerank_int8(normalise(queries), candidates, k)
        return self._rerank_numpy(queries, candidates, k)

    def _rerank_faiss(self, q: np.ndarray, candidates: np.ndarray, k: int,
                      store: np.ndarray | None = None) -> SearchHits:
        """Inner products with the candidates' stored unit vectors and the top k, in FAISS's C++
        (parallel over queries): no Python per query, the store read in place. Candidates are
        row ids into ``store`` (the index's vectors by default), -1 only at the end of a row."""
        faiss: Any = __import__("faiss")  # untyped: its SWIG module has no stubs

        store = self.vectors if store is None else store
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
        """The int8 store: the candidates' codes decoded to unit float32 rows once (a block of
        ~64 MB at a time), then the same C++ rerank over that block."""
        n, width = candidates.shape
        out_ids, out_scores = [], []
        step = max(1, (64 << 20) // max(1, width * self.full_dim * 4))
        for start in range(0, n, step):
            cand = candidates[start : start + step]
            valid = cand >= 0
            rows = np.where(valid, cand, 0).reshape(-1)
            block = normalise(self.decoded(rows))
            local = np.where(valid, np.arange(cand.size, dtype=np.int64).reshape(cand.shape), -1)
            hits = self._rerank_faiss(q[start : start + step], local, k, store=block)
            out_ids.append(np.where(hits.ids >= 0, rows[np.maximum(hits.ids, 0)], -1))
            out_scores.append(hits.scores)
        return SearchHits(np.concatenate(out_ids), np.concatenate(out_scores))

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

    def save(self, folder: str | Path, *, texts: Path | None = None, shortlist: int | None = None) -> Path:
        """Write the index into ``folder`` (created; it must not hold files already); ``shortlist``
        is the default shortlist ``mrl-run search`` reranks (the run's serving choice)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.shortlist.save(folder / "shortlist.index")
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
        index.full_dim, index.shortlist_dim, index.rerank_dim = m["full_dim"], m["shortlist_dim"], m["rerank_dim"]
        index.backend, index.store_dtype = backend, m["store_dtype"]
        index.model = ModelStamp(m["model"]["name"], tuple(m["model"]["probe"])) if m.get("model") else None
        index._chunks, index.normalised, index.ranges = [], bool(m.get("normalised", False)), None
        try:
            index.shortlist = backend.load(folder / "shortlist.index", m["shortlist_dim"])
            index._vectors = np.load(folder / "vectors.npy", mmap_mode="r" if mmap else None)
            if index.store_dtype == "int8":
                index.ranges = np.load(folder / "store_ranges.npy")
                if index.ranges.shape != (2, index.full_dim) or index.ranges.dtype != np.float32:
                    raise ValueError(f"store_ranges.npy holds {index.ranges.dtype} {index.ranges.shape}, "
                                     f"expected float32 (2, {index.full_dim})")
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{folder}: the index files cannot be read ({type(exc).__name__}: {exc}); rebuild it "
                            "with 'mrl-run index'.") from None
        if len(index.shortlist) != m["count"] or index._vectors.shape != (m["count"], m["full_dim"]):
            raise UserError(
                f"{folder}: the files disagree with manifest.json (it says {m['count']} vectors of {m['full_dim']} "
                f"dimensions; the shortlist holds {len(index.shortlist)}, vectors.npy {index._vectors.shape}). The "
                "folder is corrupt or incomplete; rebuild it with 'mrl-run index'."
            )
        return index


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


class _Stamp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    probe: list[float]


class _Backend(BaseModel):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    """``manifest.json``: every key with its type; a folder whose manifest does not parse as this
    is not an index (checked before any model or torch loads)."""

    model_config = ConfigDict(extra="allow", strict=True)
    format: Literal["mrl-plugins-index"]
    version: int = Field(ge=1)
    created_by: str | None = None
    model: _Stamp | None = None
    full_dim: int = Field(ge=1)
    shortlist_dim: int = Field(ge=1)
    rerank_dim: int = Field(ge=1)
    index: _Backend
    count: int = Field(ge=0)
    store_dtype: Literal["float32", "float16", "int8"]
    texts: bool = False
    normalised: bool = False
    shortlist: int | None = Field(None, ge=1)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    rebuild = f"rebuild the index with 'mrl-run index MODEL CORPUS -o {folder} --overwrite'"
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; build an index with 'mrl-run index MODEL CORPUS -o {folder}'.")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{folder}: not an index (no manifest.json); build one with 'mrl-run index'.") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); {rebuild}.") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise UserError(f"{path} is not an mrl-plugins index manifest (no \"format\": \"{FORMAT}\"); {rebuild}.")
    if isinstance(m.get("version"), int) and not isinstance(m.get("version"), bool) and m["version"] > VERSION:
        raise UserError(f"{folder}: index format {m['version']} is newer than this mrl-plugins reads ({VERSION}); "
                        "upgrade.")
    try:
        manifest = Manifest.model_validate(m)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UserError(f"{path}: '{at}' {first['msg'].lower()} (got {first.get('input')!r:.60}); the manifest is "
                        f"damaged; {rebuild}.") from None
    if manifest.shortlist_dim > manifest.full_dim or manifest.rerank_dim > manifest.full_dim:
        raise UserError(f"{path}: shortlist_dim {manifest.shortlist_dim} and rerank_dim {manifest.rerank_dim} must not "
                        f"exceed full_dim {manifest.full_dim}; the manifest is damaged; {rebuild}.")
    return manifest.model_dump(mode="json")


def check_index_folder(folder: Path) -> dict[str, Any]:
    """The whole index folder, checked without loading a model: the manifest (keys and types),
    the files it needs, the shape and dtype of ``vectors.npy`` and the text store's offsets.
    Returns the manifest; anything wrong is one message that says to rebuild."""
    m = read_manifest(folder)
    rebuild = f"rebuild the index with 'mrl-run index MODEL CORPUS -o {folder} --overwrite'"
    needed = ["shortlist.index", "vectors.npy", *(["store_ranges.npy"] if m["store_dtype"] == "int8" else []),
              *(["texts.jsonl", "offsets.npy"] if m["texts"] else [])]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{folder}: {', '.join(missing)} missing (the manifest needs them); the folder is incomplete; "
                        f"{rebuild}.")
    shape, dtype = npy_header(folder / "vectors.npy", rebuild)
    if shape != (m["count"], m["full_dim"]) or dtype != np.dtype(m["store_dtype"]):
        raise UserError(f"{folder}/vectors.npy holds {dtype} {shape}, the manifest says {m['store_dtype']} "
                        f"({m['count']}, {m['full_dim']}); the folder is damaged; {rebuild}.")
    if m["texts"]:
        TextStore(folder).check(m["count"], rebuild)
    return m


def npy_header(path: Path, rebuild: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header, and whether its data is all there."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
            data_start = fh.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npy file ({exc}); {rebuild}.") from None
    need = int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size - data_start < need:
        raise UserError(f"{path}: cut short ({path.stat().st_size - data_start:,} of {need:,} data bytes); {rebuild}.")
    return tuple(shape), dtype


# -- corpora: texts in, a line by id out ---------------------------------------------------------
class TextStore:
    """The corpus texts of an index as JSON lines, with offsets to read any one line."""

    def __init__(self, folder: Path):
        self.path, self.offsets_path = folder / "texts.jsonl", folder / "offsets.npy"
        self._offsets: np.ndarray | None = None

    def write(self, records: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
        """Write ``(id, text)`` records as they pass through (yields them on)."""
        offsets = []
        with open(self.path, "w", encoding="utf-8") as fh:
            for doc_id, text in records:
                offsets.append(fh.tell())
                fh.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
                yield doc_id, text
        np.save(self.offsets_path, np.asarray(offsets, dtype=np.int64))

    def check(self, count: int, rebuild: str) -> None:
        """Offsets for ``count`` documents, starting at 0, increasing, inside ``texts.jsonl``."""
        shape, dtype = npy_header(self.offsets_path, rebuild)
        size = self.path.stat().st_size
        if shape != (count,) or dtype.kind not in "iu":
            raise UserError(f"{self.offsets_path} holds {dtype} {shape}, expected {count} integer offsets; {rebuild}.")
        offsets = np.load(self.offsets_path, mmap_mode="r")
        if count and (offsets[0] != 0 or offsets[-1] >= size or np.any(np.diff(offsets) <= 0)):
            raise UserError(f"{self.offsets_path} does not match texts.jsonl ({size:,} bytes); the text store is "
                            f"damaged; {rebuild}.")

    def get(self, rows: Sequence[int]) -> list[dict[str, str]]:
        if self._offsets is None:
            self._offsets = np.load(self.offsets_path, mmap_mode="r")
        out = []
        with open(self.path, "rb") as fh:
            for row in rows:
                fh.seek(int(self._offsets[row]))
                try:
                    doc = json.loads(fh.readline())
                    out.append({"id": str(doc["id"]), "text": str(doc["text"])})
                except (ValueError, KeyError, TypeError):
                    raise UserError(f"{self.path}: document {row} cannot be read (the file was changed after the index "
                                    "was built); rebuild the index with 'mrl-run index'.") from None
        return out
