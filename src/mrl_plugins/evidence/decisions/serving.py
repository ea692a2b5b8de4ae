"""What to serve: every measured search configuration as an :class:`OperatingPoint`, their
Pareto front, and the serving choice made on it (and the setting ``mrl-run index RUN`` builds)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ...evaluation.metrics import Metric, overlap_key
from ...indexes import FASTER_THAN_EXACT, SearchSetting, ServingChoice
from ..results import KEEP_SHARES, MRL, PRIMARY, ColumnReading, RunResults
from .margins import Margin, basis, margin
from .widths import recommended_widths

By = Literal["memory", "time"]


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
    ms_single: float | None = field(default=None, compare=False)
    """Median milliseconds one query at a time (p50), as measured in the run."""
    ms_single_p95: float | None = field(default=None, compare=False)
    """95th percentile milliseconds one query at a time (``None`` in older results)."""

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

    def is_exact(self, full_dim: int) -> bool:
        """Whether this is exact full-width search (a model's own column at its full width)."""
        return self.component is None and self.dim == full_dim

    def not_faster_than_exact(self, full_dim: int) -> bool:
        """Whether one query at a time takes more than :data:`~mrl_plugins.indexes.FASTER_THAN_EXACT`
        of exact full-width search's time measured beside it: such a setting is never the one to
        serve at the corpus size it was measured on (slower than a scan, or within timing noise of
        it, where exact search, the simpler option, is kept)."""
        return not self.is_exact(full_dim) and self.ratio_single > FASTER_THAN_EXACT


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
                cost.ratio_single, cost.ratio_batch, dict(c.params), cost.ms_single, cost.ms_single_p95,
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


@dataclass(frozen=True)
class ServingDecision:
    """What to serve, with the share it keeps and the cheaper settings passed over for noise."""

    share: float
    point: OperatingPoint
    """Measured on the held-out evaluation set (:func:`chosen_point` gives its validation twin)."""
    margin: Margin | None
    """Its margin over the share on validation (``None``: no per-query scores to weigh it)."""
    within_noise: list[tuple[OperatingPoint, Margin]] = field(default_factory=list)
    """Cheaper settings that kept the share on average, within noise: passed over."""
    slower: list[OperatingPoint] = field(default_factory=list)
    """Settings on the front that keep the share with less memory than the choice but are not
    clearly faster than exact search one query at a time on the corpus they were measured on
    (more than :data:`~mrl_plugins.indexes.FASTER_THAN_EXACT` of its time): passed over."""


def serving_decision(results: RunResults) -> ServingDecision | None:
    """What to serve: the configuration on the Pareto front using least memory that keeps ≥ 99%
    of exact quality (else ≥ 95%) on validation beyond noise, among those the run measured and
    clearly faster than exact search one query at a time on the corpus it was measured on (at
    most :data:`~mrl_plugins.indexes.FASTER_THAN_EXACT` of its time; issue #37: on a
    1,000-document validation corpus exact search takes microseconds, and an index slower than it
    there is no advice to serve; issue #36: within timing noise the simpler option, exact search,
    is kept; how a setting scales to a larger corpus is the funnel's growth measurement, and
    ``mrl-run index`` tunes on the corpus itself). It is a full-width
    setting whenever no truncated one is on the front (or none keeps the share beyond noise);
    exact full-width search when no setting on the front does."""
    on, full = basis(results), results.full_dim
    front = pareto_front(on)
    passed: list[tuple[OperatingPoint, Margin]] = []
    slower: list[OperatingPoint] = []
    for share in sorted(KEEP_SHARES, reverse=True):
        keeping = sorted((p for p in front if p.kept >= share - 1e-9), key=lambda p: (p.index_bytes, p.ratio_single))
        for point in keeping:
            if point.not_faster_than_exact(full):
                slower += [point] if point not in slower else []
                continue
            found = margin(results, point.column, point.dim, against=point.model, against_dim=full, share=share)
            if found is None or found.beyond_noise:
                return ServingDecision(share, held_out(results, point) or point, found, passed, slower)
            passed.append((point, found))
    if not passed and not slower:
        return None
    model = (passed[0][0] if passed else slower[0]).model
    exact = next((p for p in operating_points(on) if p.is_exact(full) and p.model == model), None)
    if exact is None:
        return None
    return ServingDecision(max(KEEP_SHARES), held_out(results, exact) or exact, None, passed, slower)


def serving_choice(results: RunResults) -> tuple[float, OperatingPoint] | None:
    """What to serve and the share it keeps (:func:`serving_decision`)."""
    found = serving_decision(results)
    return (found.share, found.point) if found is not None else None


def held_out(results: RunResults, point: OperatingPoint) -> OperatingPoint | None:
    """The same configuration (column and width) as measured on the evaluation set."""
    return _same(results, point)


def chosen_point(results: RunResults, point: OperatingPoint) -> OperatingPoint | None:
    """The same configuration as measured on the set it was chosen on."""
    return _same(basis(results), point)


def _same(results: ColumnReading, point: OperatingPoint) -> OperatingPoint | None:
    return next((p for p in operating_points(results) if p.column == point.column and p.dim == point.dim), None)


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
