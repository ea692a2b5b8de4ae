"""The margin every choice is weighed with: the split choices are made on, and a difference on
its queries against their noise (:func:`margin`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...evaluation.metrics import Metric
from ..results import PRIMARY, ColumnReading, RunResults
from ..stats import ALPHA, paired_p_value


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
