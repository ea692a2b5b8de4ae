"""What the runner hands components and what they hand back: the contexts a recipe is validated,
an objective built, a comparison run and a warm start applied in, a comparison's ``Column`` and
its ``SearchCost``, and the type names they use. The component base classes themselves are in
:mod:`mrl_plugins.components`, which re-exports everything here (import from either).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .data.types import DataBundle, IRSet
from .evaluation.metrics import Metrics, SearchCost

if TYPE_CHECKING:
    import numpy as np

    from .components import IndexBackend
    from .plugins import Registry


TextSide = Literal["all", "documents", "queries"]
"""Which training-side texts: queries (anchors), documents (positives, negatives) or both."""

Role = Literal["query", "document"]
"""Which of a model's prompts to encode with."""


@dataclass
class ValidationContext:
    """What a component may consult while a recipe is validated, before any model loads."""

    recipe_dir: Path
    full_dim: int | None
    """The model's embedding dimension when it can be read from local files, else ``None``."""
    k: int = 10
    """The cut-off of the run's metrics (``[eval] k``)."""
    registry: Registry | None = None
    """Every registered component, e.g. to check an index backend named in a parameter."""
    data: DataBundle | None = None
    """The loaded data, when checks run at the start of a run (or ``mrl-run validate --data``):
    checks that need it (enough training texts to fit a PCA, say) run then, before any training."""
    model_dir: Path | None = None
    """The base model's local folder (its config files), when it is local."""


@dataclass
class ObjectiveContext:
    """What an objective needs to wrap the base loss: the run's dimensions and their weights."""

    dims: list[int]
    weights: list[float] | None
    full_dim: int


@dataclass
class Column:
    """One of several columns a comparison returns, e.g. one per shortlist size.

    ``params`` identify the column within its comparison (``{"shortlist": 100}``): its key in
    results.json is the comparison's identity with these added, and decisions (what to serve,
    the card's code) read them. ``name`` is display only: the label is the comparison's label, a
    space and ``name`` (``MRL · funnel`` + ``100``). A column without ``params`` is identified
    by its name (``column=<name>``).

    ``per_query`` (dimension → metric → one score per evaluation query, in order) is what the
    run's bootstrap intervals and paired tests are computed from. Metrics from the context's
    scorers (``ctx.score``, ``ctx.score_ranked``) carry them already; a plugin that computes its
    own means passes them here, or its column is reported as having no intervals, and why.
    """

    name: str
    metrics: dict[int, Metrics]
    costs: dict[int, SearchCost] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    per_query: dict[int, dict[str, Any]] | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    """What the comparison chose or measured besides metrics (a stopping epoch, a fit time):
    kept in results.json and shown in the report. Not part of the column's identity."""


class ComparisonContext(abc.ABC):
    """What the runner hands a comparison: the run's dimensions, evaluation set and encoders.

    ``mrl_plugins.testing.ArrayComparisonContext`` implements it over plain arrays, for tests.
    """

    dims: list[int]
    """The run's dimensions, descending."""
    eval_set: IRSet
    """The held-out evaluation set the arrays below are aligned with."""
    k: int
    """The cut-off of the run's metrics."""
    exact_index: str
    """The registered exact index backend (``IndexBackend.exact``), the reference of speed ratios."""
    split: Literal["eval", "validation"] = "eval"
    """Which set ``eval_set`` is. The runner calls a comparison's ``run`` once per split, on the
    validation split first (what the run chooses on) and then on the held-out evaluation set
    (what it reports); the same component instance serves both, so a comparison that fits
    something may fit once, choosing what it chooses (a stopping epoch) on validation, and reuse
    it for evaluation. Files it keeps belong to the evaluation pass."""

    @abc.abstractmethod
    def embeddings(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """Full-dimension float32 ``(queries, corpus)`` of the evaluation set for a model this
        comparison :meth:`~Comparison.reads`, encoded once per run."""

    @abc.abstractmethod
    def encode(self, model: str, texts: Sequence[str]) -> np.ndarray:
        """Full-dimension float32 document embeddings of other texts (e.g. to fit on)."""

    @abc.abstractmethod
    def train_texts(self, side: TextSide = "documents") -> list[str]:
        """Distinct training-side texts, never evaluation texts."""

    def unlabelled(self, model: str, limit: int) -> np.ndarray | None:
        """Full-dimension float32 document embeddings of up to ``limit`` unlabelled documents that
        no fitted part of the run saw and no split holds (:meth:`DataBundle.unseen_documents`),
        to grow a corpus with where labels are not needed (recall of the exact top k); ``None``
        when there are none. The default has none."""
        return None

    @abc.abstractmethod
    def score(self, queries: np.ndarray, corpus: np.ndarray) -> dict[int, Metrics]:
        """The run's metrics at every dimension for full-dimension query and corpus arrays
        (each dimension: first ``d`` columns, re-normalised, ranked by cosine)."""

    @abc.abstractmethod
    def score_ranked(self, ranked: Mapping[int, np.ndarray]) -> dict[int, Metrics]:
        """The run's metrics for rankings a comparison made itself: per dimension, a
        ``(queries, ≥ k)`` array of corpus row indices, best first (-1 pads a short list)."""

    @abc.abstractmethod
    def index_backend(self, name: str, params: Mapping[str, Any] | None = None) -> IndexBackend:
        """A registered index backend (``"flat"``, ``"hnsw"``, … or a plugin's), with parameters."""

    @abc.abstractmethod
    def model(self, name: str) -> Any:
        """A model this comparison reads, loaded (a ``SentenceTransformer``), e.g. to save a changed copy."""

    @abc.abstractmethod
    def output_dir(self) -> Path:
        """A folder in the run's output for this comparison's files (e.g. a model it saves)."""

    @abc.abstractmethod
    def train_pairs(self) -> list[tuple[str, str]]:
        """The training rows as (query, relevant document) pairs; empty for scored pairs."""


class TaskScores(dict[int, dict[str, float]]):
    """What :meth:`Task.score <mrl_plugins.components.Task.score>` may return instead of a plain
    dict: the same width → metric → value mapping, plus ``replicates``: per width, the task's main
    metric recomputed on each of ``ctx.resamples(n)``'s bootstrap resamples of its ``n`` items
    (pairs, test texts, clustered texts). The run turns them into 95% intervals and paired tests
    between models (the same resamples for every model, so their replicates pair); a plain dict is
    scored without them."""

    def __init__(self, metrics: Mapping[int, dict[str, float]] | None = None,
                 replicates: Mapping[int, Any] | None = None,
                 validation: Mapping[int, dict[str, float]] | None = None,
                 validation_replicates: Mapping[int, Any] | None = None):
        super().__init__(metrics or {})
        self.replicates: dict[int, Any] = dict(replicates or {})
        self.validation: dict[int, dict[str, float]] = dict(validation or {})
        """Per width, the main metric on a validation part of the items (``ctx.validation_items``),
        the rest being what ``metrics`` and ``replicates`` score: the run then chooses the widths
        that keep 95% / 99% there and reports what they keep held out."""
        self.validation_replicates: dict[int, Any] = dict(validation_replicates or {})
        """Per width, the main metric on each of ``ctx.resamples(n)`` of the ``n`` validation
        items: with them a width is chosen only when it keeps the share beyond noise."""


class TaskContext(abc.ABC):
    """What the runner hands an evaluation task: the run's widths, its seed, where the recipe is,
    and each model's encoder (``mrl_plugins.testkit`` has one over a plain model, for tests)."""

    dims: list[int]
    """The run's dimensions, descending."""
    seed: int
    recipe_dir: Path
    """Relative paths in a task's parameters are relative to this folder."""
    resample_count: int = 2000
    """Bootstrap resamples for a task's intervals (as many as retrieval's)."""

    def resamples(self, n: int) -> np.ndarray:
        """Bootstrap resamples of a task's ``n`` items: ``(resample_count, n)`` indices drawn with
        replacement, seeded by the run's seed and ``n`` only, so that every model of the run gets
        the same resamples and their replicates (:class:`TaskScores`) pair."""
        import numpy

        return numpy.random.default_rng([self.seed, n]).integers(0, n, size=(self.resample_count, n))

    def validation_items(self, n: int, share: float) -> np.ndarray:
        """Which of a task's ``n`` items form its validation part: a boolean mask of
        ``round(share · n)`` items drawn at random, seeded by the run's seed and ``n`` only (the
        same for every model). The run chooses widths on them and reports on the rest."""
        import numpy

        mask = numpy.zeros(n, dtype=bool)
        mask[numpy.random.default_rng([self.seed, n, 1]).permutation(n)[: round(share * n)]] = True
        return mask

    @abc.abstractmethod
    def encode(self, model: str, texts: Sequence[str], role: Role = "document",
               batch_size: int | None = None) -> np.ndarray:
        """Full-dimension float32 embeddings of ``texts`` by one of the run's models (``"base"``,
        ``"mrl"``…), encoded once per run and model (the same texts ask again for free);
        ``batch_size``: the encoder's (default: the run's ``[eval] batch_size``). Padding makes the
        last digits of a vector depend on its batch: a task that must equal another tool's numbers
        encodes in that tool's batches."""


class WarmStartContext(abc.ABC):
    """What the runner hands a warm start: the seed, training-side texts and the model's encoder.

    ``mrl_plugins.testing.TextsWarmStartContext`` implements it over a list of texts, for tests.
    """

    seed: int

    @abc.abstractmethod
    def train_texts(self, side: TextSide = "all") -> list[str]:
        """Distinct training-side texts, never evaluation texts."""

    @abc.abstractmethod
    def encode(self, texts: Sequence[str], role: Role = "document") -> np.ndarray:
        """Full-dimension float32 embeddings by the model being prepared."""
