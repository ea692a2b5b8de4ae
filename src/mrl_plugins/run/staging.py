"""Where a run is assembled, how it is moved into place, and how an interrupted one resumes.

A run writes into a hidden folder beside its output directory (``.NAME.partial``) and moves it
into place only when everything is written, so an interrupted run never leaves a half-written
model or results where a finished run would be. Training checkpoints and finished models stay
in that folder until the run ends, so ``--resume`` can continue the newest interrupted run.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunAbandoned, UserError
from ..evidence.rundir import RunDir
from ..outputs.locks import FolderLock, lock_path
from ..recipe.load import Recipe

logger = logging.getLogger("mrl_plugins")

SCRATCH = ("checkpoints", "trained", "compared", "progress.json", "invocation.json")
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
RESUME_BINDING = ("seed", "model", "data", "validation", "mining", "loss", "dims", "warm_start", "objective", "train")
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
    from ..recipe.checks import fill_output_dir
    from ..recipe.load import output_path

    pattern = output_path(recipe.base_dir, fill_output_dir(recipe.settings.output_dir, recipe.settings.name, "*"))
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
    _lock: FolderLock | None = field(default=None, repr=False)

    overrides: tuple[str, ...] = ()

    @classmethod
    def for_run(cls, recipe: Recipe, *, resume: bool, out: Path | None = None) -> Staging:
        """``out``: the output folder of the run to resume (``mrl-run --resume DIR``), else the
        newest interrupted run of this recipe (``--resume``), else the recipe's output folder."""
        out = out if out is not None else find_resumable(recipe) if resume else recipe.output_dir
        return cls(out, staging_dir(out), recipe.path, overrides=tuple(recipe.overrides))

    def hint(self) -> str:
        """The exact command that continues this run (shell-quoted, with its --set overrides)."""
        words = ["mrl-run", str(self.recipe_path), *self._set_words(), "--resume"]
        return f"'{shlex.join(words)}' (or 'mrl-run --resume {shlex.quote(str(self.out))}')"

    # -- layout ------------------------------------------------------------------------------
    @property
    def run(self) -> RunDir:
        """The run folder being written (what moves to ``out`` when the run ends)."""
        return RunDir(self.dir)

    def model_dir(self, key: str) -> Path:
        """Where a trained model is saved: ``model/`` for the MRL model, else ``variants/<key>``."""
        return self.run.model_dir(key)

    def checkpoints(self, key: str) -> Path:
        return self.dir / "checkpoints" / key

    def done_marker(self, key: str) -> Path:
        """Written once a model is trained and saved, with its training facts."""
        return self.dir / "trained" / f"{key}.json"

    def compared(self, index: int, split: str = "eval") -> Path:
        """Where the ``index``-th comparison's finished columns (on ``split``) are kept until the run ends."""
        return self.dir / "compared" / (f"{index}.json" if split == "eval" else f"{index}-{split}.json")

    def has_resumable_state(self) -> bool:
        """Whether it holds checkpoints, finished models or comparisons that --resume would reuse."""
        return bool(self.reusable())

    def reusable(self) -> list[str]:
        """What --resume would reuse, in words."""
        out = [f"trained model '{p.stem}'" for p in sorted((self.dir / "trained").glob("*.json"))]
        for folder in sorted((self.dir / "checkpoints").glob("*")):
            numbers = (p.name.split("-")[1] for p in folder.glob("checkpoint-*"))
            steps = sorted(int(n) for n in numbers if n.isdigit())
            if steps:
                out.append(f"checkpoints of '{folder.name}' (newest checkpoint-{steps[-1]})")
        done = len(list((self.dir / "compared").glob("*.json")))
        if done:
            out.append(f"{done} finished comparison(s)")
        return out

    # -- what a run that stopped without a word left behind -------------------------------------------
    def record_invocation(self) -> None:
        """How this run was started, so ``mrl-run --resume DIR`` can start it the same way."""
        payload = {"recipe": str(self.recipe_path.absolute()), "overrides": list(self.overrides),
                   "output_dir": str(self.out.absolute())}  # absolute: resumable from any working directory
        _write_json(self.dir / "invocation.json", payload)

    def record_stage(self, key: str, message: str) -> None:
        """The stage under way, rewritten as each one starts: what the next run reads if this one
        is killed without a chance to speak (SIGKILL, the out-of-memory killer)."""
        payload = {"pid": os.getpid(), "stage": key, "message": message, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            _write_json(self.dir / "progress.json", payload)
        except OSError:
            pass  # a full disk is met, and reported, where the run writes what matters

    def leftover(self) -> str | None:
        """A sentence about an earlier run that stopped without finishing here, or ``None``."""
        try:
            progress = json.loads((self.dir / "progress.json").read_text())
            where = (f"during stage '{progress['stage']}' ({progress['message']}), last recorded {progress['at']}, "
                     f"pid {progress['pid']}")
        except (OSError, ValueError, KeyError, TypeError):
            if not self.dir.is_dir():
                return None
            where = "at an unknown stage"
        return f"an earlier run into {self.out} stopped without finishing {where}"

    # -- one run per output folder ------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return lock_path(self.out)

    def acquire(self) -> None:
        """Hold an exclusive lock on this output folder for the whole run (rank 0), or refuse."""
        lock = FolderLock(self.out, f"recipe {self.recipe_path}")
        lock.acquire(
            f"another run is writing {self.out} ({{holder}}); nothing was changed. Wait for it to finish, or give "
            f"this run another output_dir (--set output_dir=...)."
        )
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
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
        binding: list[str] = []
        free: list[str] = []
        for key in sorted((set(recorded["recipe"]) | set(resolved)) - {"output_dir"}):  # where, not what
            for sub, before, after in _differences(recorded["recipe"].get(key), resolved.get(key)):
                where = f"{key}.{sub}" if sub else key
                change = f"{where}: {before!r} -> {after!r}"
                (binding if key in RESUME_BINDING and (key,
                                                       sub.split(".")[0]) not in RESUME_FREE else free).append(change)
        if recorded["trained"] != trained:
            binding.append(f"models to train: {sorted(recorded['trained'])} -> {sorted(trained)}")
        if binding:
            raise UserError(
                f"--resume: the recipe changed since the interrupted run began, in ways its checkpoints and finished "
                f"models depend on ({'; '.join(binding)}); nothing was changed. Restore those values to resume, or "
                "start over with "
                f"'{shlex.join(['mrl-run', str(self.recipe_path), *self._set_words(), '--overwrite'])}'."
            )
        (self.dir / "run-recipe.json").write_text(json.dumps({"recipe": resolved, "trained": trained}, indent=2))
        return free

    def _set_words(self) -> list[str]:
        return [w for a in self.overrides for w in ("--set", a)]

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
        leftover = self.leftover()
        reusable = self.reusable()
        if not resume and reusable and not overwrite:
            raise UserError(
                f"{leftover or 'an interrupted run of this recipe'}; it left in {self.dir} what --resume will reuse: "
                f"{', '.join(reusable)}. Nothing was changed. Continue it with {self.hint()}, or pass --overwrite "
                "to discard it and start over."
            )
        if resume and leftover:
            logger.warning("%s; resuming, reusing %s", leftover,
                           ", ".join(reusable) or "nothing (it had finished nothing)")
        elif leftover:
            logger.warning("%s, with nothing to reuse; starting over", leftover)
        if not resume:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.record_invocation()

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
                f"cause and run {self.hint()} to finish again from the trained models."
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
            if isinstance(exc, RunAbandoned):
                shutil.rmtree(self.dir, ignore_errors=True)
                raise
            full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
            written = getattr(exc, "filename", None) or self.dir
            if not self.has_resumable_state():
                shutil.rmtree(self.dir, ignore_errors=True)
                if full:
                    raise DiskFull(f"the disk filled up while the run wrote {written}; nothing was kept. Free some "
                                   "space (the run needs room for its models) and run it again.") from None
                raise
            if full:
                raise DiskFull(f"the disk filled up while the run wrote {written}. The finished models "
                               f"and checkpoints are kept in {self.dir}: free some space and continue with "
                               f"{self.hint()}.") from None
            hint = (f"nothing was written to {self.out}; the finished models and checkpoints are kept in {self.dir}: "
                    f"fix the cause and continue with {self.hint()}")
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(f"interrupted: {hint}.") from None
            if isinstance(exc, UserError):
                kept = UserError(f"{exc} The run stopped with trained state: {hint}.")
                kept.exit_code = exc.exit_code
                raise kept from None
            logger.error("the run failed: %s", hint)
            raise


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def staged_invocation(folder: Path) -> tuple[Path, Path, list[str]]:
    """For ``mrl-run --resume DIR``: (recipe, output folder, overrides) of the interrupted run
    whose output folder (or staging folder) is ``folder``."""
    folder = Path(folder)
    if folder.name.startswith(".") and folder.name.endswith(".partial"):
        folder = folder.with_name(folder.name[1 : -len(".partial")])
    staged = staging_dir(folder)
    try:
        saved = json.loads((staged / "invocation.json").read_text())
        return Path(saved["recipe"]), Path(saved["output_dir"]), [str(o) for o in saved["overrides"]]
    except FileNotFoundError:
        if RunDir(folder).results_file.is_file():
            raise UserError(f"--resume {folder}: that run finished; there is nothing to resume.") from None
        raise UserError(f"--resume {folder}: no interrupted run there (no {staged}/invocation.json); pass the "
                        "output folder of a run that stopped, or the recipe with --resume.") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--resume {folder}: {staged}/invocation.json cannot be read ({exc}); resume with the "
                        "recipe instead: mrl-run RECIPE --resume (with the --set options it was started "
                        "with).") from None


def _differences(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted sub-key, before, after) for every leaf that differs between two tables."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after)):
            out += _differences(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if before == after else [(prefix, before, after)]
