"""What a run's evidence recommends, as pure functions over :class:`RunResults`.

The report, the model card, ``mrl.json``, the demo and ``mrl-run index`` all ask these functions
and print what they return; none of them decides anything itself. Shares are numbers (``0.99``),
configurations are :class:`OperatingPoint` s whose parameters come from the column's recorded
``params`` (never from its label).

Every choice is made on the run's **validation split** (its ``validation`` columns, read as
:meth:`RunResults.scored` gives them: :func:`basis`) and
reported on the held-out evaluation set: a width or a setting picked on the queries it is then
scored on flatters itself by their luck. A run without a validation split (``[validation]
queries = 0``, or written before schema 4) chooses on the evaluation set, and
:attr:`RunResults.chosen_on` says so for the sentence that reports the choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..evaluation.metrics import Metric, overlap_key
from ..indexes import SearchSetting, ServingChoice
from .results import KEEP_SHARES, MRL, PRIMARY, ColumnReading, RunResults

By = Literal["memory", "time"]


def smallest_width(results: ColumnReading, column: str, share: float, metric: Metric = PRIMARY) -> int | None:
    """The smallest dimension whose score is at least ``share`` of the column's full-width score."""
    return results.smallest_dim_keeping(column, share, metric)


def basis(results: RunResults, column: str | None = None) -> ColumnReading:
    """The columns choices are made on: the validation split's when the run has them (and
    ``column`` among them), else the evaluation set's (a run without a validation split)."""
    chosen = results.scored("validation")
    return chosen if chosen.models and (column is None or column in chosen.models) else results


def recommended_widths(results: RunResults, column: str = MRL) -> dict[float, int]:
    """Per share in :data:`KEEP_SHARES` (0.99, 0.95): the smallest width keeping that share of the
    column's full-width :data:`PRIMARY` score on validation; the full width when no smaller one does."""
    on = basis(results, column)
    return {share: smallest_width(on, column, share) or results.full_dim for share in KEEP_SHARES}


def example_width(results: RunResults, column: str = MRL) -> tuple[float, int]:
    """A real truncation to show: the ≥ 99% width, or the ≥ 95% one when only the full width keeps 99%."""
    widths = recommended_widths(results, column)
    high, low = max(widths), min(widths)
    return (high, widths[high]) if widths[high] < results.full_dim else (low, widths[low])


@dataclass(frozen=True)
class OperatingPoint:
    """One search configuration at one width, with what it keeps and what it costs."""

    column: str
    """The key of the column in ``results.models``."""
    label: str
    model: str
    """The run's model it searches."""
    component: str | None
    """The comparison that measured it (``funnel``, ``quantize``, a plugin's), or ``None`` for a
    model's plain truncation (exact search of the first ``dim`` dimensions)."""
    setting: SearchSetting
    """How it searches (:func:`column_setting` of the column's recorded parameters, at this width)."""
    value: float
    """The primary metric (MRR@k)."""
    kept: float
    """Share of the exact full-width score of the model it searches."""
    ndcg: float
    overlap: float | None
    index_bytes: float
    rerank_bytes: float
    ratio_single: float
    ratio_batch: float
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """The column's recorded parameters as it wrote them (what an engine's snippet is shown)."""

    @property
    def dim(self) -> int:
        return self.setting.dim

    @property
    def shortlist(self) -> int | None:
        return self.setting.shortlist

    @property
    def index(self) -> str | None:
        """The index backend that holds the shortlist vectors, when the column records one."""
        return self.setting.index

    @property
    def store(self) -> str:
        """The dtype of the vectors a funnel reranks with (``float32`` unless the column says)."""
        return self.setting.store

    def serving_choice(self, full_dim: int, k: int, exact_index: str) -> ServingChoice:
        """This point as the serving choice an engine's snippet serves."""
        return ServingChoice(self.setting, full_dim, exact_index, self.kept, self.overlap, k)

    def truncates(self, full_dim: int) -> bool:
        """Whether this configuration searches fewer dimensions than the model has."""
        return self.dim < full_dim


def column_setting(dim: int, params: Mapping[str, Any]) -> SearchSetting:
    """The search setting a column's recorded parameters describe, at one width: the one place
    that reads them (a funnel's ``shortlist``, ``index``, ``index_params``, ``rerank_dim`` and
    ``store``; a quantisation's ``precision``, the backend its codes are held in)."""
    shortlist = params.get("shortlist")
    return SearchSetting(dim, index=params.get("index") or params.get("precision"),
                         index_params=dict(params.get("index_params") or {}),
                         shortlist=int(shortlist) if isinstance(shortlist, int) else None,
                         rerank_dim=params.get("rerank_dim") or None, store=str(params.get("store") or "float32"))


def operating_points(results: ColumnReading) -> list[OperatingPoint]:
    """Every measured search configuration of MRL and of the models search comparisons read."""
    columns = results.search_columns()
    focus = {MRL} | {c.reads[0] for c in columns.values() if c.kind == "comparison" and c.reads}
    k, full = results.k, results.full_dim
    points = []
    for key, c in columns.items():
        model = c.reads[0] if c.reads else key
        if model not in focus or c.costs is None:
            continue
        exact = results.value(model, full) if model in results.models else c.metrics[full][PRIMARY.key(k)]
        for d in results.dims:
            m, cost = c.metrics[d], c.costs[d]
            value = m[PRIMARY.key(k)]
            points.append(OperatingPoint(
                key, c.label + (" (truncated, exact)" if c.kind == "model" else ""), model,
                c.component if c.kind == "comparison" else None, column_setting(d, c.params), value,
                value / exact if exact else 0.0,
                m[Metric.NDCG.key(k)], m.get(overlap_key(k)), cost.index_bytes, cost.rerank_bytes,
                cost.ratio_single, cost.ratio_batch, dict(c.params),
            ))
    return points


def dominates(a: OperatingPoint, b: OperatingPoint) -> bool:
    """``a`` is at least as good as ``b`` on every axis of the front (quality kept and recall of
    the exact top k: higher; RAM bytes per vector and time one query at a time: lower) and better
    on one."""
    ra, rb = (p.overlap if p.overlap is not None else 0.0 for p in (a, b))
    at_least = a.kept >= b.kept and ra >= rb and a.index_bytes <= b.index_bytes and a.ratio_single <= b.ratio_single
    better = a.kept > b.kept or ra > rb or a.index_bytes < b.index_bytes or a.ratio_single < b.ratio_single
    return at_least and better and a.model == b.model


def pareto_front(results: ColumnReading) -> list[OperatingPoint]:
    """The configurations no other of the same model beats on every axis at once (quality kept,
    recall@k of the exact full-width top k, memory, time one query at a time): every point a user
    could rationally serve. Full-width settings (binary + int8 rescore, HNSW at full width, exact
    search) are among the points when the run measured them (the funnel's ``baselines``)."""
    points = operating_points(results)
    return [p for p in points if not any(dominates(q, p) for q in points)]


def truncation_on_front(results: ColumnReading) -> bool:
    """Whether any configuration on the Pareto front searches truncated vectors: ``False`` is the
    result that truncation does not pay for this model on this data."""
    return any(p.truncates(results.full_dim) for p in pareto_front(results))


def cheapest(results: ColumnReading, share: float, by: By) -> OperatingPoint | None:
    """The cheapest configuration on the Pareto front keeping ``share`` of exact quality, by
    ``"memory"`` (RAM bytes per vector, then time) or by ``"time"`` (one query at a time, then
    memory)."""
    points = [p for p in pareto_front(results) if p.kept >= share - 1e-9]
    if not points:
        return None
    if by == "memory":
        return min(points, key=lambda p: (p.index_bytes, p.ratio_single))
    return min(points, key=lambda p: (p.ratio_single, p.index_bytes))


def serving_choice(results: RunResults) -> tuple[float, OperatingPoint] | None:
    """What to serve: the configuration on the Pareto front using least memory that keeps ≥ 99%
    of exact quality (else ≥ 95%) on validation, among those the run measured; with the share.
    It is a full-width setting whenever no truncated one is on the front (or none keeps the
    share). The point returned is measured on the held-out evaluation set (:func:`chosen_point`
    gives its validation twin)."""
    on = basis(results)
    for share in sorted(KEEP_SHARES, reverse=True):
        point = cheapest(on, share, "memory")
        if point is not None:
            return share, held_out(results, point) or point
    return None


def held_out(results: RunResults, point: OperatingPoint) -> OperatingPoint | None:
    """The same configuration (column and width) as measured on the evaluation set."""
    return _same(results, point)


def chosen_point(results: RunResults, point: OperatingPoint) -> OperatingPoint | None:
    """The same configuration as measured on the set it was chosen on."""
    return _same(basis(results), point)


def _same(results: ColumnReading, point: OperatingPoint) -> OperatingPoint | None:
    return next((p for p in operating_points(results) if p.column == point.column and p.dim == point.dim), None)


@dataclass(frozen=True)
class Gate:
    """Where an adaptor column beats the model it adapts, on validation (where it is used) and,
    for the record, on the held-out evaluation set."""

    column: str
    model: str
    helps: list[int]
    """The widths at which validation says: use the adapted embedding."""
    hurts: list[int]
    validation_delta: dict[int, float]
    held_out_delta: dict[int, float]


def adaptor_gates(results: RunResults) -> list[Gate]:
    """For each adaptor column: the widths where it beats its model on validation (its
    :data:`PRIMARY` score), and the same differences held out."""
    on, gates = basis(results), []
    for key, column in results.models.items():
        model = column.reads[0] if column.reads else None
        if column.component != "adaptor" or model not in results.models or key not in on.models:
            continue
        val = {d: on.value(key, d) - on.value(model, d) for d in results.dims}
        held = {d: results.value(key, d) - results.value(model, d) for d in results.dims}
        gates.append(Gate(key, model, [d for d in results.dims if val[d] > 0], [d for d in results.dims if val[d] <= 0],
                          val, held))
    return gates


def best_column(results: RunResults, dim: int) -> str:
    """The quality column with the best :data:`PRIMARY` score at ``dim`` on validation, among
    those that are a model one can publish (the run's models, and comparisons that saved one)."""
    on = basis(results)
    candidates = [k for k, c in results.quality_columns().items() if k in on.models
                  and (c.kind == "model" or c.saved_model)]
    return max(candidates, key=lambda k: on.value(k, dim))


def index_width(results: RunResults, column: str = MRL) -> int:
    """The shortlist width ``mrl-run index RUN`` uses when not told: the serving choice's width
    when the run measured search configurations of ``column``, else the smallest width keeping
    ≥ 95% of its full-width quality."""
    setting = index_setting(results, column)
    if setting is not None:
        return setting.dim
    widths = recommended_widths(results, column)
    return widths[min(widths)]


def index_setting(results: RunResults, column: str = MRL) -> OperatingPoint | None:
    """The serving choice, when it searches ``column``'s model and records a funnel setting that
    ``mrl-run index`` can build (a shortlist index and a rerank store)."""
    found = serving_choice(results)
    if found is None or found[1].model != column:
        return None
    return found[1]


def plain_mrl(results: RunResults) -> str:
    """The run's plain MRL model: ``mrl-plain`` when the recipe warm-starts ``mrl``, else ``mrl``."""
    return "mrl-plain" if "mrl-plain" in results.models else MRL


def strongest_alternative(results: RunResults, dim: int, column: str) -> str | None:
    """The best post-hoc comparison column at ``dim`` on validation (PCA, an adaptor, a plugin's),
    other than ``column``: what a recommendation must beat besides plain MRL."""
    on = basis(results)
    others = [k for k, c in results.quality_columns().items() if c.kind == "comparison" and k != column
              and k in on.models]
    return max(others, key=lambda k: on.value(k, dim), default=None)
