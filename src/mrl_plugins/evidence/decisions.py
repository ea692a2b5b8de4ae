"""What a run's evidence recommends, as pure functions over :class:`RunResults`.

The report, the model card, ``mrl.json``, the demo and ``mrl-run index`` all ask these functions
and print what they return; none of them decides anything itself. Shares are numbers (``0.99``),
configurations are :class:`OperatingPoint` s whose parameters come from the column's recorded
``params`` (never from its label).

Every choice is made on the run's **validation split** (its ``validation`` columns, read as
:meth:`RunResults.scored` gives them: :func:`basis`). Where the options differ in what they risk,
**with a margin**: a narrower width or a cheaper serving setting is taken only when it keeps the
share asked beyond the noise of the validation queries (a paired sign-flip test on their scores,
:func:`margin`); within noise the wider width, or exact full-width search, wins. Where they cost
the same (the adaptor or not at a width: one small linear layer; which of the run's models to
publish at a width), **the better mean** is taken, and a lead within noise is said, with its
p-value. Issue #36 asked for the margin on every choice; measured on the three shipped datasets
(``benchmarks/bench_validation.py``, docs/benchmarks.md) it kept plain MRL where the adaptor was
better held out by 0.026 to 0.098, at 11 of 37 choices; the better mean missed 1 of 37. A margin
buys safety only where one option has something to lose, and with a validation split of unseen
text (no longer flattering fitted columns) there is none to buy between equal-cost options. That
rule was set after looking at those three datasets, so they do not confirm it. It is then reported on the
held-out evaluation set: a width or a setting picked on the queries it is then
scored on flatters itself by their luck. A run written before schema 5 kept no per-query
validation scores: its choices take any positive difference, as they were made. A run without a
validation split (``[validation] queries = 0``, or written before schema 4) chooses on the
evaluation set, and
:attr:`RunResults.chosen_on` says so for the sentence that reports the choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from ..evaluation.metrics import Metric, overlap_key
from ..indexes import SearchSetting, ServingChoice
from .results import KEEP_SHARES, MRL, PRIMARY, ColumnReading, RunResults
from .stats import ALPHA, paired_p_value

By = Literal["memory", "time"]


def smallest_width(results: ColumnReading, column: str, share: float, metric: Metric = PRIMARY) -> int | None:
    """The smallest dimension whose score is at least ``share`` of the column's full-width score."""
    return results.smallest_dim_keeping(column, share, metric)


def basis(results: RunResults, column: str | None = None) -> ColumnReading:
    """The columns choices are made on: the validation split's when the run has them (and
    ``column`` among them), else the evaluation set's (a run without a validation split)."""
    chosen = results.scored("validation")
    return chosen if chosen.models and (column is None or column in chosen.models) else results


@dataclass(frozen=True)
class Margin:
    """A difference on the validation queries, weighed against their noise."""

    delta: float
    """The mean per-query difference (:data:`PRIMARY` metric)."""
    p: float
    """The paired sign-flip test's p-value (:func:`mrl_plugins.evidence.stats.paired_p_value`)."""

    @property
    def beyond_noise(self) -> bool:
        return self.delta > 0 and self.p < ALPHA


@lru_cache(maxsize=4096)
def _paired(a: tuple[float, ...], b: tuple[float, ...]) -> Margin:
    x, y = np.asarray(a), np.asarray(b)
    return Margin(float(x.mean() - y.mean()), paired_p_value(x, y))


def margin(results: RunResults, column: str, dim: int, *, against: str, against_dim: int | None = None,
           share: float = 1.0) -> Margin | None:
    """``column`` at ``dim`` against ``share`` × ``against`` at ``against_dim`` (default: the same
    width), on the validation queries; ``None`` when the run kept no per-query validation scores
    for both (before schema 5, or a plugin's column without per-query scores)."""
    scores = results.validation_scores
    a, b = scores.get(column, {}).get(dim), scores.get(against, {}).get(against_dim or dim)
    if not a or not b or len(a) != len(b):
        return None
    return _paired(tuple(a), tuple(share * v for v in b))


@dataclass(frozen=True)
class WidthChoice:
    """The smallest width keeping a share of a column's full-width quality, chosen with a margin."""

    share: float
    width: int
    by_mean: int
    """The smallest width whose mean keeps the share on validation (what 0.8 chose)."""
    noise: Margin | None = None
    """When ``by_mean`` is smaller than ``width``: its margin over the share, within noise."""


def width_choice(results: RunResults, share: float, column: str = MRL) -> WidthChoice:
    """The smallest width whose validation score keeps ``share`` of the column's full-width score
    beyond noise; the full width when none does. Widths that keep it on average but within noise
    are passed over (the wider one is the simpler choice)."""
    on, full = basis(results, column), results.full_dim
    by_mean = smallest_width(on, column, share) or full
    noise = None
    for d in sorted(results.dims):
        if d == full:
            return WidthChoice(share, full, by_mean, noise)
        if on.value(column, d) < share * on.value(column, full):
            continue
        found = margin(results, column, d, against=column, against_dim=full, share=share)
        if found is None or found.beyond_noise:
            return WidthChoice(share, d, by_mean, noise)
        noise = noise or found
    return WidthChoice(share, full, by_mean, noise)


def recommended_widths(results: RunResults, column: str = MRL) -> dict[float, int]:
    """Per share in :data:`KEEP_SHARES` (0.99, 0.95): the smallest width keeping that share of the
    column's full-width :data:`PRIMARY` score on validation beyond noise (:func:`width_choice`);
    the full width when no smaller one does."""
    return {share: width_choice(results, share, column).width for share in KEEP_SHARES}


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

    def slower_than_exact(self, full_dim: int) -> bool:
        """Whether one query at a time takes longer than exact full-width search measured beside
        it: such a setting is never the one to serve at the corpus size it was measured on."""
        return not self.is_exact(full_dim) and self.ratio_single > 1.0


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
    """Settings on the front that keep the share with less memory than the choice but take longer
    than exact search one query at a time on the corpus they were measured on: passed over."""


def serving_decision(results: RunResults) -> ServingDecision | None:
    """What to serve: the configuration on the Pareto front using least memory that keeps ≥ 99%
    of exact quality (else ≥ 95%) on validation beyond noise, among those the run measured and
    no slower than exact search one query at a time on the corpus it was measured on (issue #37:
    on a 1,000-document validation corpus exact search takes microseconds, and an index slower
    than it there is no advice to serve; how a setting scales to a larger corpus is the funnel's
    growth measurement, and ``mrl-run index`` tunes on the corpus itself). It is a full-width
    setting whenever no truncated one is on the front (or none keeps the share beyond noise);
    exact full-width search when no setting on the front does."""
    on, full = basis(results), results.full_dim
    front = pareto_front(on)
    passed: list[tuple[OperatingPoint, Margin]] = []
    slower: list[OperatingPoint] = []
    for share in sorted(KEEP_SHARES, reverse=True):
        keeping = sorted((p for p in front if p.kept >= share - 1e-9), key=lambda p: (p.index_bytes, p.ratio_single))
        for point in keeping:
            if point.slower_than_exact(full):
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


@dataclass(frozen=True)
class Gate:
    """Where an adaptor column beats the model it adapts, on validation (where it is used) and,
    for the record, on the held-out evaluation set."""

    column: str
    model: str
    helps: list[int]
    """The widths at which validation says: use the adapted embedding (it is ahead there)."""
    hurts: list[int]
    validation_delta: dict[int, float]
    held_out_delta: dict[int, float]
    noise: list[int] = field(default_factory=list)
    """Widths (among ``helps``) where its lead on validation is within noise: used there all the
    same (it costs no more to serve), and the report says so."""
    cross_validated: str | None = None
    """How the gate was chosen when not on the validation split: ``"5-fold cross-validation over
    1,997 training queries"`` (the adaptor's ``cv_folds``); ``validation_delta`` and ``noise`` are
    then the cross-validated differences and their paired tests."""


def adaptor_gates(results: RunResults) -> list[Gate]:
    """For each adaptor column: the widths where it beats its model on validation (its
    :data:`PRIMARY` score; the leads within noise named), or by the cross-validation it recorded
    (``facts["cv"]``, the adaptor's ``cv_folds``), and the same differences held out."""
    on, gates = basis(results), []
    for key, column in results.models.items():
        model = column.reads[0] if column.reads else None
        cv = column.facts.get("cv") if column.component == "adaptor" else None
        if column.component != "adaptor" or model not in results.models or (key not in on.models and not cv):
            continue
        held = {d: results.value(key, d) - results.value(model, d) for d in results.dims}
        how = None
        if cv and all(str(d) in cv.get("delta", {}) and str(d) in cv.get("p", {}) for d in results.dims):
            val = {d: float(cv["delta"][str(d)]) for d in results.dims}
            helps = [d for d in results.dims if val[d] > 0]
            noise = [d for d in helps if float(cv["p"][str(d)]) >= ALPHA]
            how = f"{cv['folds']}-fold cross-validation over {cv['queries']:,} training queries"
        elif key in on.models:
            val = {d: on.value(key, d) - on.value(model, d) for d in results.dims}
            margins = {d: margin(results, key, d, against=model) for d in results.dims}
            helps = [d for d in results.dims if val[d] > 0]
            noise = [d for d in helps if (m := margins[d]) is not None and not m.beyond_noise]
        else:
            continue
        gates.append(Gate(key, model, helps, [d for d in results.dims if d not in helps], val, held, noise, how))
    return gates


@dataclass(frozen=True)
class ColumnChoice:
    """The model to publish at one width: the best on validation by its mean."""

    column: str
    by_mean: str
    """The same column (kept for readers of 0.9's first form, where a margin could overrule it)."""
    noise: Margin | None = None
    """When ``column`` is not the run's model: its lead over it, when within noise."""


def column_choice(results: RunResults, dim: int) -> ColumnChoice:
    """The quality column with the best :data:`PRIMARY` score at ``dim`` on validation, among
    those that are a model one can publish (the run's models, and comparisons that saved one); a
    lead over the run's own model (MRL) within noise is recorded, not overruled: publishing one
    model or another costs the same."""
    on = basis(results)
    candidates = [k for k, c in results.quality_columns().items() if k in on.models
                  and (c.kind == "model" or c.saved_model)]
    best = max(candidates, key=lambda k: on.value(k, dim))
    if best != MRL and MRL in candidates:
        found = margin(results, best, dim, against=MRL)
        if found is not None and not found.beyond_noise:
            return ColumnChoice(best, best, found)
    return ColumnChoice(best, best)


def best_column(results: RunResults, dim: int) -> str:
    """The model to publish at ``dim`` (:func:`column_choice`)."""
    return column_choice(results, dim).column


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
