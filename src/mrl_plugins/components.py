"""Base classes of the components that plugins register (see :mod:`mrl_plugins.hookspecs`).

A component is a class with a ``name``, a pydantic ``Params`` schema for its recipe keys, and
the methods of its kind. The methods a kind cannot work without are abstract, so a component
that lacks one is refused when a recipe naming it is validated (and shown as incomplete by
``mrl-run plugins``), never discovered after training. Keep torch, transformers and datasets
imports inside methods: the classes are imported by ``mrl-run validate`` and ``mrl-run plugins``,
which must stay fast. The contexts components are handed and the ``Column`` a comparison returns
are in :mod:`mrl_plugins.contexts`, re-exported here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict

# re-exported (__all__): plugins import every contract name from this module
from .contexts import (
    Column,
    ComparisonContext,
    ObjectiveContext,
    Role,
    TaskContext,
    TaskScores,
    TextSide,
    ValidationContext,
    WarmStartContext,
)
from .data.types import DataBundle, DataRequest, RowFormat
from .evaluation.metrics import Metrics, SearchCost
from .indexes import (
    Manifest,
    SearchHits,
    SearchIndex,
    SearchSetting,
    ServingChoice,
    ServingSnippet,
    ShortlistIndex,
)

if TYPE_CHECKING:
    import argparse

    import numpy as np
    import torch

    from .embed.job import EmbedJob, ShardTask, ShardVectors


class Params(BaseModel):
    """Base of every component's parameter schema: unknown keys are errors, never ignored."""

    model_config = ConfigDict(extra="forbid")


_Params = Params


def model_field(default: str, *, description: str, besides: tuple[str, ...] = ()) -> Any:
    """A parameter that names a model: a folder (relative to the recipe) or a Hub id. The recipe
    resolves it as it resolves ``[model]`` and checks it at ``mrl-run validate`` (its weights, or
    the Hub), and the component receives the resolved location; ``besides`` are values that name no
    model (``"self"``). E.g. ``guide: str = model_field("self", besides=("self",), description=…)``."""
    from pydantic import Field

    return Field(default, description=description, json_schema_extra={"model_name": True, "besides": list(besides)})


P = TypeVar("P", bound=Params)
"""A component's parameter schema: ``class Funnel(Comparison[FunnelParams])`` types ``self.params``."""


class Component(abc.ABC, Generic[P]):
    """Common base: ``name`` is what recipes use; ``Params`` validates the component's keys.

    Generic in its parameter schema, so a plugin's ``self.params.x`` is checked by a type checker:
    ``class MySource(DataSource[MyParams])`` with ``Params = MyParams``."""

    name: ClassVar[str]
    Params: ClassVar[type[_Params]] = _Params
    params: P
    provided_by: Mapping[str, Any] | None = None
    """Set by the registry when it builds the component: ``{"plugin", "distribution",
    "version"}`` of what registered it (an index records it in its manifest)."""

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

    def card_metadata(self) -> Mapping[str, Any]:
        """Model-card front matter this source contributes to a published model: any of
        ``datasets`` (Hub dataset ids), ``license`` (of the data, an SPDX-like id the Hub
        knows), ``language`` (codes) and ``tags``. Recorded in results.json
        (``data.card``); ``mrl-run publish`` writes it beside ``base_model``. Default: none."""
        return {}


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


class Objective(Component[P]):
    """How the prefix dimensions are trained around the base loss (MatryoshkaLoss and friends)."""

    def label(self) -> str:
        """How reports name a model trained with it (``MRL`` for the default ``matryoshka``)."""
        return self.name

    @abc.abstractmethod
    def build(self, model: Any, loss: torch.nn.Module, ctx: ObjectiveContext) -> torch.nn.Module:
        """The training loss: ``loss`` (the recipe's base loss) wrapped to train the prefixes."""


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

    def task_transform(self, ctx: ComparisonContext) -> Callable[[np.ndarray], np.ndarray] | None:
        """For the ``[[task]]`` evaluations: how this comparison's (first) column turns full-width
        float32 embeddings of any text by the model it reads into its own, before truncation (a
        PCA projection, an adaptor), or None (default): the column is not scored on tasks.
        Called once after :meth:`run` on the evaluation pass, with the same context."""
        return None

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


class WarmStart(Component[P]):
    """Changes the model before Matryoshka training starts; the change is saved with it."""

    def label(self) -> str:
        """How reports name the warm-started model: ``MRL + <label>``."""
        return self.name

    @abc.abstractmethod
    def apply(self, model: Any, ctx: WarmStartContext) -> dict[str, Any]:
        """Modify ``model`` in place; return facts for results.json."""


class IndexBackend(Component[P]):
    """A search engine for shortlists of truncated vectors: creates and loads indexes.

    Two class attributes tell the core what a backend is, so that nothing in the core names a
    built-in one: ``exact`` (its search is exhaustive float32 inner product, the reference of
    every speed ratio and the plain truncation) and ``quantized`` (what ``mrl-run index --index
    NAME --quantize PRECISION`` builds instead).

    A backend of this class builds a *shortlist* index (:meth:`create`, :meth:`load`); the core's
    :class:`~mrl_plugins.search.FunnelIndex` holds the full vectors beside it and reranks
    (:func:`mrl_plugins.search.funnel_index` builds one over any backend, and
    :func:`mrl_plugins.search.open_funnel` reopens it). An engine that stores the vectors and
    reranks inside one query derives from :class:`Engine` instead and returns the whole funnel from
    its own :meth:`Engine.funnel` and :meth:`Engine.open`. The contract names no implementation:
    which of the two builds a funnel is the core's decision, not a default method here.
    """

    exact: ClassVar[bool] = False
    """Exhaustive float32 search: results equal to a brute-force inner product."""
    quantized: ClassVar[Mapping[str, tuple[str, Mapping[str, Any]]]] = {}
    """Precision → (backend, parameters) holding this backend's vectors at that precision, e.g.
    ``{"int8": ("hnsw", {"storage": "int8"})}`` for HNSW."""
    stores: ClassVar[frozenset[str]] = frozenset({"float32", "float16", "int8"})
    """The dtypes of rerank vectors (``--store``, a funnel's ``store``) the backend can hold."""
    fast_dims: ClassVar[tuple[int, ...]] = ()
    """Widths this backend searches markedly faster than their neighbours (``binary``: 128, 256
    and 512, codes of 16, 32 and 64 bytes, which FAISS scans with dedicated kernels): ``mrl-run
    index`` tunes at them too, besides the model's Matryoshka widths (those below the full width)."""

    @abc.abstractmethod
    def create(self, dim: int) -> ShortlistIndex:
        """An empty index for vectors of ``dim`` dimensions."""

    @abc.abstractmethod
    def load(self, path: Path, dim: int) -> ShortlistIndex:
        """The index :meth:`ShortlistIndex.save` wrote to ``path``."""

    @classmethod
    def serving_snippet(cls, choice: ServingChoice, measured: Mapping[str, Any]) -> ServingSnippet | None:
        """The model card's snippet for serving ``choice`` in this engine (e.g. the SQL of a
        database), or ``None`` (the default: the card's Python snippet covers the in-process
        funnel). ``measured`` maps the run's search columns measured by this backend (key →
        ``{"dim", "shortlist", "kept", "recall", "params"}``) so the snippet can cite them."""
        return None

    def discard(self, folder: Path, manifest: Manifest) -> None:
        """Remove what a saved index keeps outside its folder (an engine's table) before the folder
        is replaced; default: nothing, everything is in the folder."""


class Executor(Component[P]):
    """Runs ``mrl-run embed``'s encoding: shard texts in, shard vectors out, in this process
    (``local``, built in: one device, or sentence-transformers' multi-process pool over several),
    or on a cluster (``ray`` in ``plugins/mrl-ray``, ``spark`` in ``plugins/mrl-spark``; a Dask
    one the same way). The core reads and checks the corpus, writes each shard's texts, and writes, records and checks
    the vectors an executor yields, so every executor leaves the same shards and manifest.
    ``mrl-run embed --executor NAME`` picks one; ``--executor-param KEY=VALUE`` sets its
    parameters (``--processes``, ``--devices`` and ``--address`` are shorthands for the
    parameters of those names)."""

    @abc.abstractmethod
    def embed(self, job: EmbedJob, tasks: Sequence[ShardTask],
              progress: Callable[[int], None]) -> Iterator[tuple[ShardTask, ShardVectors]]:
        """Embed every task's texts (read them with :func:`~mrl_plugins.executors.shard_texts`,
        encode them with :meth:`~mrl_plugins.executors.EmbedJob.encode`) and yield each task
        with its vectors, in any order, as soon as it is done; call ``progress(n)`` as ``n``
        more texts are embedded. ``model`` work happens here: load it with
        :meth:`~mrl_plugins.executors.EmbedJob.load_model` where the work runs."""

    def describe(self) -> str:
        """How the work is spread, for the console (e.g. "2 processes on cpu")."""
        return self.name


class Engine(IndexBackend[P]):
    """An index backend that owns the whole funnel: it stores the full vectors, builds its own
    shortlist index and reranks inside its own query (a database with vector search). It
    implements :meth:`funnel` and :meth:`open` (and usually :meth:`discard`); it has no separate
    shortlist index, so :meth:`create` and :meth:`load` are not used."""

    def create(self, dim: int) -> ShortlistIndex:
        raise TypeError(f"index engine '{self.name}' holds the whole funnel; use funnel(), not create()")

    def load(self, path: Path, dim: int) -> ShortlistIndex:
        raise TypeError(f"index engine '{self.name}' holds the whole funnel; use open(), not load()")

    @abc.abstractmethod
    def funnel(self, full_dim: int, shortlist_dim: int, *, rerank_dim: int | None = None,
               store_dtype: str = "float32", model: Any = None, replace: bool = False) -> SearchIndex:
        """An empty funnel index held by the engine: shortlist at ``shortlist_dim``, rerank at
        ``rerank_dim`` (default: full) with vectors stored as ``store_dtype``; ``model`` is the
        :class:`~mrl_plugins.embed.ModelStamp` of the vectors; ``replace`` allows the engine to
        replace what it already holds under the same name (``mrl-run index --overwrite``)."""

    @abc.abstractmethod
    def open(self, folder: Path, manifest: Manifest, *, mmap: bool = True) -> SearchIndex:
        """The saved index ``folder`` names (its manifest, read and checked, says where the
        engine holds it)."""


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


class Task(Component[P]):
    """An evaluation beyond retrieval: its own data, scored for each of the run's models at every
    width from embeddings encoded once (truncated to each width and re-normalised)."""

    metric: ClassVar[str]
    """The key of the main metric in what :meth:`score` returns (``"spearman"``): the one the
    report's retention is the share of."""
    title: ClassVar[str] = ""
    """How the report names the task (``"Semantic similarity"``); the name when empty."""

    def label(self) -> str:
        """How the report and ``results.json`` name this use of the task (a file name, say)."""
        return self.title or self.name

    def key(self) -> str:
        """Its key in ``results.json``'s ``tasks`` (``mteb:STS12``): the name unless a task says
        more; ``#2``, ``#3``… are added when a recipe uses the same key twice."""
        return self.name

    @abc.abstractmethod
    def score(self, ctx: TaskContext, model: str) -> dict[int, dict[str, float]]:
        """The task's metrics for ``model`` (a model of the run) at every width of ``ctx.dims``:
        width → metric key → value. Encode with ``ctx.encode`` (once per text and model). Return a
        :class:`TaskScores` (a dict too) with bootstrap replicates of the main metric over
        ``ctx.resamples(n)`` for intervals and paired tests."""


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
        Kind("executor", "register_executors", Executor, "executor"),
        Kind("task", "register_tasks", Task, "evaluation task"),
    )
}


__all__ = [
    "KINDS", "Column", "Command", "Comparison", "ComparisonContext", "Component", "Control", "DataSource",
    "DimSchedule", "Engine", "Executor", "IndexBackend", "Kind", "Loss", "Manifest", "Metrics", "Objective",
    "ObjectiveContext", "ParamInfo", "Params", "Role", "SearchCost", "SearchHits", "SearchIndex", "SearchSetting",
    "ServingChoice", "ServingSnippet", "ShortlistIndex", "Task", "TaskContext", "TaskScores", "TextSide",
    "ValidationContext", "Variant", "WarmStart",
    "WarmStartContext", "missing_methods", "model_field", "param_infos",
]
