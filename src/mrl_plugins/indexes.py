"""What an index holds and returns: the objects index backends and engines hand the core.

:class:`ShortlistIndex` (a backend's index of truncated vectors that returns candidates),
:class:`SearchIndex` (a corpus held and searched as a whole funnel, by the core's
``FunnelIndex`` or by an engine), :class:`SearchHits`, and :class:`ServingChoice` /
:class:`ServingSnippet` (the run's serving choice handed to an engine for the model card). Kept
apart from :mod:`mrl_plugins.components`, which holds the component kinds and re-exports these,
so plugins still import every contract name from there.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


class ShortlistIndex(abc.ABC):
    """A built index over unit-length vectors of one dimension that returns candidates."""

    dim: int

    def train(self, sample: np.ndarray) -> None:
        """Fit what the index needs before vectors are added (e.g. quantisation ranges); called
        once, with the first vectors added. Default: nothing to fit."""

    @abc.abstractmethod
    def add(self, vectors: np.ndarray) -> None:
        """Append float32 ``(n, dim)`` unit-length vectors; their ids continue from ``len(self)``."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``(queries, k)``, best first; higher scores are closer and ids
        of -1 pad a short result."""

    @abc.abstractmethod
    def save(self, path: Path) -> None:
        """Write the index to one file."""

    @abc.abstractmethod
    def bytes_per_vector(self) -> float:
        """Memory the index holds per vector, structure included."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Vectors added so far."""


@dataclass
class SearchHits:
    """Per query, the ``k`` best corpus ids (-1 pads a short list) and their scores."""

    ids: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class ServingChoice:
    """The run's serving choice, as an engine needs it to write its own serving snippet."""

    dim: int
    full_dim: int
    shortlist: int
    rerank_dim: int
    store: str
    index: str
    """The index backend the run measured it with (a built-in FAISS one, or an engine's)."""
    index_params: Mapping[str, Any]
    kept: float
    """Share of exact full-width quality kept (held out)."""
    recall: float | None
    """overlap@k with exact full-width search (held out), when measured."""
    k: int


@dataclass(frozen=True)
class ServingSnippet:
    """How to serve the choice in one engine: a titled code block and a sentence under it."""

    title: str
    language: str
    code: str
    note: str = ""


class SearchIndex(abc.ABC):
    """A corpus's vectors held by one engine and searched as a funnel: the ``shortlist`` best
    candidates by the first ``shortlist_dim`` dimensions (re-normalised), reranked by cosine at
    ``rerank_dim``. The core builds, searches, times, saves and reopens every index through this
    contract: :class:`~mrl_plugins.search.FunnelIndex` (a shortlist index of any backend, with
    the full vectors and the rerank held in process) is one; an engine that stores the vectors and
    reranks inside its own query (PostgreSQL + pgvector) is another.

    Ids are row numbers in the order vectors were added, scores cosine similarities at the
    dimension that ranked them (the rerank width after a rerank; the shortlist width, or what the
    shortlist index scores, without one)."""

    full_dim: int
    shortlist_dim: int
    rerank_dim: int | None
    store_dtype: str
    model: Any
    """Which model embedded the corpus (a :class:`~mrl_plugins.search.ModelStamp`), or ``None``."""

    @abc.abstractmethod
    def add(self, embeddings: np.ndarray, texts: list[str] | None = None) -> None:
        """Append full-dimension float32 embeddings (ids continue from :attr:`count`); ``texts``,
        when given, are the documents, for an engine that stores them beside the vectors."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int, shortlist: int | None = None) -> SearchHits:
        """The ``k`` best documents per query: the ``shortlist`` best candidates reranked at
        ``rerank_dim``, or the shortlist index's own top ``k`` when ``shortlist`` is ``None``."""

    @property
    @abc.abstractmethod
    def count(self) -> int:
        """Vectors added so far."""

    @abc.abstractmethod
    def index_bytes(self) -> float:
        """Bytes per vector the shortlist index holds (structure included)."""

    @abc.abstractmethod
    def rerank_bytes(self) -> float:
        """Bytes per vector read to rerank (the stored vectors)."""

    @abc.abstractmethod
    def save(self, folder: Path, *, texts: Path | None = None, shortlist: int | None = None) -> Path:
        """Write the index folder: ``manifest.json`` (see :mod:`mrl_plugins.search.folder`) last,
        and whatever the engine keeps locally; ``shortlist`` is ``mrl-run search``'s default."""

    @abc.abstractmethod
    def decoded(self) -> np.ndarray:
        """Every stored full-width vector as float32 ``(count, full_dim)``, in id order (what
        ``mrl-run demo --index`` searches in process)."""

    def facts(self) -> dict[str, Any]:
        """What a run records about the engine that measured a column (version, server…)."""
        return {}

    def close(self) -> None:
        """Release connections, and drop what an unsaved index left in its engine."""
