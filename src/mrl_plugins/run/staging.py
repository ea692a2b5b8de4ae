"""Where a run is assembled, how it is moved into place, and how an interrupted one resumes.

A run writes into a hidden folder beside its output directory (``.NAME.partial``) and moves it
into place only when everything is written, so an interrupted run never leaves a half-written
model or results where a finished run would be. Training checkpoints and finished models stay
in that folder until the run ends, so ``--resume`` can continue the newest interrupted run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import UserError
from ..recipe import Recipe
from ..run_models import MRL

logger = logging.getLogger("mrl_plugins")

SCRATCH = ("checkpoints", "trained")
"""Staging sub-folders that exist only while a run is under way. (``variants/`` stays: the
other trained models of the run, which ``mrl-run demo`` offers beside base and MRL.)"""


class Interrupted(UserError):
    """A run stopped mid-way with its state kept; the message says how to resume."""

    exit_code = 130


class DiskFull(UserError):
    """The disk filled up during a run: a failure of the machine, not of the recipe."""

    exit_code = 1


class MoveFailed(UserError):
    """The run finished but could not be moved into place; it stays, whole, where it was built."""

    exit_code = 1


#: Recipe keys whose change makes a resumed run's checkpoints and finished models wrong.
RESUME_BINDING = ("seed", "model", "data", "loss", "dims", "warm_start", "objective", "train")
#: ... except these, which only change how often state is written or logged.
RESUME_FREE = {("train", "checkpoint_steps"), ("train", "logging_steps")}


def _move(src: Path, dst: Path) -> None:
    """One rename (a seam for the fault tests)."""
    src.rename(dst)


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
    _lock: IO[str] | None = field(default=None, repr=False)

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

    # -- one run per output folder ------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.out.with_name(f".{self.out.name}.lock")

    def acquire(self) -> None:
        """Hold an exclusive lock on this output folder for the whole run (rank 0), or refuse."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(
                f"another run is writing {self.out} ({holder}); nothing was changed. Wait for it to finish, or give "
                f"this run another output_dir (--set output_dir=...)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, recipe {self.recipe_path}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            self.lock_path.unlink(missing_ok=True)  # unlink while still holding it: no one can take a stale file
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # -- resuming the same recipe -------------------------------------------------------------------
    def record_recipe(self, resolved: dict[str, Any], trained: dict[str, Any]) -> None:
        """What this run trains, so that --resume can refuse a recipe that would not match it."""
        (self.dir / "run-recipe.json").write_text(json.dumps({"recipe": resolved, "trained": trained}, indent=2))

    def check_resume(self, resolved: dict[str, Any], trained: dict[str, Any]) -> list[str]:
        """Refuse a changed recipe whose checkpoints would no longer fit; return the harmless changes."""
        path = self.dir / "run-recipe.json"
        if not path.is_file():
            return []
        recorded = json.loads(path.read_text())
        binding, free = [], []
        for key in sorted(set(recorded["recipe"]) | set(resolved)):
            for sub, before, after in _differences(recorded["recipe"].get(key), resolved.get(key)):
                where = f"{key}.{sub}" if sub else key
                change = f"{where}: {before!r} -> {after!r}"
                (binding if key in RESUME_BINDING and (key, sub.split(".")[0]) not in RESUME_FREE else free).append(change)
        if recorded["trained"] != trained:
            binding.append(f"models to train: {sorted(recorded['trained'])} -> {sorted(trained)}")
        if binding:
            raise UserError(
                f"--resume: the recipe changed since the interrupted run began, in ways its checkpoints and finished "
                f"models depend on ({'; '.join(binding)}); nothing was changed. Restore those values to resume, or "
                f"start over with 'mrl-run {self.recipe_path} --overwrite'."
            )
        (self.dir / "run-recipe.json").write_text(json.dumps({"recipe": resolved, "trained": trained}, indent=2))
        return free

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
        """Move the finished run into place, then drop its scratch folders. An old output is
        replaced only at the very end, and put back if the move fails; a failed move keeps the
        finished run where it was built and says so."""
        old = None
        try:
            if self.out.exists():
                old = self.out.with_name(f".{self.out.name}.replaced-{os.getpid()}")
                _move(self.out, old)
            _move(self.dir, self.out)
        except OSError as exc:
            if old is not None and old.exists() and not self.out.exists():
                _move(old, self.out)
            raise MoveFailed(
                f"the run finished, but moving it into {self.out} failed ({exc.strerror or exc}); nothing is lost: "
                f"the finished run is whole in {self.dir}. Move it yourself (mv '{self.dir}' '{self.out}') or fix the "
                f"cause and run 'mrl-run {self.recipe_path} --resume' to finish again from the trained models."
            ) from None
        for scratch in (*SCRATCH, "run-recipe.json"):
            target = self.out / scratch
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    @contextmanager
    def guard(self, *, is_main: bool) -> Iterator[None]:
        """On failure keep what ``--resume`` can reuse (checkpoints, finished models), whatever the
        failure and the stage, and say how to continue; leave nothing when there is nothing to reuse."""
        try:
            yield
        except BaseException as exc:
            if not is_main or isinstance(exc, MoveFailed):
                raise
            full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            if not self.has_resumable_state():
                shutil.rmtree(self.dir, ignore_errors=True)
                if full:
                    raise DiskFull(f"the disk filled up while the run wrote {exc.filename or self.dir}; nothing was kept. "
                                   f"Free some space (the run needs room for its models) and run it again.") from None
                raise
            if full:
                raise DiskFull(f"the disk filled up while the run wrote {exc.filename or self.dir}. The finished models "
                               f"and checkpoints are kept in {self.dir}: free some space and continue with "
                               f"'mrl-run {self.recipe_path} --resume'.") from None
            hint = (f"nothing was written to {self.out}; the finished models and checkpoints are kept in {self.dir}: "
                    f"fix the cause and continue with 'mrl-run {self.recipe_path} --resume'")
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(f"interrupted: {hint}.") from None
            if isinstance(exc, UserError):
                kept = UserError(f"{exc} The run stopped with trained state: {hint}.")
                kept.exit_code = exc.exit_code
                raise kept from None
            logger.error("the run failed: %s", hint)
            raise


def _differences(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted sub-key, before, after) for every leaf that differs between two tables."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after)):
            out += _differences(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if before == after else [(prefix, before, after)]
