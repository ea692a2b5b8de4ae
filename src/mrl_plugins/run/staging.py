"""Where a run is assembled, how it is moved into place, and how an interrupted one resumes.

A run writes into a hidden folder beside its output directory (``.NAME.partial``) and moves it
into place only when everything is written, so an interrupted run never leaves a half-written
model or results where a finished run would be. Training checkpoints and finished models stay
in that folder until the run ends, so ``--resume`` can continue the newest interrupted run.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..recipe import Recipe
from ..run_models import MRL

logger = logging.getLogger("mrl_plugins")

SCRATCH = ("checkpoints", "variants", "trained")
"""Staging sub-folders that exist only while a run is under way."""


class Interrupted(UserError):
    """A run stopped mid-way with its state kept; the message says how to resume."""

    exit_code = 130


def staging_dir(out: Path) -> Path:
    """Where a run is assembled: hidden, beside the output, the same for every rank and resume."""
    return out.with_name(f".{out.name}.partial")


def find_resumable(recipe: Recipe) -> Path:
    """The output directory of the newest interrupted run of this recipe (for ``--resume``)."""
    template = recipe.settings.output_dir.format(name=recipe.settings.name, timestamp="*")
    pattern = Path(template)
    candidates = sorted(pattern.parent.glob(f".{pattern.name}.partial"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise UserError(
            f"--resume: no interrupted run of '{recipe.path}' to resume (looked for "
            f"{pattern.parent / ('.' + pattern.name + '.partial')}). Run it without --resume."
        )
    staged = candidates[-1]
    return staged.with_name(staged.name[1 : -len(".partial")])


@dataclass
class Staging:
    """The staging folder of one run and its final destination."""

    out: Path
    dir: Path
    recipe_path: Path

    @classmethod
    def for_run(cls, recipe: Recipe, *, resume: bool) -> Staging:
        out = find_resumable(recipe) if resume else recipe.output_dir
        return cls(out, staging_dir(out), recipe.path)

    # -- layout ------------------------------------------------------------------------------
    def model_dir(self, key: str) -> Path:
        """Where a trained model is saved: ``model/`` for the MRL model, else ``variants/<key>``."""
        return self.dir / "model" if key == MRL else self.dir / "variants" / key

    def checkpoints(self, key: str) -> Path:
        return self.dir / "checkpoints" / key

    def done_marker(self, key: str) -> Path:
        """Written once a model is trained and saved, with its training facts."""
        return self.dir / "trained" / f"{key}.json"

    def has_resumable_state(self) -> bool:
        """Whether it holds checkpoints or finished models that --resume would reuse."""
        return any((self.dir / "checkpoints").glob("*/checkpoint-*")) or any((self.dir / "trained").glob("*.json"))

    # -- life cycle ---------------------------------------------------------------------------
    def prepare(self, *, overwrite: bool, resume: bool) -> None:
        """Refuse to replace what the user has, then create (or, resuming, keep) the folder."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise UserError(f"output_dir '{out}' exists and is a file; choose another output_dir.")
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise UserError(
                f"output directory '{out}' is not empty; nothing was changed. Choose another one "
                f"(--set output_dir=...) or pass --overwrite to replace it."
            )
        if not resume and self.has_resumable_state() and not overwrite:
            raise UserError(
                f"an interrupted run of this recipe left checkpoints in {self.dir}; nothing was changed. Continue it "
                f"with 'mrl-run {self.recipe_path} --resume', or pass --overwrite to discard them and start over."
            )
        if not resume:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)

    def finalize(self) -> None:
        """Drop the scratch folders and move the finished run into place; an old output is
        replaced only at the very end."""
        for scratch in SCRATCH:
            shutil.rmtree(self.dir / scratch, ignore_errors=True)
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.replaced-{os.getpid()}")
            self.out.rename(old)
            self.dir.rename(self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            self.dir.rename(self.out)

    @contextmanager
    def guard(self, *, is_main: bool) -> Iterator[None]:
        """On failure keep what ``--resume`` can reuse and say so; otherwise leave nothing."""
        try:
            yield
        except BaseException as exc:
            if not is_main:
                raise
            if not self.has_resumable_state() or isinstance(exc, UserError):
                shutil.rmtree(self.dir, ignore_errors=True)
                raise
            hint = (f"nothing was written to {self.out}; continue with 'mrl-run {self.recipe_path} --resume' "
                    f"(state kept in {self.dir})")
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(f"interrupted: {hint}.") from None
            logger.error("the run failed: %s", hint)
            raise
