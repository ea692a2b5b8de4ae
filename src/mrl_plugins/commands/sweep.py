"""``mrl-run sweep``: an Optuna study over a recipe, then one final run of the best values."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..components import Command
from ..errors import UserError
from .args import positive, recipe_arguments
from .logs import setup_logging


@dataclass(frozen=True)
class SweepRequest:
    """The recipe with its ``[sweep]`` table, its overrides, and how this process takes part."""

    recipe: Path
    overrides: tuple[str, ...]
    trials: int | None
    storage: str | None
    worker: bool
    quiet: bool
    final: bool = True
    """Run the best recipe once, in full, after writing it (``--no-final``: write it only)."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SweepRequest:
        return cls(args.recipe, tuple(args.overrides), args.trials, args.storage, args.worker, args.quiet,
                   not args.no_final)


class Sweep(Command):
    """Hyperparameter search on the validation split (Optuna); then one final run of the best recipe."""

    name = "sweep"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        recipe_arguments(parser)
        parser.add_argument("--trials", type=positive, help="Trials in the study (default: [sweep] trials); a rerun "
                            "continues the study up to this many.")
        parser.add_argument("--storage", help="Optuna storage URL shared by several workers, e.g. "
                            "postgresql://user@host/db (default: sqlite in the sweep's folder).")
        parser.add_argument("--worker", action="store_true",
                            help="Run trials only: leave the best recipe and the final run to one 'mrl-run sweep' "
                            "without --worker.")
        parser.add_argument("--no-final", action="store_true",
                            help="Write the trials table, the plots and the best recipe, but do not run it (the "
                            "final run is a full run of the recipe: run it later with 'mrl-run BEST_RECIPE').")
        parser.add_argument("-q", "--quiet", action="store_true", help="Only warnings and the sweep's summary.")

    def run(self, args: argparse.Namespace) -> int:
        return sweep(SweepRequest.from_args(args))


def sweep(request: SweepRequest) -> int:
    """Run the study's trials (and, unless a worker, its outputs and its final run)."""
    setup_logging(quiet=request.quiet)  # first: tqdm reads TQDM_DISABLE when it is imported (Optuna does)
    try:
        import optuna
    except ImportError:
        raise UserError("mrl-run sweep needs Optuna: pip install 'mrl-plugins[sweep]'.") from None
    from ..sweep.outputs import write_outputs
    from ..sweep.study import Sweep as Study
    from ..sweep.study import assignments, final_run

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported once, by the sweep
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, plots
    found = Study.open(request.recipe, list(request.overrides), storage=request.storage, trials=request.trials)
    study = found.optimize()
    if request.worker:
        print(f"sweep '{study.study_name}': this worker is done ({len(study.trials)} trials in the study).")
        return 0
    choice = write_outputs(found, study)
    print(f"sweep '{study.study_name}': best validation {study.best_value:.4f} (trial {choice.best.number}); chosen: "
          f"{choice.note}; {', '.join(assignments(choice.params)) or 'the recipe as written'} "
          f"(trials: {found.folder / 'sweep.md'}).")
    if not request.final:
        return 0
    results = final_run(found, choice.params)
    if results is not None:
        from ..present.report import format_table

        print()
        print(format_table(results))
        print(f"The best recipe, run once and scored on the evaluation set: {found.folder / 'final'}")
    return 0
