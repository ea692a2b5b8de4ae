"""The Annoy index backend (see the package docstring).

What Annoy is, and what this backend keeps of it:

- **Angular distance** on the shortlist prefix. Annoy normalises every vector itself and returns
  ``d = sqrt(2 - 2·cos)``; the score the contract asks for is the cosine, ``1 - d²/2``.
- **Built once, then read-only.** Annoy adds no item to a built forest. Items are added as the
  core streams them (:meth:`AnnoyIndex.add` copies them into Annoy's own memory), the forest is
  built on the first search, save or size question, and an index built in memory but not yet
  saved is unbuilt again if more vectors come; one that was saved or loaded refuses them.
- **Memory-mapped.** ``save`` writes the forest to the index folder's ``shortlist.index`` and
  Annoy maps that file; ``load`` maps it again (``prefault = true`` reads it all into the page
  cache at once). The RAM the shortlist costs is that file: ``bytes_per_vector`` is its size per
  vector (items and split nodes, ``12 + 4·dim`` bytes each), measured on the written file. Before
  the index is saved it is written to a scratch file to be measured, which Annoy then maps.
- **Annoy's defaults.** ``search_k = -1`` is Annoy's own default: ``n_trees × k`` nodes inspected
  for ``k`` results, so a funnel's longer shortlist also searches more of the forest. Annoy has no
  default tree count (``build(n_trees)`` takes one); ``n_trees = 10`` is the value of Annoy's own
  README example. ``n_jobs = -1`` builds on every core, as Annoy does by default.
- **One query at a time.** Annoy has no batch query: a batch is a loop of single queries on one
  core (FAISS's backends search a batch with OpenMP and BLAS). docs/benchmarks.md measures both.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from mrl_plugins.components import IndexBackend, Params, ShortlistIndex
from mrl_plugins.errors import UserError
from mrl_plugins.hookspecs import hookimpl

PAD_SCORE = float(np.finfo(np.float32).min)
"""The score beside an id of -1 (a short result), as FAISS pads an inner-product search."""


class AnnoyParams(Params):
    n_trees: int = Field(10, ge=1, description="Trees in the forest (Annoy's build(n_trees)): more is more accurate, "
                                               "larger and slower to build.")
    search_k: int = Field(-1, ge=-1, description="Nodes inspected per query; -1 is Annoy's default, n_trees × the "
                                                 "shortlist length. More is more accurate and slower.")
    n_jobs: int = Field(-1, ge=-1, description="Threads building the trees (-1: every core, Annoy's default).")
    seed: int | None = Field(None, ge=0, description="Seed of the random projections (default: Annoy's fixed one).")
    prefault: bool = Field(False, description="Read the whole index file into memory when it is loaded, instead of "
                                              "page by page as queries touch it.")


def _annoy(dim: int) -> Any:
    try:
        from annoy import AnnoyIndex
    except ImportError as exc:  # the plugin's own dependency: installed with it
        raise UserError(f"index annoy: the annoy package does not import ({exc}); pip install -e plugins/mrl-annoy "
                        "(it builds a C++ extension: a C++ compiler is needed where no wheel fits).") from None
    return AnnoyIndex(dim, "angular")


def node_bytes(dim: int) -> int:
    """Bytes of one node of an angular Annoy index of width ``dim``: a descendant count and two
    child ids (4 bytes each), then ``dim`` float32 values (``AnnoyIndex::_s``)."""
    return 12 + 4 * dim


class AnnoyIndex(ShortlistIndex):
    """A forest of Annoy trees over unit vectors of one width (see the module's docstring)."""

    def __init__(self, dim: int, params: AnnoyParams, annoy: Any = None, path: Path | None = None):
        self.dim, self.params = dim, params
        self.annoy = annoy if annoy is not None else _annoy(dim)
        if annoy is None and params.seed is not None:
            self.annoy.set_seed(params.seed)
        self._path = path
        """The file Annoy maps (saved, loaded or measured); ``None`` while the forest is in memory."""
        self._built = annoy is not None
        self._count = int(self.annoy.get_n_items()) if annoy is not None else 0
        self._bytes = path.stat().st_size if path is not None else 0
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def add(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if not len(vectors):
            return
        if self._built:
            if self._path is not None:
                raise RuntimeError(f"an Annoy index mapped from {self._path} is read-only: Annoy adds no item to a "
                                   "saved forest; build a new index with every vector")
            self.annoy.unbuild()
            self._built = False
        add = self.annoy.add_item
        for offset, vector in enumerate(vectors):
            add(self._count + offset, vector)
        self._count += len(vectors)

    def _build(self) -> None:
        if not self._built:
            self.annoy.build(self.params.n_trees, n_jobs=self.params.n_jobs)
            self._built = True

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._build()
        queries = np.asarray(queries, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), PAD_SCORE, dtype=np.float32)
        nearest, search_k = self.annoy.get_nns_by_vector, self.params.search_k
        for row, query in enumerate(queries):
            found, distances = nearest(query, k, search_k=search_k, include_distances=True)
            if found:
                n = len(found)
                ids[row, :n] = found
                scores[row, :n] = 1.0 - np.square(np.asarray(distances, dtype=np.float32)) / 2.0
        return scores, ids

    def _write(self, path: Path) -> None:
        self._build()
        if not self.annoy.save(str(path), prefault=self.params.prefault):
            raise OSError(f"Annoy could not write {path}")
        self._path = Path(path)  # Annoy now maps the file it wrote (a folder renamed later still maps it)
        self._bytes = self._path.stat().st_size

    def save(self, path: Path) -> None:
        self._write(path)
        if self._scratch is not None:  # the measured copy is mapped no more
            self._scratch.cleanup()
            self._scratch = None

    def bytes_per_vector(self) -> float:
        if self._path is None:  # measure the forest on a file, the way it is served
            self._scratch = tempfile.TemporaryDirectory(prefix="mrl-annoy-")
            self._write(Path(self._scratch.name) / "shortlist.annoy")
        return self._bytes / max(self._count, 1)

    def __len__(self) -> int:
        return self._count


class Annoy(IndexBackend[AnnoyParams]):
    """Approximate search on a forest of random-projection trees (Spotify's Annoy, angular
    distance), memory-mapped from its file."""

    name = "annoy"
    Params = AnnoyParams

    def create(self, dim: int) -> ShortlistIndex:
        return AnnoyIndex(dim, self.params)

    def load(self, path: Path, dim: int) -> ShortlistIndex:
        size = Path(path).stat().st_size
        if size % node_bytes(dim):  # Annoy's file does not record its width: a wrong one reads garbage
            raise ValueError(f"{path} ({size:,} bytes) is not an angular Annoy index of {dim} dimensions (nodes of "
                             f"{node_bytes(dim)} bytes)")
        annoy = _annoy(dim)
        if not annoy.load(str(path), prefault=self.params.prefault):
            raise OSError(f"Annoy could not map {path}")
        return AnnoyIndex(dim, self.params, annoy, Path(path))


@hookimpl
def register_index_backends(register):
    register(Annoy)
