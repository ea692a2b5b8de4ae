"""The checks of a recipe's ``[sweep]`` table that would otherwise fail in every trial. Called by
:func:`mrl_plugins.recipe.load.load_recipe`, which hands itself in (``load``) to load the recipe
once per value of the space: kept apart from the loader, as they are the sweep's, with no import
back into it."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..evidence.results import makes_column
from .schema import RecipeModel, sample_value, toml_value

if TYPE_CHECKING:
    from ..plugins import Registry
    from .load import ComparisonSpec
    from .run_models import RunModels


def sweep_problems(path: Path, overrides: tuple[str, ...], settings: RecipeModel, models: RunModels,
                   compare: list[ComparisonSpec], widths: list[int] | None, registry: Registry, *,
                   load: Callable[..., Any]) -> list[str]:
    """What a ``[sweep]`` table gets wrong that would otherwise fail in every trial: a key of its
    space the recipe does not have, or a choice it does not take (the recipe is loaded with
    ``load`` once per choice, or once with a value of a range), a
    grid without steps, weights that do not match its widths, widths the run does not train, and a
    column the run will not have (a model of the run, or a comparison's column)."""
    s = settings.sweep
    assert s is not None
    problems = []
    if settings.validation.queries == 0:
        problems.append("[sweep]: [validation] queries = 0, but a sweep chooses on the validation split; remove that "
                        "line (the default is 200 queries).")
    for key, param in s.space.items():
        # every key must exist in the recipe's schema, and every choice must be a value it takes (a list
        # of weights as long as the widths): a typo fails here, not in trial 7
        for value in param.choices if param.choices is not None else [sample_value(param)]:
            try:
                load(path, [*overrides, f"{key}={toml_value(value)}"], registry=registry, check_sweep=False)
            except UserError as exc:
                problems.append(f"[sweep.space] \"{key}\" = {toml_value(value)}: {exc}")
                break
    if s.sampler == "grid" and any(p.choices is None and p.step is None for p in s.space.values()):
        problems.append("[sweep] sampler = \"grid\" needs choices (or low, high and step) for every key.")
    if s.dims and s.weights and len(s.weights) != len(s.dims):
        problems.append(f"[sweep] weights: {len(s.weights)} weights for {len(s.dims)} dims.")
    if s.dims and widths is not None and set(s.dims) - set(widths):
        problems.append(f"[sweep] dims: {sorted(set(s.dims) - set(widths), reverse=True)} are not among the widths the "
                        f"run trains and scores ({widths}); name some of those.")
    columns = [*models.keys(), *(c.key for c in compare)]
    if s.column not in columns and not any(makes_column(c.key, s.column) for c in compare):
        close = difflib.get_close_matches(s.column, columns, n=1, cutoff=0.5)
        problems.append(f"[sweep] column: '{s.column}' is not a column the run will have"
                        + (f"; did you mean '{close[0]}'?" if close else ".")
                        + f" It will have: {', '.join(columns)} (a comparison that makes several columns, or "
                          "a column with parameters of its own, keys each by them, as results.json's "
                          "validation_scores shows: funnel(mrl, shortlist=[50, 200]) makes "
                          "funnel(mrl, shortlist=50) and funnel(mrl, shortlist=200)).")
    return problems
