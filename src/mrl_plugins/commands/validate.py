"""``mrl-run validate``: check a recipe without loading a model (``--data``: and its data)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..components import Command
from .args import recipe_arguments


@dataclass(frozen=True)
class ValidateRequest:
    """The recipe and its overrides, and whether to load its data too."""

    recipe: Path
    overrides: tuple[str, ...]
    data: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ValidateRequest:
        return cls(args.recipe, tuple(args.overrides), args.data)


class Validate(Command):
    """Check a recipe without loading a model."""

    name = "validate"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        recipe_arguments(parser)
        parser.add_argument("--data", action="store_true",
                            help="Also load the data and run the checks that need it (as a run does before training).")

    def run(self, args: argparse.Namespace) -> int:
        return validate(ValidateRequest.from_args(args))


def validate(request: ValidateRequest) -> int:
    """Print what the recipe will do, or raise its problems (all of them, in one message)."""
    from ..recipe import load_recipe
    from ..recipe.checks import memory_warning
    from ..recipe.data import data_lines

    recipe = load_recipe(request.recipe, request.overrides)
    dims = recipe.dims.component.dims(recipe.full_dim) if recipe.full_dim else None
    loaded = check_data(recipe) if request.data else None
    sizes = loaded[0] if loaded else data_size_hints(recipe)
    print(f"{request.recipe}: OK" + (" (data loaded and checked)" if request.data else ""))
    warning = memory_warning(recipe, full_dim=recipe.full_dim, **sizes)
    if warning:
        print(f"  warning   {warning}")
    print(f"  model     {recipe.model.requested}  ({recipe.model.origin}, {recipe.full_dim or '?'} dims)")
    print(f"  data      {recipe.data.name}  ({recipe.row_format} rows, plugin {recipe.data.plugin})")
    if loaded:  # the counts the run prints when it loads the same data
        for level, line in data_lines(recipe, *loaded[1:]):
            print(f"  {'warning   ' if level >= logging.WARNING else '          '}{line.strip()}")
    print(f"  loss      {recipe.objective.name}({recipe.loss.name})")
    if recipe.warm_start:
        print(f"  warm      {recipe.warm_start.name} (and the same training without it, for comparison)")
    print(f"  dims      {dims if dims else recipe.dims.name + ' (model width known when it loads)'}")
    print(f"  models    {recipe.models.describe()}")
    if recipe.compare:
        print(f"  compare   {', '.join(c.label for c in recipe.compare)}")
    if recipe.tasks:
        print(f"  tasks     {', '.join(t.component.label() for t in recipe.tasks)}")
    print(f"  output    {recipe.output_dir}")
    return 0


def data_size_hints(recipe: Any) -> dict[str, int | None]:
    """The evaluation set's size as the data source's parameters state it (without loading it)."""
    params = recipe.data.params
    queries, corpus = getattr(params, "eval_queries", None), getattr(params, "corpus_size", None)
    texts = (queries or 0) + (corpus or 0) or None
    return {"eval_texts": texts, "fit_texts": None}


def check_data(recipe: Any) -> tuple[dict[str, int | None], Any, dict[str, int]]:
    """Load the recipe's data, split off its validation set as the run does, and run every
    component's checks that need it: the data's sizes, the bundle and where validation came from."""
    from ..components import ValidationContext
    from ..errors import RecipeError
    from ..recipe.data import read_data_source, with_validation
    from ..recipe.load import guarded_check, variant_specs

    bundle = read_data_source(recipe)
    ctx = ValidationContext(recipe.base_dir, recipe.full_dim, recipe.settings.eval.k, recipe.registry, bundle)
    specs = [s for s in (recipe.data, recipe.loss, recipe.dims, recipe.objective, recipe.warm_start,
                         *recipe.compare) if s]
    specs += variant_specs(recipe.compare, recipe.registry)
    problems = [f"{spec.where} {p}" for spec in specs for p in guarded_check(spec, ctx)]
    if problems:
        raise RecipeError(f"{recipe.path} (checked against its data)", problems)
    sizes: dict[str, int | None] = {"eval_texts": len(bundle.eval.queries) + len(bundle.eval.corpus),
                                    "fit_texts": len(bundle.training_texts("all"))}
    return (sizes, *with_validation(recipe, bundle))
