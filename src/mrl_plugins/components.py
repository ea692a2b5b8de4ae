"""Base classes of the components that plugins register (see :mod:`mrl_plugins.hookspecs`).

A component is a class with a ``name``, a pydantic ``Params`` schema for its recipe keys, and
the methods of its kind. The methods a kind cannot work without are abstract, so a component
that lacks one is refused when a recipe naming it is validated (and shown as incomplete by
``mrl-run plugins``), never discovered after training. Keep torch, transformers and datasets
imports inside methods: the classes are imported by ``mrl-run validate`` and ``mrl-run plugins``,
which must stay fast.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict

from .data import DataBundle, DataRequest, IRSet, RowFormat

if TYPE_CHECKING:
    import argparse

    import numpy as np
    import torch

    from .plugins import Registry

Metrics = dict[str, float]
"""One dimension's scores, e.g. ``{"mrr@10": 0.81, "recall@10": 0.93, "ndcg@10": 0.84}``."""

TextSide = Literal["all", "documents", "queries"]
"""Which training-side texts: queries (anchors), documents (positives, negatives) or both."""

Role = Literal["query", "document"]
"""Which of a model's prompts to encode with."""


class Params(BaseModel):
    """Base of every component's parameter schema: unknown keys are errors, never ignored."""

    model_config = ConfigDict(extra="forbid")


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


_Params = Params
P = TypeVar("P", bound=Params)
"""A component's parameter schema: ``class Funnel(Comparison[FunnelParams])`` types ``self.params``."""


class Component(abc.ABC, Generic[P]):
    """Common base: ``name`` is what recipes use; ``Params`` validates the component's keys.

    Generic in its parameter schema, so a plugin's ``self.params.x`` is checked by a type checker:
    ``class MySource(DataSource[MyParams])`` with ``Params = MyParams``."""

    name: ClassVar[str]
    Params: ClassVar[type[_Params]] = _Params
    params: P

    def __init__(self, params: P | None = None):
        self.params = params if params is not None else cast(P, self.Params())

    def check(self, ctx: ValidationContext) -> list[str]:
        """Problems the schema cannot see (a missing file, a dimension above the model's)."""
        return []

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring: what ``mrl-run plugins`` shows."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class DataSource(Component[P]):
    """Produces training rows and a leakage-free IR evaluation set."""

    produces: ClassVar[tuple[RowFormat | str, ...]]
    """Row formats this source can produce, preferred first."""

    def formats(self) -> tuple[RowFormat, ...]:
        """Row formats for these parameters (default: ``produces``)."""
        return tuple(RowFormat(f) for f in self.produces)

    @abc.abstractmethod
    def load(self, request: DataRequest) -> DataBundle:
        """Training rows in ``request.row_format`` and the evaluation set."""


class Loss(Component[P]):
    """Builds a sentence-transformers base loss; the runner wraps it in MatryoshkaLoss."""

    accepts: ClassVar[tuple[RowFormat | str, ...]]
    """Row formats this loss trains on, preferred first."""
    batch_sampler: ClassVar[str] = "batch_sampler"
    """The trainer's batch sampler: ``"no_duplicates"`` for in-batch-negative losses."""

    @abc.abstractmethod
    def build(self, model: Any) -> torch.nn.Module:
        """The sentence-transformers loss for ``model``."""


class DimSchedule(Component[P]):
    """Chooses the Matryoshka dimensions, descending and starting at the full dimension."""

    @abc.abstractmethod
    def dims(self, full_dim: int) -> list[int]:
        """Descending dimensions, starting at ``full_dim``."""

    def weights(self, dims: list[int]) -> list[float] | None:
        """Loss weight per dimension, or ``None`` for equal weights."""
        return None


@dataclass(frozen=True)
class Variant:
    """An extra model a comparison needs trained, e.g. the control run without MatryoshkaLoss.

    ``key`` joins the run's model namespace (so other comparisons may read it, and
    ``mrl-run validate`` knows it exists); ``label`` is how tables, plots and the model card
    name it. The runner trains every variant in its training stage (on every rank under
    torchrun) with the recipe's data, loss and training settings, and its warm start only if
    ``warm_start`` (``True``), or a named one. ``objective`` is how its prefixes are trained: the recipe's own objective
    (``None``), ``"none"`` (the base loss alone, as the ``no-mrl`` control), or a registered
    objective's name with its default parameters; ``matryoshka=False`` means ``"none"``.
    """

    key: str
    label: str | None = None
    matryoshka: bool = True
    warm_start: bool | str = False
    """``True``: the recipe's warm start; a name: that warm start with its default parameters."""
    objective: str | None = None

    @property
    def resolved_objective(self) -> str:
        """``"recipe"``, ``"none"`` or an objective's name."""
        return self.objective or ("recipe" if self.matryoshka else "none")


@dataclass
class ObjectiveContext:
    """What an objective needs to wrap the base loss: the run's dimensions and their weights."""

    dims: list[int]
    weights: list[float] | None
    full_dim: int


class Objective(Component[P]):
    """How the prefix dimensions are trained around the base loss (MatryoshkaLoss and friends)."""

    def label(self) -> str:
        """How reports name a model trained with it (``MRL`` for the default ``matryoshka``)."""
        return self.name

    @abc.abstractmethod
    def build(self, model: Any, loss: torch.nn.Module, ctx: ObjectiveContext) -> torch.nn.Module:
        """The training loss: ``loss`` (the recipe's base loss) wrapped to train the prefixes."""


class SearchCost(BaseModel):
    """What searching one configuration costs, per vector and per query.

    Memory is what the shortlist index holds in RAM; the full-dimension vectors a funnel reranks
    with are read for the shortlist only and may stay on disk (memory-mapped), so they are
    counted apart. Times are medians measured in the same run, interleaved with exact
    full-dimension float32 search, whose time is the denominator of the ratios.
    """

    index_bytes: float
    """Bytes per vector held in memory by the shortlist index."""
    rerank_bytes: float = 0.0
    """Bytes per vector of the vectors read to rerank (0 without reranking)."""
    ms_single: float
    """Median milliseconds per query, one query at a time."""
    ms_batch: float
    """Milliseconds per query when all queries are searched in one batch."""
    ratio_single: float
    """``ms_single`` / the same for exact full-dimension float32 search (lower is faster)."""
    ratio_batch: float


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


class Comparison(Component[P]):
    """A post-hoc method scored at the run's dimensions next to the fine-tuned model."""

    def reads(self) -> list[str]:
        """The models whose embeddings this comparison reads: keys of the run's models
        (``"base"``, ``"mrl"``, a variant key) or other model ids/paths. ``mrl-run validate``
        refuses a key the run will not have. Default: the ``model`` parameter, if any."""
        model = getattr(self.params, "model", None)
        return [model] if isinstance(model, str) else []

    def label(self, models: Mapping[str, str]) -> str:
        """How tables, plots and the model card name this column; ``models`` maps every model
        key to its label (other model ids map to themselves)."""
        read = self.reads()
        return f"{models[read[0]]} · {self.name}" if read else self.name

    def variants(self) -> list[Variant]:
        """Models to train for this comparison (default: none)."""
        return []

    measured_with: ClassVar[frozenset[str]] = frozenset()
    """Parameters that say how the comparison is measured or where it writes (timing queries,
    whether to save a model), not what it is: left out of its identity."""

    def identity(self) -> dict[str, Any]:
        """The parameters that identify this comparison's column(s), beside the models it reads:
        every parameter that differs from its default, except ``model`` (it is in the reads) and
        :attr:`measured_with`. Its key in results.json and its folder derive from these and its
        name (``adaptor(mrl, kind=mlp)``), never from its label."""
        out: dict[str, Any] = {}
        dumped = self.params.model_dump(mode="json")
        for name, info in type(self.params).model_fields.items():
            if name == "model" or name in self.measured_with:
                continue
            if info.is_required() or dumped[name] != _json(info.get_default(call_default_factory=True)):
                out[name] = dumped[name]
        return out

    @abc.abstractmethod
    def run(self, ctx: ComparisonContext) -> dict[int, Metrics] | list[Column]:
        """Metrics at each of ``ctx.dims`` (one column), or several :class:`Column` s."""


class Control(Comparison[P]):
    """A comparison that adds a model to the run, e.g. the same training without MatryoshkaLoss.

    Its :meth:`variant` is trained like the MRL model and joins the run's models; its column
    in every table is that model, under the variant's key and label (not ``compare:…``).
    """

    @abc.abstractmethod
    def variant(self) -> Variant:
        """The model to train."""

    def variants(self) -> list[Variant]:
        return [self.variant()]

    def reads(self) -> list[str]:
        return [self.variant().key]

    def label(self, models: Mapping[str, str]) -> str:
        return models[self.variant().key]

    def run(self, ctx: ComparisonContext) -> dict[int, Metrics]:
        return ctx.score(*ctx.embeddings(self.variant().key))


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


class WarmStart(Component[P]):
    """Changes the model before Matryoshka training starts; the change is saved with it."""

    def label(self) -> str:
        """How reports name the warm-started model: ``MRL + <label>``."""
        return self.name

    @abc.abstractmethod
    def apply(self, model: Any, ctx: WarmStartContext) -> dict[str, Any]:
        """Modify ``model`` in place; return facts for results.json."""


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


class IndexBackend(Component[P]):
    """A search engine for shortlists of truncated vectors: creates and loads indexes.

    Two class attributes tell the core what a backend is, so that nothing in the core names a
    built-in one: ``exact`` (its search is exhaustive float32 inner product, the reference of
    every speed ratio and the plain truncation) and ``quantized`` (what ``mrl-run index --index
    NAME --quantize PRECISION`` builds instead).
    """

    exact: ClassVar[bool] = False
    """Exhaustive float32 search: results equal to a brute-force inner product."""
    quantized: ClassVar[Mapping[str, tuple[str, Mapping[str, Any]]]] = {}
    """Precision → (backend, parameters) holding this backend's vectors at that precision, e.g.
    ``{"int8": ("hnsw", {"storage": "int8"})}`` for HNSW."""

    @abc.abstractmethod
    def create(self, dim: int) -> ShortlistIndex:
        """An empty index for vectors of ``dim`` dimensions."""

    @abc.abstractmethod
    def load(self, path: Path, dim: int) -> ShortlistIndex:
        """The index :meth:`ShortlistIndex.save` wrote to ``path``."""


class Command(Component[P]):
    """A subcommand of ``mrl-run``. The built-in ones (``run``, ``validate``, ``index`` …) are
    registered through ``register_commands`` exactly like a plugin's, so a plugin adds one the
    same way. ``name`` is the subcommand; the first line of the docstring is its help."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the subcommand's arguments on its own parser (default: none)."""

    @abc.abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Do it; return the exit code. Raise ``UserError`` for a mistake of the user's: the CLI
        prints its one paragraph and exits with its code, without a traceback."""


def _json(value: Any) -> Any:
    """A default as ``model_dump(mode="json")`` writes it (tuples as lists, enums as values)."""
    import json

    return json.loads(json.dumps(value, default=lambda v: getattr(v, "value", str(v))))


def missing_methods(cls: type[Component]) -> list[str]:
    """The abstract methods a component class still lacks (empty when it is complete)."""
    return sorted(getattr(cls, "__abstractmethods__", ()))


@dataclass(frozen=True)
class ParamInfo:
    """One recipe key of a component, as ``mrl-run plugins -v`` shows it."""

    name: str
    type: str
    default: str
    description: str


def param_infos(cls: type[Component]) -> list[ParamInfo]:
    """The recipe keys of a component, from its ``Params`` schema."""
    import json

    def type_name(annotation: Any) -> str:
        if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
            return annotation.__name__
        return str(annotation).replace("typing.", "")

    infos = []
    for name, f in cls.Params.model_fields.items():
        if f.is_required():
            default = "required"
        else:
            value = f.get_default(call_default_factory=True)
            default = "none" if value is None else json.dumps(value, ensure_ascii=False)
        infos.append(ParamInfo(name, type_name(f.annotation), default, f.description or ""))
    return infos


@dataclass(frozen=True)
class Kind:
    """A component kind: its recipe table, its hook, its base class and the noun for messages."""

    key: str
    hook: str
    base: type[Component]
    noun: str


KINDS: dict[str, Kind] = {
    k.key: k
    for k in (
        Kind("data", "register_data_sources", DataSource, "data source"),
        Kind("loss", "register_losses", Loss, "loss"),
        Kind("dims", "register_dim_schedules", DimSchedule, "dimension schedule"),
        Kind("compare", "register_comparisons", Comparison, "comparison"),
        Kind("warm_start", "register_warm_starts", WarmStart, "warm start"),
        Kind("index", "register_index_backends", IndexBackend, "index backend"),
        Kind("objective", "register_objectives", Objective, "training objective"),
        Kind("command", "register_commands", Command, "command"),
    )
}
