"""``mrl-run RECIPE`` (``mrl-run run``): run a recipe, or resume an interrupted run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..components import Command
from ..errors import UserError
from .args import recipe_arguments
from .logs import setup_logging


@dataclass(frozen=True)
class RunRequest:
    """What ``mrl-run RECIPE`` was asked, resolved once: the recipe and its ``--set`` overrides
    (those an interrupted run was started with first, when one is resumed by its folder), and
    the folder to continue (``out``) when one is."""

    recipe: Path
    overrides: tuple[str, ...]
    out: Path | None
    overwrite: bool
    resume: bool
    quiet: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunRequest:
        from ..run.staging import staged_invocation, staging_dir

        recipe, overrides, out = args.recipe, list(args.overrides), None
        interrupted = args.resume and staging_dir(args.recipe).is_dir()
        if args.recipe.is_dir() or args.recipe.name.endswith(".partial") or interrupted:
            if not args.resume:
                raise UserError(f"{args.recipe}: a folder, not a recipe; to continue an interrupted run there, pass "
                                f"--resume (mrl-run --resume {args.recipe}).")
            recipe, out, saved = staged_invocation(args.recipe)
            overrides = saved + overrides
        return cls(recipe, tuple(overrides), out, args.overwrite, args.resume, args.quiet)


class Run(Command):
    """Run a recipe (the default command)."""

    name = "run"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        recipe_arguments(parser)
        parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output directory.")
        parser.add_argument("--resume", action="store_true",
                            help="Continue the newest interrupted run of this recipe; or, given an interrupted run's "
                            "output folder instead of a recipe (mrl-run --resume DIR), that run, with the recipe and "
                            "--set options it was started with.")
        parser.add_argument("-q", "--quiet", action="store_true", help="Only warnings and the final table.")

    def run(self, args: argparse.Namespace) -> int:
        return run_recipe(RunRequest.from_args(args))


def run_recipe(request: RunRequest) -> int:
    """Run (or resume) the recipe, write its documents, push it when asked, print its tables."""
    from ..present.report import format_table
    from ..publish.documents import push_if_asked, write_run_documents
    from ..recipe import load_recipe
    from ..run import run

    recipe = load_recipe(request.recipe, request.overrides)
    setup_logging(quiet=request.quiet)
    results = run(recipe, overwrite=request.overwrite, resume=request.resume, out=request.out,
                  documents=write_run_documents)
    if results is None:  # a non-zero rank under torchrun: rank 0 reports
        return 0
    push_if_asked(recipe.output_dir, results, recipe)
    print()
    print(format_table(results))
    print("Model, results.json, report.md with its plots, the evaluation set and the resolved recipe: "
          f"{recipe.output_dir}")
    return 0
