"""What an index holds and returns: the objects index backends and engines hand the core.

:class:`ShortlistIndex` (a backend's index of truncated vectors that returns candidates),
:class:`SearchIndex` (a corpus held and searched as a whole funnel, by the core's
``FunnelIndex`` or by an engine), :class:`SearchHits`, :class:`SearchSetting` (one way to search:
what a funnel measures, the run chooses, ``mrl-run index`` builds) and :class:`ServingChoice` /
:class:`ServingSnippet` (the run's serving choice handed to an engine for the model card), and
:class:`Manifest` (an index folder's manifest, typed, as an engine opens it). Kept
apart from :mod:`mrl_plugins.components`, which holds the component kinds and re-exports these,
so plugins still import every contract name from there.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np


StoreDtype = Literal["float32", "float16", "int8"]
"""How the rerank vectors are stored (``int8``: codes with ``store_ranges.npy``)."""
FORMAT = "mrl-plugins-index"
VERSION = 3
"""The newest format this code reads and writes; an index is written as version 1 unless it needs 2
(an ``int8`` store) or 3 (held by an engine), so that every index an older mrl-plugins can read is
still written for it."""
FASTER_THAN_EXACT = 0.8
"""An index takes exact search's place only when it answers one query in at most this share of
exact search's time, measured beside it (medians, interleaved rounds). A closer time is within the
noise of timings on a busy machine: the quickstart's 48-dim funnel with a shortlist of 50 measured
0.89×, 0.91×, 1.01× and 1.21× exact search's time on the same 1,000 validation documents in four
runs of the same models, so with the old line at 1.0 the run's serving choice flipped between it and
exact search from run to run. Within the margin the simpler option, exact search, is kept. The
run's serving choice and ``mrl-run index``'s tuning share this margin."""


class StampRecord(BaseModel):
    """Which model embedded an index (:class:`~mrl_plugins.embed.ModelStamp`, as the manifest keeps it)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    probe: list[float]


class ProvenanceRecord(BaseModel):
    """Which plugin, distribution and version provided a backend."""

    plugin: str
    distribution: str | None = None
    version: str | None = None


class BackendRecord(BaseModel):
    """The backend that built an index, with the parameters it was built with."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    provided_by: ProvenanceRecord | None = None
    """The plugin, distribution and version whose backend built the index (absent before 0.7.0)."""


class Manifest(BaseModel):
    """An index folder's ``manifest.json``: every key with its type; a folder whose manifest does not
    parse as this is not an index (checked before any model or torch loads). Read once and kept
    typed: an engine's :meth:`~mrl_plugins.components.Engine.open` receives it so (keys an engine
    adds of its own, such as pgvector's ``build_id``, are in ``model_extra``)."""

    model_config = ConfigDict(extra="allow", strict=True)
    format: Literal["mrl-plugins-index"]
    version: int = Field(ge=1)
    created_by: str | None = None
    model: StampRecord | None = None
    full_dim: int = Field(ge=1)
    shortlist_dim: int = Field(ge=1)
    rerank_dim: int = Field(ge=1)
    index: BackendRecord
    count: int = Field(ge=0)
    store_dtype: StoreDtype
    texts: bool = False
    normalised: bool = False
    shortlist: int | None = Field(None, ge=1)
    engine: bool = False
    """The vectors and the shortlist index live in the backend's engine, not in the folder."""
    tuning: dict[str, Any] | None = None
    """What ``mrl-run index`` measured on the corpus and chose (:mod:`mrl_plugins.search.tuning`; 0.9 on)."""


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
class SearchSetting:
    """One way to search a model's vectors: the one type for a search configuration, whether a
    ``funnel`` column measured it, the run's evidence chose it, ``mrl-run index`` builds it or an
    engine's card snippet serves it.

    The ``shortlist`` best candidates by the first ``dim`` dimensions (re-normalised) in the
    ``index`` backend (with ``index_params``), reranked by cosine at ``rerank_dim`` (the full width
    when ``None``) with the vectors stored as ``store``. Without a ``shortlist``, the shortlist
    index's own top k; with no ``index``, exact search (the registry's exact backend): plain
    truncation. Its parameters are its identity; a label is only for people."""

    dim: int
    index: str | None = None
    index_params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    shortlist: int | None = None
    rerank_dim: int | None = None
    store: str = "float32"

    def at(self, dim: int) -> SearchSetting:
        """The same setting at another width."""
        return replace(self, dim=dim)


@dataclass(frozen=True)
class ServingChoice:
    """The run's serving choice, as an engine needs it to write its own serving snippet: the
    setting, the model's full width, and what it kept held out. The setting's parameters read
    through (``choice.dim``, ``choice.shortlist`` …), resolved: the full width for a rerank left
    at it, the exact backend for an index left out."""

    setting: SearchSetting
    full_dim: int
    exact_index: str
    """The registered exact backend, what a setting without an index means."""
    kept: float
    """Share of exact full-width quality kept (held out)."""
    recall: float | None
    """overlap@k with exact full-width search (held out), when measured."""
    k: int

    @property
    def dim(self) -> int:
        return self.setting.dim

    @property
    def shortlist(self) -> int:
        return int(self.setting.shortlist or 0)

    @property
    def rerank_dim(self) -> int:
        return int(self.setting.rerank_dim or self.full_dim)

    @property
    def store(self) -> str:
        return self.setting.store

    @property
    def index(self) -> str:
        """The index backend the run measured it with (a built-in FAISS one, or an engine's)."""
        return self.setting.index or self.exact_index

    @property
    def index_params(self) -> Mapping[str, Any]:
        return dict(self.setting.index_params)


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
