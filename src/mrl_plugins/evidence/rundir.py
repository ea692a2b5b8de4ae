"""The layout of a run folder, known here and nowhere else.

A finished run (what ``mrl-run RECIPE`` leaves in its ``output_dir``)::

    results.json          every column's metrics, costs, intervals (:class:`RunResults`)
    recipe.toml           the resolved recipe, every default written out
    report.md             the report; metrics.png, costs.png its plots
    model/                the MRL model (sentence-transformers, loads truncated)
    variants/<key>/       the run's other trained models (no-mrl, mrl-plain, seeds …)
    comparisons/<folder>/ what a comparison kept (the adaptor's model/), one folder per column
                          identity (:meth:`RunDir.comparison`), never per label
    evaluation/           the evaluation set, every model's embeddings, per-query scores

The run writes through a :class:`RunDir` of its staging folder; the report, publishing, the
card, ``mrl-run index RUN``, the demo and the CLI read through :meth:`RunDir.open`, which
refuses, in one message, anything that is not a finished run.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..models.loading import ResolvedModel, embedding_dim_from_files, resolve_model
from .results import MRL, RESULTS_FILE, RunResults

EVALUATION = "evaluation"
METRICS_PLOT, COSTS_PLOT = "metrics.png", "costs.png"
"""The report's plots, beside report.md (which links them by these names)."""


def column_folder(key: str) -> str:
    """A column key as a folder name: ``adaptor(mrl)`` → ``adaptor-mrl``; a long key keeps a
    readable start and a hash of the whole, so two keys never share a folder."""
    slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") or "column"
    if len(slug) <= 60 and re.fullmatch(r"[a-z0-9(),= _.-]+", key):
        return slug
    return f"{slug[:48].rstrip('-')}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


class RunDir:
    """Every path of one run folder (finished, or being written in staging)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths ---------------------------------------------------------------------------------
    @property
    def results_file(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def recipe_file(self) -> Path:
        return self.path / "recipe.toml"

    @property
    def report_file(self) -> Path:
        return self.path / "report.md"

    @property
    def metrics_plot(self) -> Path:
        return self.path / METRICS_PLOT

    @property
    def costs_plot(self) -> Path:
        return self.path / COSTS_PLOT

    @property
    def model(self) -> Path:
        """The MRL model."""
        return self.path / "model"

    @property
    def variants(self) -> Path:
        return self.path / "variants"

    @property
    def evaluation(self) -> Path:
        return self.path / EVALUATION

    def model_dir(self, key: str) -> Path:
        """Where the run's model ``key`` is saved: ``model/`` for MRL, else ``variants/<key>``."""
        return self.model if key == MRL else self.variants / key

    def comparison(self, key: str) -> Path:
        """The folder a comparison's column ``key`` keeps files in (the adaptor's model)."""
        return self.path / "comparisons" / column_folder(key)

    def relative(self, path: Path) -> str:
        """``path`` as results.json records it: relative to the run folder, with ``/``."""
        return path.relative_to(self.path).as_posix()

    def saved(self, relative: str) -> Path:
        return self.path / relative

    def scratch(self, name: str) -> Path:
        """A hidden working folder inside the run (``.NAME``), for a transaction that must not
        touch the run's files until it has succeeded (publishing writes its card there)."""
        return self.path / f".{name}"

    def plots(self) -> list[Path]:
        return [p for p in (self.metrics_plot, self.costs_plot) if p.is_file()]

    def trained_models(self) -> dict[str, Path]:
        """The run's saved trained models by key: MRL, then every variant folder."""
        found = {MRL: self.model} if (self.model / "modules.json").is_file() else {}
        if self.variants.is_dir():
            found |= {p.name: p for p in sorted(self.variants.iterdir()) if (p / "modules.json").is_file()}
        return found

    # -- reading a finished run --------------------------------------------------------------
    @classmethod
    def is_run(cls, path: str | Path) -> bool:
        """Whether ``path`` holds a finished run (its results.json and its model)."""
        run = cls(path)
        return run.results_file.is_file() and (run.model / "modules.json").is_file()

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """A finished run, or a :class:`UserError` that says what ``path`` is instead."""
        run = cls(Path(path).expanduser())
        if not run.path.exists():
            raise UserError(f"{run.path}: no such folder; pass the output_dir of a finished 'mrl-run'.")
        if not run.path.is_dir():
            raise UserError(f"{run.path}: a file, not a run folder; pass the output_dir of a finished 'mrl-run'.")
        if not run.results_file.is_file():
            partial = run.path.with_name(f".{run.path.name}.partial")
            hint = (f" An interrupted run is kept in {partial}: continue it with 'mrl-run --resume {run.path}'."
                    if partial.is_dir() else "")
            raise UserError(f"{run.path}: not a finished run (no results.json); pass the output_dir of a completed "
                            f"'mrl-run'.{hint}")
        return run

    def results(self) -> RunResults:
        return RunResults.load(self.results_file)

    def recipe_table(self, section: str) -> dict[str, Any]:
        """One table of the run's resolved recipe (``publish``…), empty when it has none."""
        try:
            table = tomllib.loads(self.recipe_file.read_text(encoding="utf-8")).get(section, {})
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path}: not a finished run ({exc}); pass the output_dir of a completed "
                            "'mrl-run'.") from None
        return table if isinstance(table, dict) else {}


def resolve_model_arg(name: str) -> tuple[ResolvedModel, Path | None]:
    """A model as commands name it: a run's output directory (its ``model/``, and the run, whose
    evidence then sets defaults), a model folder, or a Hub id (with its packaged offline copy)."""
    from ..models.checks import weights_problems

    path = Path(name).expanduser()
    run: Path | None = None
    if RunDir.is_run(path):
        model = str(RunDir(path.resolve()).model)
        resolved, run = ResolvedModel(model, model, "local path"), path
    else:
        resolved = resolve_model(name)
        if resolved.origin == "local path":
            resolved = ResolvedModel(str(Path(resolved.location)), resolved.location, resolved.origin)
            if embedding_dim_from_files(resolved.location) is None:
                raise UserError(f"{name}: a folder, but neither a run's output directory nor a sentence-transformers "
                                "model.")
    if resolved.is_local:  # before any lock is taken or output written: the model is whole
        problems = weights_problems(name, Path(resolved.location))
        if problems:
            raise UserError(problems[0])
    return resolved, run
