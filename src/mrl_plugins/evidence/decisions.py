"""What a run's evidence recommends, as pure functions over :class:`RunResults`.

The report, the model card, ``mrl.json``, the demo and ``mrl-run index`` all ask these functions
and print what they return; none of them decides anything itself. Shares are numbers (``0.99``),
configurations are :class:`OperatingPoint` s whose parameters come from the column's recorded
``params`` (never from its label), and every function reads only the results it is given: they
rest on whatever data those results were measured on, which the caller names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..run_models import MRL
from .results import KEEP_SHARES, PRIMARY, Metric, RunResults, overlap_key

By = Literal["memory", "time"]


def smallest_width(results: RunResults, column: str, share: float, metric: Metric = PRIMARY) -> int | None:
    """The smallest dimension whose score is at least ``share`` of the column's full-width score."""
    return results.smallest_dim_keeping(column, share, metric)


def recommended_widths(results: RunResults, column: str = MRL) -> dict[float, int]:
    """Per share in :data:`KEEP_SHARES` (0.99, 0.95): the smallest width keeping that share of the
    column's full-width :data:`PRIMARY` score; the full width when no smaller one does."""
    return {share: smallest_width(results, column, share) or results.full_dim for share in KEEP_SHARES}


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
    dim: int
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
    """The column's recorded parameters: ``shortlist``, ``index``, ``rerank_dim``, ``precision`` …"""

    @property
    def shortlist(self) -> int | None:
        value = self.params.get("shortlist")
        return int(value) if isinstance(value, int) else None

    @property
    def index(self) -> str | None:
        """The index backend that holds the shortlist vectors, when the column records one."""
        return self.params.get("index") or self.params.get("precision")


def operating_points(results: RunResults) -> list[OperatingPoint]:
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
                c.component if c.kind == "comparison" else None, d, value, value / exact if exact else 0.0,
                m[Metric.NDCG.key(k)], m.get(overlap_key(k)), cost.index_bytes, cost.rerank_bytes,
                cost.ratio_single, cost.ratio_batch, dict(c.params),
            ))
    return points


def cheapest(results: RunResults, share: float, by: By) -> OperatingPoint | None:
    """The cheapest configuration keeping ``share`` of exact quality, by ``"memory"`` (RAM bytes
    per vector, then time) or by ``"time"`` (one query at a time, then memory)."""
    points = [p for p in operating_points(results) if p.kept >= share - 1e-9]
    if not points:
        return None
    if by == "memory":
        return min(points, key=lambda p: (p.index_bytes, p.ratio_single))
    return min(points, key=lambda p: (p.ratio_single, p.index_bytes))


def serving_choice(results: RunResults) -> tuple[float, OperatingPoint] | None:
    """What to serve: the configuration using least memory that keeps ≥ 99% of exact quality
    (else ≥ 95%), among those the run measured; with the share it keeps."""
    for share in sorted(KEEP_SHARES, reverse=True):
        point = cheapest(results, share, "memory")
        if point is not None:
            return share, point
    return None


def index_width(results: RunResults, column: str = MRL) -> int:
    """The shortlist width ``mrl-run index RUN`` uses when not told: the smallest keeping ≥ 95%."""
    widths = recommended_widths(results, column)
    return widths[min(widths)]
