"""The ``[[task]]`` stage: every evaluation task beyond retrieval scored for every model of the
run at every width (issue #39), on rank 0 after the comparisons. Each model encodes each task's
texts once (:class:`RunTaskContext`); what a task returns is checked before it reaches
``results.json`` (every width, its main metric, finite numbers), and a task that breaks is named
with its plugin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..components import Role, TaskContext
from ..errors import PluginError
from ..evidence.results import BASE, TaskResult
from .context import RunContext
from .scoring import Embeddings


class RunTaskContext(TaskContext):
    """What a task sees of the run: its widths, seed and recipe folder, and the run's models."""

    def __init__(self, ctx: RunContext, emb: Embeddings, allowed: Sequence[str]):
        self.dims, self.seed, self.recipe_dir = ctx.dims, ctx.settings.seed, ctx.recipe.base_dir
        self._emb, self._allowed = emb, set(allowed)

    def encode(self, model: str, texts: Sequence[str], role: Role = "document",
               batch_size: int | None = None) -> np.ndarray:
        if model not in self._allowed:
            raise PluginError(f"a task asked for model '{model}'; the run's models are "
                              f"{', '.join(sorted(self._allowed))}.")
        return self._emb.encode(model, texts, role=role, batch_size=batch_size)  # the run's encode-once cache


def task_models(ctx: RunContext) -> list[str]:
    """The models every task scores: the base model, then the run's trained ones (as the tables)."""
    return [BASE, *(m.key for m in ctx.recipe.models.with_role("plain", "mrl", "seed"))]


def score_tasks(ctx: RunContext, emb: Embeddings) -> dict[str, TaskResult]:
    """Each ``[[task]]``, by key: its name, or ``name#i`` when the recipe names it more than once."""
    specs = ctx.recipe.tasks
    names = [s.name for s in specs]
    models = task_models(ctx)
    tctx = RunTaskContext(ctx, emb, models)
    found: dict[str, TaskResult] = {}
    for i, spec in enumerate(specs):
        key = spec.name if names.count(spec.name) == 1 else f"{spec.name}#{i + 1}"
        task = spec.component
        with ctx.stage(f"task:{key}", f"task {task.label()}: {len(models)} models at {len(ctx.dims)} dims"):
            scores = {}
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
        found[key] = TaskResult(name=spec.name, label=task.label(), metric=task.metric,
                                params=spec.as_table(), scores=scores, plugin=spec.plugin)
    return found


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
