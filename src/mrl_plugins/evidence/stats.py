"""Which differences are real: bootstrap intervals over queries, and paired tests between columns.

Every column of a run is scored on the same evaluation queries, so its per-query scores
(reciprocal rank, recall, nDCG of each query) can be resampled and compared query by query.
:func:`bootstrap_interval` gives a 95% percentile interval of a mean over queries;
:func:`paired_p_value` a two-sided sign-flip (randomisation) test of the mean per-query
difference between two columns: it assumes nothing about the distribution of the differences,
and a column compared with itself gets p = 1. Both are seeded, so a report is reproducible.
:func:`bootstrap_p_value` asks the same question of paired bootstrap replicates, for statistics
that are not a mean over items (a Spearman, a V-measure).
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000
ALPHA = 0.05
"""Differences with a paired p-value at or above this are marked as not significant."""


def bootstrap_interval(values: np.ndarray, *, resamples: int = RESAMPLES, level: float = 0.95, seed: int = 0
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of ``values.mean()``, resampling queries with replacement."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_p_value(a: np.ndarray, b: np.ndarray, *, resamples: int = RESAMPLES * 5, seed: int = 0) -> float:
    """Two-sided sign-flip test that the mean per-query difference ``a - b`` is zero."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    observed = abs(diff.mean()) if len(diff) else 0.0
    if observed == 0.0:
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.integers(0, 2, size=(resamples, len(diff)), dtype=np.int8) * 2 - 1
    flipped = np.abs((signs * diff).mean(axis=1))
    return float((1 + np.count_nonzero(flipped >= observed - 1e-12)) / (resamples + 1))


def bootstrap_p_value(diff: np.ndarray) -> float:
    """Two-sided p-value that a difference is zero, from its paired bootstrap replicates (each
    model's statistic on the same resample, subtracted): twice the smaller tail's share, counting
    the observed as one replicate. Replicates on which a statistic is undefined (NaN) are left
    out; with none left, 1."""
    diff = np.asarray(diff, dtype=np.float64)
    diff = diff[np.isfinite(diff)]
    tail = min(np.count_nonzero(diff <= 0), np.count_nonzero(diff >= 0))
    return float(min(1.0, 2 * (1 + tail) / (len(diff) + 1)))


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
