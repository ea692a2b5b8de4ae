"""The ``[[task]]`` stage: every evaluation task beyond retrieval scored for every model of the
run at every width (issue #39), on rank 0 after the comparisons. Each model encodes each task's
texts once (:class:`RunTaskContext`); what a task returns is checked before it reaches
``results.json`` (every width, its main metric, finite numbers), and a task that breaks is named
with its plugin. A task that returns bootstrap replicates of its main metric
(:class:`~mrl_plugins.components.TaskScores`, over ``ctx.resamples(n)``: the same resamples for
every model) gets 95% bias-corrected percentile intervals of its value and of the share of full
width each width keeps, and each trained model a paired test against the base model per width (the share of
resamples whose difference falls on the other side of zero, doubled: a two-sided bootstrap test,
since a Spearman or a V-measure is not a mean over items that a sign-flip test could flip).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..components import Role, TaskContext
from ..errors import PluginError
from ..evidence.decisions.widths import narrowest
from ..evidence.results import BASE, KEEP_SHARES, TaskChoice, TaskDelta, TaskResult, share_label
from ..evidence.stats import ALPHA, RESAMPLES, bootstrap_p_value
from .context import RunContext
from .scoring import Embeddings


class RunTaskContext(TaskContext):
    """What a task sees of the run: its widths, seed and recipe folder, and the run's models."""

    def __init__(self, ctx: RunContext, emb: Embeddings, allowed: Sequence[str]):
        self.dims, self.seed, self.recipe_dir = ctx.dims, ctx.settings.seed, ctx.recipe.base_dir
        self.resample_count = RESAMPLES
        self._emb, self._allowed, self._columns = emb, set(allowed), ctx.task_columns

    def encode(self, model: str, texts: Sequence[str], role: Role = "document",
               batch_size: int | None = None) -> np.ndarray:
        if model not in self._allowed:
            raise PluginError(f"a task asked for model '{model}'; the run's models are "
                              f"{', '.join(sorted(self._allowed))}.")
        if model in self._columns:  # a comparison column: the model it reads, then its transform
            reads, transform = self._columns[model]
            raw = self._emb.encode(reads, texts, role=role, batch_size=batch_size)
            return np.asarray(transform(raw), dtype=np.float32)
        return self._emb.encode(model, texts, role=role, batch_size=batch_size)  # the run's encode-once cache


def task_models(ctx: RunContext) -> list[str]:
    """The models every task scores: the base model, the run's trained ones (as the tables), then
    the comparison columns that say how they transform a model's embeddings (PCA, the adaptor:
    :meth:`~mrl_plugins.components.Comparison.task_transform`)."""
    return [BASE, *(m.key for m in ctx.recipe.models.with_role("plain", "mrl", "seed")), *ctx.task_columns]


def score_tasks(ctx: RunContext, emb: Embeddings) -> dict[str, TaskResult]:
    """Each ``[[task]]``, by key: its :meth:`~mrl_plugins.components.Task.key` (the name), or
    ``key#i`` when the recipe uses the same key more than once."""
    specs = ctx.recipe.tasks
    names = [s.component.key() for s in specs]
    models = task_models(ctx)
    tctx = RunTaskContext(ctx, emb, models)
    found: dict[str, TaskResult] = {}
    for i, spec in enumerate(specs):
        task = spec.component
        key = task.key() if names.count(task.key()) == 1 else f"{task.key()}#{i + 1}"
        with ctx.stage(f"task:{key}", f"task {task.label()}: {len(models)} models at {len(ctx.dims)} dims"):
            scores, replicates, validation, validation_replicates = {}, {}, {}, {}
            for model in models:
                try:
                    returned = task.score(tctx, model)
                except PluginError:
                    raise
                except Exception as exc:
                    if spec.plugin.startswith("mrl_plugins."):  # a built-in's own error: its traceback helps us
                        raise
                    raise PluginError(f"task '{spec.name}' (plugin '{spec.plugin}') failed on model '{model}': "
                                      f"{type(exc).__name__}: {exc}") from exc
                scores[model] = checked(returned, spec.name, spec.plugin, task.metric, ctx.dims)
                replicates[model] = checked_replicates(getattr(returned, "replicates", None), spec.name, spec.plugin,
                                                       ctx.dims, tctx.resample_count)
                chosen_on = checked_validation(returned, spec.name, spec.plugin, task.metric, ctx.dims)
                if chosen_on:
                    validation[model] = chosen_on
                    validation_replicates[model] = checked_replicates(
                        getattr(returned, "validation_replicates", None), spec.name, spec.plugin, ctx.dims,
                        tctx.resample_count)
        found[key] = TaskResult(name=spec.name, label=task.label(), metric=task.metric,
                                params=spec.as_table(), scores=scores, plugin=spec.plugin,
                                validation=validation, chosen=choices(validation, validation_replicates, ctx.dims),
                                **uncertainty(replicates, scores, task.metric, ctx.dims))
    return found


def checked_replicates(given: Any, name: str, plugin: str, dims: Sequence[int],
                       count: int) -> dict[int, np.ndarray] | None:
    """A task's replicates of its main metric (``TaskScores.replicates`` or
    ``validation_replicates``), one per resample at every width, or None (none given)."""
    if not given:
        return None
    out = {}
    for d in dims:
        values = np.asarray(given.get(d, ()), dtype=np.float64).ravel()
        if len(values) != count:
            raise PluginError(f"task '{name}' (plugin '{plugin}') returned {len(values)} replicates at width {d}; "
                              f"give one per row of ctx.resamples(n) ({count}) at every width.")
        out[d] = values
    return out


def checked_validation(returned: Any, name: str, plugin: str, metric: str, dims: Sequence[int]) -> dict[int, float]:
    """A task's main metric on its validation part at every width, or {} (none)."""
    given = getattr(returned, "validation", None)
    if not given:
        return {}
    out = {}
    for d in dims:
        value = (given.get(d) or {}).get(metric)
        if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise PluginError(f"task '{name}' (plugin '{plugin}') returned validation scores without a finite "
                              f"'{metric}' at width {d}; give it at every width, or no validation scores at all.")
        out[d] = round(float(value), 6)
    return out


def choices(validation: dict[str, dict[int, float]], replicates: dict[str, dict[int, np.ndarray] | None],
            dims: Sequence[int]) -> dict[str, dict[str, TaskChoice]]:
    """Per model and share, the smallest width keeping the share of the full width on the
    validation part beyond noise: on average, and in a paired bootstrap test of the width against
    the share of the full width over resamples of the validation items (p < 0.05); widths that
    keep it on average but within noise are passed over, the wider width being the simpler choice
    (the rule the run's own width choices follow). Without replicates, on average alone."""
    full = max(dims)
    out: dict[str, dict[str, TaskChoice]] = {}
    for model, on in validation.items():
        reps = replicates.get(model)
        out[model] = {}
        for share in KEEP_SHARES:
            keeping = [d for d in dims if on[full] > 0 and on[d] >= share * on[full] - 1e-12]
            p = ({d: bootstrap_p_value(reps[d] - share * reps[full]) for d in keeping if d != full}
                 if reps is not None else {})
            beyond = {d: value < ALPHA for d, value in p.items()}  # no replicates: none, and the mean decides
            width, passed = narrowest(dims, keeping.__contains__, beyond.get)
            out[model][share_label(share)] = TaskChoice(width=width, by_mean=min(keeping, default=full),
                                                        p=round(p[passed], 6) if passed is not None else None)
    return out


def uncertainty(replicates: dict[str, dict[int, np.ndarray] | None], scores: dict[str, dict[int, dict[str, float]]],
                metric: str, dims: Sequence[int]) -> dict[str, Any]:
    """Intervals of each model's value and retention, and each trained model against the base,
    from paired replicates (resamples on which a statistic is undefined, NaN, are left out; a width
    with none left has no interval)."""
    full = max(dims)
    intervals: dict[str, dict[int, tuple[float, float]]] = {}
    kept: dict[str, dict[int, tuple[float, float]]] = {}
    versus: dict[str, dict[int, TaskDelta]] = {}
    base = replicates.get(BASE)
    for model, by_dim in replicates.items():
        if by_dim is None:
            continue
        value = {d: scores[model][d][metric] for d in dims}
        with np.errstate(invalid="ignore", divide="ignore"):
            intervals[model] = _intervals({d: by_dim[d] for d in dims}, value)
            kept[model] = _intervals({d: by_dim[d] / by_dim[full] for d in dims},
                                     {d: value[d] / value[full] if value[full] else math.nan for d in dims})
        if model != BASE and base is not None:
            versus[model] = {}
            for d in dims:
                diff = by_dim[d] - base[d]
                if np.isfinite(diff).any():
                    versus[model][d] = TaskDelta(delta=round(scores[model][d][metric] - scores[BASE][d][metric], 6),
                                                 p=round(bootstrap_p_value(diff), 6))
    return {"intervals": intervals, "kept": kept, "versus_base": versus}


def _intervals(by_dim: dict[int, np.ndarray], observed: dict[int, float]) -> dict[int, tuple[float, float]]:
    """95% bias-corrected percentile intervals (Efron's BC) of the finite replicates at each width.

    Plain percentiles assume the replicates centre on the observed value; a V-measure recomputed
    on a resample (repeated texts, fewer distinct ones) reads systematically high, so its plain
    interval sits above the value it is meant to bracket. BC moves the percentiles by how far the
    replicates sit off the observed value (``z0``); for an unbiased statistic (a Spearman, an
    accuracy) it is the plain percentile interval."""
    from scipy.stats import norm

    out = {}
    for d, values in by_dim.items():
        values = values[np.isfinite(values)]
        if not len(values) or not math.isfinite(observed[d]):
            continue
        below = (np.count_nonzero(values < observed[d]) + 0.5 * np.count_nonzero(values == observed[d])) / len(values)
        z0 = norm.ppf(min(max(below, 1 / (len(values) + 1)), len(values) / (len(values) + 1)))
        low, high = np.percentile(values, [100 * norm.cdf(2 * z0 - 1.959964), 100 * norm.cdf(2 * z0 + 1.959964)])
        out[d] = (round(float(low), 6), round(float(high), 6))
    return out


def checked(returned: Any, name: str, plugin: str, metric: str, dims: Sequence[int]) -> dict[int, dict[str, float]]:
    """What a task returned, as results.json keeps it (four decimals), or one message naming it."""
    where = f"task '{name}' (plugin '{plugin}')"
    if not isinstance(returned, dict) or set(returned) != set(dims):
        got = sorted(returned) if isinstance(returned, dict) else type(returned).__name__
        raise PluginError(f"{where} must return a dict of every width {sorted(dims)} to its metrics; got {got}.")
    out: dict[int, dict[str, float]] = {}
    for d, metrics in returned.items():
        if not isinstance(metrics, dict) or metric not in metrics:
            raise PluginError(f"{where} returned no '{metric}' (its main metric) at width {d}.")
        values = {}
        for k, v in metrics.items():
            if not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise PluginError(f"{where} returned {k} = {v!r} at width {d}; every metric must be a finite number.")
            values[str(k)] = round(float(v), 6)
        out[int(d)] = values
    return out
