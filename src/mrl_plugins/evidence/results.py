"""The schema of ``results.json``: what one run measured, read by the report, the model card,
the CLI and the tests through attributes, never by spelling keys.

Metric names and the retention thresholds are defined here once. Every column has a key derived
from what it *is* (:func:`column_key`: the component, the models it reads and the parameters
that identify it), never from its display label, so renaming a label changes no key, folder or
decision; what a column was measured with is in ``ModelResult.params``. The JSON layout is the
one earlier versions wrote, plus ``schema_version``; :meth:`RunResults.load` upgrades an older
file in memory (:mod:`.upgrade`, which keeps the schema's history), so an older run can still be
published or re-reported. Add a field with a default and bump
:data:`~mrl_plugins.evidence.upgrade.SCHEMA_VERSION` when the layout changes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import UserError
from ..evaluation.metrics import ENCODE_SPEEDUP, METRICS, OVERLAP, Metric, SearchCost, overlap_key
from .upgrade import SCHEMA_VERSION, upgrade

BASE, MRL, MRL_PLAIN = "base", "mrl", "mrl-plain"
"""The keys of the run's own models in every results file: the base model, the MRL model and, with
a warm start, the same training without it (:mod:`mrl_plugins.recipe.run_models` plans the rest)."""

PRIMARY = Metric.MRR
"""The metric that recommendations (smallest dimension keeping a share) are based on."""
KEEP_SHARES: tuple[float, ...] = (0.99, 0.95)
"""Retention thresholds: the smallest dimension keeping this share of full-dimension quality."""


RESULTS_FILE = "results.json"


def share_label(share: float) -> str:
    """How a share is printed and how files written for people and tools spell it: ``99%``."""
    return f"{round(share * 100)}%"


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def column_key(component: str, reads: Sequence[str], params: Mapping[str, Any]) -> str:
    """A column's identity: ``funnel(mrl, shortlist=100)``, ``pca(base)``,
    ``quantize(mrl, precision=binary, rescore=true)``. The component's name, the models it reads,
    and the parameters that identify it (sorted; a comparison leaves out those at their defaults
    and those that only say how it is measured, see ``Comparison.identity``)."""
    parts = [*reads, *(f"{k}={_param_text(v)}" for k, v in sorted(params.items()))]
    return f"{component}({', '.join(parts)})"


def _key_parts(key: str) -> tuple[str, list[str], dict[str, str]] | None:
    """``funnel(mrl, index=binary, shortlist=200)`` → ``("funnel", ["mrl"], {"index": "binary",
    "shortlist": "200"})``; ``None`` for a key that is not of :func:`column_key`'s form."""
    name, paren, inner = key.partition("(")
    if not paren or not inner.endswith(")"):
        return None
    parts = [p for p in inner[:-1].split(", ") if p]
    reads = [p for p in parts if "=" not in p]
    return name, reads, dict(p.split("=", 1) for p in parts if "=" in p)


def makes_column(comparison_key: str, column: str) -> bool:
    """Whether the comparison keyed ``comparison_key`` can make the column keyed ``column``: the
    comparison's own key (one column without parameters of its own), or a column that adds or
    replaces parameters of its own (``funnel(mrl, index=binary, shortlist=[200])`` makes
    ``funnel(mrl, index=binary, shortlist=200)``, :func:`column_key` over the comparison's identity
    and the column's parameters): the same component and models, every parameter of the
    comparison's identity named."""
    if column == comparison_key:
        return True
    ours, theirs = _key_parts(comparison_key), _key_parts(column)
    if ours is None or theirs is None:
        return False
    return ours[:2] == theirs[:2] and set(ours[2]) <= set(theirs[2])


class _Schema(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer minor field survives a round trip


class ModelInfo(_Schema):
    name: str
    origin: str
    full_dim: int


class DataInfo(_Schema):
    source: str
    row_format: str
    train_rows: int
    eval_queries: int
    corpus: int
    summary: dict[str, Any] = Field(default_factory=dict)
    validation_queries: int = 0
    """Queries of the validation split every choice was made on (0: none; choices were made on the
    evaluation set)."""
    validation_corpus: int = 0
    validation_from: dict[str, int] = Field(default_factory=dict)
    """Where the validation queries came from (``spare`` rows of the source, ``training`` rows) and,
    since schema 5, its distractors (``distractors_from_spare``, ``distractors_from_training``: rows
    held out for them) and the corpus size asked for (``corpus_asked``)."""
    validation_near_duplicates: dict[str, Any] | None = None
    """The same near-copy check as ``near_duplicates``, of the validation split against training."""
    near_duplicates: dict[str, Any] | None = None
    """Evaluation queries and relevant documents with a near-copy in training
    (``mrl_plugins.data.find_near_duplicates``: threshold, counts, examples); ``None`` before 0.7.0."""
    card: dict[str, Any] = Field(default_factory=dict)
    """Model-card front matter the data source contributed (``DataSource.card_metadata``)."""


class TrainingFacts(_Schema):
    steps: int
    world_size: int = 1
    matryoshka: bool = True
    resumed_from: str | None = None
    warm_start: dict[str, Any] | None = None
    objective: str | None = None
    seed: int | None = None
    losses: list[tuple[int, float]] = Field(default_factory=list)
    """(step, training loss) as the trainer logged it."""
    curve: list[dict[str, Any]] = Field(default_factory=list)
    """Validation scores during training (``[validation] eval_steps``): ``{"step": n, "mrr@10":
    {dim: value}}`` per point."""


class ModelResult(_Schema):
    """One column of the tables: a model of the run, or a comparison applied to one."""

    key: str = ""
    label: str
    kind: Literal["model", "comparison", "seed"]
    component: str | None = None
    reads: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    """What the column was measured with: the comparison's parameters and its column's own (a
    funnel's ``shortlist``, a quantisation's ``precision``); decisions read these, never labels."""
    metrics: dict[int, dict[str, float]]
    """dimension → metric key (``mrr@10``) → value."""
    costs: dict[int, SearchCost] | None = None
    """dimension → what searching this way costs (memory per vector, query time)."""
    intervals: dict[int, dict[str, tuple[float, float]]] | None = None
    """dimension → metric key → 95% bootstrap interval over queries."""
    p_vs_mrl: dict[int, dict[str, float]] | None = None
    """dimension → metric key → paired p-value of the difference from the MRL model's column."""
    no_intervals: str | None = None
    """Why the column has no intervals or tests (its plugin returned means without per-query scores)."""
    saved_model: str | None = None
    """The model this column saved in the run's output (e.g. an adapted model), relative to it."""
    facts: dict[str, Any] = Field(default_factory=dict)
    """What the comparison chose or measured besides metrics (the adaptor's stopping epoch, chosen
    on validation, and its fit time), for the report."""


class TaskDelta(_Schema):
    """One model against the base model at one width of a task: the difference of the main metric
    and a two-sided paired bootstrap p-value (the share of resamples on the other side of zero,
    doubled)."""

    delta: float
    p: float


class TaskChoice(_Schema):
    """The smallest width keeping a share of a model's full-width score on a task's validation
    part, beyond noise (a paired bootstrap test over resamples of the validation items)."""

    width: int
    by_mean: int
    """The smallest width keeping the share on average there."""
    p: float | None = None
    """When ``by_mean`` is smaller than ``width``: its test against the share (within noise)."""


class TaskResult(_Schema):
    """One ``[[task]]`` of the run (an evaluation beyond retrieval): its scores for each model of
    the run at every width."""

    name: str
    """The task component (``similarity``, ``classification``, ``clustering``, a plugin's)."""
    label: str
    """How the report names this use of it (its title and file)."""
    metric: str
    """The key of its main metric in ``scores`` (what retention is the share of)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Its recipe table, every default filled in."""
    scores: dict[str, dict[int, dict[str, float]]]
    """Model key (``base``, ``mrl``…) → width → metric key → value."""
    plugin: str | None = None
    intervals: dict[str, dict[int, tuple[float, float]]] = Field(default_factory=dict)
    """Model → width → 95% bootstrap interval of the main metric (tasks that return replicates;
    empty for those that do not, and in older files)."""
    kept: dict[str, dict[int, tuple[float, float]]] = Field(default_factory=dict)
    """Model → width → 95% interval of the share of the model's own full-width score it keeps
    (the ratio on each resample: both widths see the same resampled items)."""
    versus_base: dict[str, dict[int, TaskDelta]] = Field(default_factory=dict)
    """Each trained model → width → its difference from the base model, paired over resamples."""

    validation: dict[str, dict[int, float]] = Field(default_factory=dict)
    """Model → width → the main metric on the task's validation part (a task given a
    ``validation`` share): the widths that keep 95% / 99% are chosen there, and ``scores`` are the
    rest of the items, held out."""

    chosen: dict[str, dict[str, TaskChoice]] = Field(default_factory=dict)
    """Model → share (``"95%"``) → the width chosen on the validation part with a margin."""

    def smallest_keeping(self, model: str, share: float) -> int | None:
        """The smallest width whose main metric is at least ``share`` of ``model``'s own full-width
        score: chosen on the validation part beyond noise when the task has one (:attr:`chosen`),
        else read off the scored items (``kept`` has the interval); None when the full width scores 0."""
        if share_label(share) in self.chosen.get(model, {}):
            return self.chosen[model][share_label(share)].width
        by_dim = self.validation.get(model) or {d: m[self.metric] for d, m in self.scores[model].items()}
        top = by_dim[max(by_dim)]
        enough = [d for d in by_dim if top and by_dim[d] >= share * top - 1e-12]
        return min(enough) if enough else None


class PairedTest(_Schema):
    """The recommended column at one width against another column, paired over the evaluation queries."""

    dim: int
    column: str
    against: str
    role: Literal["plain MRL", "strongest alternative"]
    delta: float
    """``column`` minus ``against``, :data:`PRIMARY` metric."""
    p: float


class ChoiceCheck(_Schema):
    """One choice the run made on validation, measured held out: did it hold?"""

    choice: str
    """What was chosen: ``width ≥ 99%``, ``to serve``, ``publish at 96``, ``adaptor at 48`` …"""
    chosen: str
    """The option chosen, as the report names it."""
    held_out: float
    """Its held-out :data:`PRIMARY` score (for a width or a serving setting: the share of exact
    full-width quality it keeps)."""
    alternative: str | None = None
    """The best option the run had, held out (for a width or a setting: the one that keeps the
    share held out at least cost), when it is another."""
    alternative_held_out: float | None = None
    delta: float | None = None
    """Chosen minus alternative (for a width or a setting: its per-query score minus the share of
    exact), on the held-out queries."""
    p: float | None = None
    """The paired sign-flip test of ``delta``."""
    holds: bool = True
    """``False`` when the choice is significantly worse held out than the alternative (or keeps
    significantly less than the share it was chosen for)."""


class PublishInfo(_Schema):
    truncate_dim: int | None = None
    recommended_dims: dict[str, int] = Field(default_factory=dict)
    repo_id: str | None = None
    revision: str | None = None
    commit_url: str | None = None


class ColumnReading:
    """The questions every reader asks of a set of scored columns (``models``, ``dims``, ``k``):
    a value, what a width keeps, the smallest width keeping a share, which columns go in which
    table. :class:`RunResults` answers them of its evaluation columns; :class:`ScoredColumns` of
    one set, as :meth:`RunResults.scored` gives it."""

    if TYPE_CHECKING:  # declared by each reader (pydantic must not take them for fields of its own)
        models: Mapping[str, ModelResult]
        dims: list[int]
        k: int

    @property
    def full_dim(self) -> int:
        return self.dims[0]

    def metric_key(self, metric: Metric) -> str:
        return metric.key(self.k)

    def value(self, model: str, dim: int, metric: Metric = PRIMARY) -> float:
        return self.models[model].metrics[dim][metric.key(self.k)]

    def retention(self, model: str, dim: int, metric: Metric = PRIMARY) -> float | None:
        """The share of the same model's full-dimension score kept at ``dim``."""
        top = self.value(model, self.full_dim, metric)
        return self.value(model, dim, metric) / top if top else None

    def smallest_dim_keeping(self, model: str, share: float, metric: Metric = PRIMARY) -> int | None:
        """The smallest dimension whose score is at least ``share`` of the full-dimension score."""
        full = self.value(model, self.full_dim, metric)
        keeping = [d for d in self.dims if full and self.value(model, d, metric) >= share * full]
        return min(keeping) if keeping else None

    def quality_columns(self) -> dict[str, ModelResult]:
        """The columns of the per-metric tables: the run's models and comparisons without costs."""
        return {key: m for key,
                m in self.models.items() if m.kind == "model" or (m.kind == "comparison" and m.costs is None)}

    def interval(self, model: str, dim: int, metric: Metric = PRIMARY) -> tuple[float, float] | None:
        iv = self.models[model].intervals
        if not iv:
            return None
        low, high = iv[dim][metric.key(self.k)]
        return low, high

    def p_value(self, model: str, dim: int, metric: Metric = PRIMARY) -> float | None:
        p = self.models[model].p_vs_mrl
        return p[dim][metric.key(self.k)] if p else None

    def search_columns(self) -> dict[str, ModelResult]:
        """The columns with search costs: each model's plain truncation and every search
        configuration (funnels, quantisation), for the quality-versus-cost section."""
        return {key: m for key, m in self.models.items() if m.costs}



Split = Literal["evaluation", "validation"]


@dataclass(frozen=True)
class ScoredColumns(ColumnReading):
    """The columns a run scored on one set: its held-out evaluation set, or the validation split
    every choice is made on (:func:`mrl_plugins.evidence.decisions.basis`)."""

    split: Split
    models: Mapping[str, ModelResult]
    dims: list[int]
    k: int


class RunResults(ColumnReading, _Schema):
    """Everything one run measured. ``models`` keeps the table order: the run's models first."""

    schema_version: int = SCHEMA_VERSION
    name: str
    model: ModelInfo
    dims: list[int]
    weights: list[float] | None = None
    k: int = 10
    device: str
    data: DataInfo
    train: dict[str, TrainingFacts] = Field(default_factory=dict)
    models: dict[str, ModelResult]
    """The columns scored on the held-out evaluation set: what the run reports."""
    timings: dict[str, float] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    plugins: list[dict[str, Any]] = Field(default_factory=list)
    publish: PublishInfo | None = None
    resumed_with_changes: list[str] = Field(default_factory=list)
    """Recipe changes a --resume accepted because they do not touch the trained models."""
    tests: list[PairedTest] = Field(default_factory=list)
    """The paired tests a reader needs to believe a recommendation: at each width, the column
    recommended on validation against plain MRL and against the strongest other post-hoc column."""
    checks: list[ChoiceCheck] = Field(default_factory=list)
    """Did the choices hold? Every choice made on validation, measured on the held-out set."""
    trial: dict[str, Any] | None = None
    """Set when the run is a sweep's trial (``{"study": …, "number": …}``): it scored its
    validation split alone (``validation``); ``models`` is empty, nothing is held out."""
    validation: dict[str, ModelResult] = Field(default_factory=dict)
    """The columns scored on the validation split (metrics and costs, no intervals): what every
    decision is made on (:mod:`.decisions`). Empty when the run had no validation split."""
    validation_scores: dict[str, dict[int, list[float]]] = Field(default_factory=dict)
    """Per validation column and width, each validation query's :data:`PRIMARY` score (four
    decimals, queries in one order): the noise a choice is weighed against
    (:func:`mrl_plugins.evidence.decisions.margin`). Empty before schema 5: choices then take
    any positive difference."""
    tasks: dict[str, TaskResult] = Field(default_factory=dict)
    """The ``[[task]]`` evaluations beyond retrieval, by key (``similarity``, or ``similarity#2``
    when a recipe names a task twice); empty when the recipe has none (and before they existed)."""
    serving_corpus_size: int | None = None
    """The recipe's ``[serving] corpus_size``: the corpus the report scales each funnel setting's
    shortlist to (from the growth its validation columns measured, ``facts["growth"]``); ``None``
    when the recipe declares none (and in files written before it existed)."""

    @model_validator(mode="after")
    def _consistent(self) -> RunResults:
        """Everything a report reads is there: a file that passes renders whole, or it is refused."""
        if not self.dims or any(d < 1 for d in self.dims):
            raise ValueError(f"dims must list the measured dimensions (positive, full width first), got {self.dims}")
        if self.dims[0] != max(self.dims):
            raise ValueError(f"dims must start with the full width, got {self.dims}")
        if not self.models and not (self.trial is not None and self.validation):
            raise ValueError("models is empty: no column was measured")
        wanted = [m.key(self.k) for m in METRICS]
        named = [(f"models.{k}", c) for k, c in self.models.items()]
        for key, column in named + [(f"validation.{k}", c) for k, c in self.validation.items()]:
            for d in self.dims:
                if d not in column.metrics:
                    raise ValueError(f"{key}.metrics has no dimension {d} (dims lists it)")
                missing = [w for w in wanted if w not in column.metrics[d]]
                if missing:
                    raise ValueError(f"{key}.metrics.{d} has no {', '.join(missing)}")
                bad = [f"{m} = {v}" for m, v in column.metrics[d].items() if not math.isfinite(v)]
                if bad:
                    raise ValueError(f"{key}.metrics.{d}: {', '.join(bad)} is not a finite number")
            scores = self.validation_scores.get(key.removeprefix("validation."), {}) if key.startswith("validation.") \
                else {}
            if set(scores) - set(self.dims):
                raise ValueError(f"validation_scores.{key.removeprefix('validation.')} has dimensions "
                                 f"{sorted(set(scores) - set(self.dims))} that dims does not list")
            for part in ("costs", "intervals", "p_vs_mrl"):
                extra = set(getattr(column, part) or {}) - set(self.dims)
                if extra:
                    raise ValueError(f"{key}.{part} has dimensions {sorted(extra)} that dims does not list")
        for i, test in enumerate(self.tests):
            for name in (test.column, test.against):
                if name not in self.models:
                    raise ValueError(f"tests[{i}] compares the column '{name}', which models does not hold")
            if test.dim not in self.dims:
                raise ValueError(f"tests[{i}] is at dimension {test.dim}, which dims does not list")
        for key, task in self.tasks.items():
            for model, by_dim in task.scores.items():
                if set(by_dim) != set(self.dims):
                    raise ValueError(f"tasks.{key}.scores.{model} has widths {sorted(by_dim)}, not dims {self.dims}")
                if any(task.metric not in m for m in by_dim.values()):
                    raise ValueError(f"tasks.{key}.scores.{model} lacks its metric '{task.metric}' at some width")
        extra = set(self.validation_scores) - set(self.validation)
        if extra:
            raise ValueError(f"validation_scores has columns {sorted(extra)} that validation does not hold")
        return self

    # -- reading (and :class:`ColumnReading`'s questions, of the evaluation columns) ----------
    def seed_columns(self) -> list[ModelResult]:
        """MRL and its repetitions with other training seeds (``[train] seeds``), when there are any."""
        seeds = [m for m in self.models.values() if m.kind == "seed"]
        return [self.models[MRL], *seeds] if seeds and MRL in self.models else []

    @property
    def chosen_on(self) -> Literal["validation", "evaluation"]:
        """The data the run's choices rest on: its validation split, or (a run without one, or one
        written before schema 4) the evaluation set itself."""
        return "validation" if self.validation else "evaluation"

    @property
    def chosen_corpus(self) -> int:
        """Documents in the corpus the choices were made on (:attr:`chosen_on`)."""
        return self.data.validation_corpus if self.chosen_on == "validation" else self.data.corpus

    def scored(self, split: Split) -> ScoredColumns:
        """The columns scored on one set: ``"evaluation"`` (``models``: what the run reports; empty
        in a sweep's trial) or ``"validation"`` (``validation``: what it chooses on)."""
        return ScoredColumns(split, self.models if split == "evaluation" else self.validation, self.dims, self.k)

    # -- files ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> RunResults:
        """Read a ``results.json`` of this or an earlier schema version."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: no results.json there; pass the output_dir of a finished 'mrl-run'.") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot be read as results.json ({exc}).") from None
        return cls.from_json_dict(raw, where=str(path))

    @classmethod
    def from_json_dict(cls, raw: dict[str, Any], *, where: str = "results.json") -> RunResults:
        if not isinstance(raw, dict):
            held = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}.get(
                type(raw), "a number")
            raise UserError(f"{where}: not a results file (it holds {held}, a results.json holds a JSON object"
                            "); nothing was rewritten from it. Restore it from a copy, or run the recipe "
                            "again.")
        version = raw.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise UserError(f"{where}: not a valid results file (schema_version: {version!r} is not a schema number); "
                            "nothing was rewritten from it. Restore it from a copy, or run the recipe again.")
        if version > SCHEMA_VERSION:
            raise UserError(f"{where}: written by a newer mrl-plugins (schema {version}); upgrade mrl-plugins to read "
                            "it.")
        try:
            return cls.model_validate(upgrade(raw) if version < SCHEMA_VERSION else raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            at = ".".join(str(p) for p in first["loc"])
            msg = first["msg"].removeprefix("Value error, ")
            raise UserError(f"{where}: not a valid results file ({at + ': ' if at else ''}{msg}); nothing was "
                            "rewritten from it. Restore it from a copy, or run the recipe again.") from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=False) + "\n"

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/results.json`` atomically (a temporary file, then a rename)."""
        path = Path(folder) / RESULTS_FILE
        tmp = path.with_name(f".results.json.{os.getpid()}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path


def round_metrics(metrics: dict[int, dict[str, float]]) -> dict[int, dict[str, float]]:
    """What results.json keeps: six decimals, more than any table shows."""
    return {int(d): {k: round(float(v), 6) for k, v in m.items()} for d, m in metrics.items()}


__all__ = [
    "BASE", "ENCODE_SPEEDUP", "KEEP_SHARES", "METRICS", "MRL", "OVERLAP", "PRIMARY", "RESULTS_FILE", "SCHEMA_VERSION",
    "ChoiceCheck", "DataInfo", "Metric", "ModelInfo", "ModelResult", "PairedTest", "PublishInfo", "RunResults",
    "SearchCost", "TaskResult", "TrainingFacts",
    "column_key", "overlap_key", "round_metrics", "share_label",
]
