"""``mrl-run sweep RECIPE``: hyperparameter search with Optuna, chosen on the validation split.

A recipe's ``[sweep]`` table names the search space (any recipe key, as ``--set`` spells it:
``train.learning_rate``, ``train.batch_size``, ``dims.weights``, ``compare.1.epochs``…), the
objective (a validation metric of one column, averaged over named widths with weights) and the
number of trials. Each trial is an ordinary run of the recipe with the trial's values set, in
its own run folder (locked, atomic, resumable like any run) under ``<sweep>/trials/``, scored
on the **validation split only**: no trial ever scores the evaluation set. The study lives in
Optuna's storage: an SQLite file in the sweep folder by default, or ``--storage
postgresql://…`` so that several machines run trials of one study (Optuna's own distributed
mode; nothing here coordinates workers). Run the command again and the study continues.

Optuna's own machinery does the rest: TPE (the default) or a grid (``GridSampler``) or random
sampling, median pruning on the MRL model's validation curve (a trial reports its score every
``report_every`` steps, or once per epoch), heartbeats that mark a trial as failed when its
worker on another machine stops beating, and a failed trial recorded with its message while the
study goes on.

Two things are ours. A trial whose worker was killed on this machine (``SIGKILL``, the OOM killer)
is found at once when the sweep runs again (its worker's PID, recorded with the trial, is gone)
and marked failed ("its worker was killed"), rather than staying RUNNING for good and counting
towards the total. And TPE and random sampling are seeded per trial (:class:`TrialSeeded`: the sweep's seed
mixed with the trial's number), not per process: a sweep run again, or a second worker, samples
anew rather than repeating the first process's draws, while one uninterrupted worker still
reproduces its sweep exactly. A killed trial is retried once with its values only on a grid,
where each point is to be measured; TPE and random sampling go on drawing new values.

When the study has its trials, the sweep writes its trials table (``trials.csv``,
``sweep.md``), Optuna's parameter-importance and parallel-coordinate plots, the best trial's
recipe beside the original (``<recipe>.sweep-best.toml``), and runs that recipe once, in full:
the one time the evaluation set is scored (``<sweep>/final``).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import RunAbandoned, UserError
from ..evaluation.metrics import Metric
from ..evidence.results import BASE, MRL, RunResults, makes_column
from ..evidence.rundir import RunDir
from ..recipe.load import Recipe, load_recipe
from ..recipe.run_models import RunModels
from ..recipe.schema import SweepParam, SweepSection, toml_value

logger = logging.getLogger("mrl_plugins")

HEARTBEAT_SECONDS = 30


def assignments(params: dict[str, Any]) -> list[str]:
    return [f"{key}={toml_value(value)}" for key, value in params.items()]


@dataclass
class Sweep:
    """A recipe's sweep: where it lives, its settings and the study's storage."""

    recipe: Recipe
    settings: SweepSection
    folder: Path
    storage_url: str
    trials: int

    @classmethod
    def open(cls, path: Path, overrides: list[str], *, storage: str | None, trials: int | None) -> Sweep:
        recipe = load_recipe(path, overrides)  # its [sweep] table checked with it (recipe.sweep.sweep_problems)
        s = recipe.settings.sweep
        if s is None:
            raise UserError(f"{path}: no [sweep] table; add one naming the search space, e.g. [sweep.space] "
                            '"train.learning_rate" = { low = 1e-5, high = 1e-4, log = true } (see README, "Sweeps").')
        name = recipe.settings.name
        from ..recipe.load import output_path

        # relative to the recipe like the run's output_dir, and absolute from here on: each trial's
        # output_dir is passed as an override, which would otherwise be resolved against the recipe again
        folder = output_path(recipe.base_dir, s.output_dir.replace("{name}", name)).absolute()
        folder.mkdir(parents=True, exist_ok=True)
        url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
        return cls(recipe, s, folder, url, trials or s.trials)

    # -- the study ---------------------------------------------------------------------------
    def study(self) -> Any:
        import optuna

        url = self.storage_url
        if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")  # psycopg 3, SQLAlchemy's other driver
        for attempt in range(3):  # workers starting together may race to create Optuna's tables
            try:
                storage = optuna.storages.RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=2 * HEARTBEAT_SECONDS,
                    **(retry(optuna) if self.settings.sampler == "grid" else {}),
                )
                break
            except Exception as exc:
                if attempt == 2 or "sqlalchemy" not in type(exc).__module__:
                    raise UserError(f"--storage {self.storage_url}: Optuna cannot use it: {type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
                time.sleep(1 + attempt)
        s, seed = self.settings, self.settings.seed if self.settings.seed is not None else self.recipe.settings.seed
        sampler: Any
        if s.sampler == "grid":  # its seed fixes the grid's order; its points are drawn from the unmeasured ones
            sampler = optuna.samplers.GridSampler({k: grid(p) for k, p in s.space.items()}, seed=seed)
        elif s.sampler == "random":
            sampler = TrialSeeded(lambda trial_seed: optuna.samplers.RandomSampler(seed=trial_seed), seed)
        else:
            sampler = TrialSeeded(lambda trial_seed: optuna.samplers.TPESampler(seed=trial_seed), seed)
        pruner = optuna.pruners.MedianPruner(n_warmup_steps=0) if s.pruner == "median" else optuna.pruners.NopPruner()
        return optuna.create_study(study_name=self.recipe.settings.name, storage=storage, sampler=sampler,
                                   pruner=pruner, direction="maximize", load_if_exists=True)

    def widths(self, scored: Iterable[int]) -> tuple[list[int], list[float]]:
        """The widths the objective averages (``[sweep] dims``, else every width scored) and their
        weights (``[sweep] weights``, else equal)."""
        dims = self.settings.dims or sorted(scored, reverse=True)
        return dims, self.settings.weights or [1.0] * len(dims)

    def objective_value(self, metrics: dict[int, dict[str, float]]) -> float:
        """The weighted mean of the metric at the sweep's widths."""
        dims, weights = self.widths(metrics)
        key = Metric(self.settings.metric).key(self.recipe.settings.eval.k)
        return sum(w * metrics[d][key] for w, d in zip(weights, dims)) / sum(weights)

    def run_trial(self, trial: Any) -> float:
        from ..publish.documents import write_run_documents
        from ..run import run

        # the baseline runs the recipe as written: none of the space's values set (its own are read back from its
        # run folder when it is chosen, :func:`recipe_values`)
        baseline = bool(trial.user_attrs.get("baseline"))
        params = {} if baseline else {key: suggest(trial, key, p) for key, p in self.settings.space.items()}
        out = self.folder / "trials" / f"trial-{trial.number:04d}"
        overrides = [*self.recipe.overrides, *assignments(params), f"output_dir={toml_value(str(out))}"]
        if self.settings.report_every:  # the validation curve the pruner reads (else once per epoch)
            overrides.append(f"validation.eval_steps={self.settings.report_every}")
        trial.set_user_attr("folder", str(out))
        trial.set_user_attr("worker", worker())
        try:
            recipe = trial_recipe(load_recipe(self.recipe.path, overrides, registry=self.recipe.registry),
                                  self.settings.column)
            results = run(recipe, overwrite=True, trial=TrialHooks(self, trial), documents=write_run_documents)
        except Pruned as exc:
            import optuna

            logger.info("trial %d %s", trial.number, exc)
            raise optuna.TrialPruned(str(exc)) from None
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)
            trial.set_user_attr("error", message)
            logger.warning("trial %d failed (the study goes on): %s", trial.number, message)
            raise
        assert results is not None
        column = self.settings.column
        if column not in results.validation:
            # the recipe's error, not the trial's: every trial would miss it, so the study stops here
            message = (f"[sweep] column = \"{column}\": the trial has no such column (it has "
                       f"{', '.join(results.validation)}); name one of those.")
            trial.set_user_attr("error", message)
            trial.study.stop()
            raise UserError(message)
        return self.objective_value(results.validation[column].metrics)

    def optimize(self) -> Any:
        import optuna
        from optuna.trial import TrialState

        study = self.study()
        self.fail_killed(study)
        if self.settings.baseline and self.settings.sampler != "grid" and "baseline" not in study.user_attrs:
            study.set_user_attr("baseline", "enqueued")  # once per study, whichever worker comes first
            study.enqueue_trial({}, user_attrs={"baseline": True})
        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        left = self.trials - len(study.get_trials(deepcopy=False, states=done))
        if left > 0:
            logger.info("sweep '%s': %d trials to run (%s)", study.study_name, left, self.storage_url)
            # trials under way in other workers count too, so that workers together stop at the total
            started = (*done, TrialState.RUNNING)
            study.optimize(self.run_trial, n_trials=left, catch=(Exception,),
                           callbacks=[optuna.study.MaxTrialsCallback(self.trials, states=started)])
        return study


    def fail_killed(self, study: Any) -> None:
        """Mark failed every RUNNING trial whose worker was on this machine and is gone, and remove
        what its run left half-written (and, on a grid, queue its values once more); other
        machines' trials are the heartbeat's."""
        import optuna
        from optuna.trial import TrialState

        optuna.storages.fail_stale_trials(study)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            was = trial.user_attrs.get("worker")
            if not isinstance(was, dict) or was.get("host") != worker()["host"] or worker_alive(was):
                continue
            study._storage.set_trial_user_attr(trial._trial_id, "error", f"its worker (process {was.get('pid')}) "
                                               "ended without finishing it (killed?)")
            study.tell(trial.number, state=TrialState.FAIL)
            logger.warning("trial %d: its worker (process %s) was killed; marked failed", trial.number,
                           was.get("pid"))
            folder = trial.user_attrs.get("folder")
            if isinstance(folder, str):  # its staging folder: never resumed (a retry is a new trial, a new folder)
                staging = Path(folder).with_name(f".{Path(folder).name}.partial")
                shutil.rmtree(staging, ignore_errors=True)
                Path(folder).with_name(f".{Path(folder).name}.lock").unlink(missing_ok=True)
            if self.settings.sampler == "grid" and "retry_of" not in trial.user_attrs and trial.params:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            elif trial.user_attrs.get("baseline") is True:  # the recipe as written is run again, once
                study.enqueue_trial({}, user_attrs={"baseline": "retry", "retry_of": trial.number})


def trial_recipe(recipe: Recipe, column: str) -> Recipe:
    """The recipe as a trial runs it: only what the objective's ``column`` needs. The comparisons
    that make it (its key, or a column of a comparison that makes several), the run's models they
    read, and always the base model and MRL; not the plain twin of a warm start, other seeds or
    variants, other comparisons, nor ``[[task]]`` tables, none of which the objective reads and
    each of which costs a trial time (the plain twin doubles a warm-started trial's training).
    The best recipe's final run trains and compares everything the recipe names."""
    compare = [c for c in recipe.compare if makes_column(c.key, column)]
    keep = {BASE, MRL, column} | {ref.run_key for c in compare for ref in c.reads if ref.run_key}
    models = RunModels({key: m for key, m in recipe.models.by_key.items() if key in keep})
    return replace(recipe, compare=compare, models=models, tasks=[])


def worker() -> dict[str, Any]:
    """This process, as a trial records its worker: host, PID and the PID's start time (a PID
    reused by another process is not mistaken for the worker)."""
    import socket

    import psutil

    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "started": me.create_time()}


def worker_alive(was: dict[str, Any]) -> bool:
    import psutil

    try:
        return bool(abs(psutil.Process(int(was["pid"])).create_time() - float(was["started"])) < 1)
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


class TrialSeeded:
    """An Optuna sampler seeded per trial: each trial's draws come from a sampler made for it with
    the sweep's seed mixed with the trial's number (unique in the study, whichever worker or
    process runs it). Optuna's samplers keep one random state per process, so a seeded sweep run
    again (or a second worker) would repeat the first process's draws; this keeps a seeded sweep
    reproducible and still samples anew after an interruption. TPE reads the study's trials from
    the storage, so a fresh one per trial loses nothing. (The grid is not wrapped: its seed fixes
    the order of its points, and it draws among the points not yet measured.)"""

    def __init__(self, make: Any, seed: int):
        self._make, self._seed = make, seed
        self._samplers: dict[int, Any] = {}

    def _of(self, trial: Any) -> Any:
        number = trial.number
        if number not in self._samplers:
            self._samplers[number] = self._make((self._seed * 1_000_003 + number) % 2**32)
        return self._samplers[number]

    def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._of(trial).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Nothing to reseed: every trial's sampler is seeded when it is made."""


def retry(optuna: Any) -> dict[str, Any]:
    """Retry once a grid trial whose worker stopped beating (killed): Optuna ≥ 4.9 names it otherwise."""
    storages = optuna.storages
    if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
        return {"heartbeat_stale_trial_callback": storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    return {"failed_trial_callback": storages.RetryFailedTrialCallback(max_retry=1)}


def _scalar(choice: Any) -> bool:
    return choice is None or isinstance(choice, (bool, int, float, str))


def optuna_choices(param: SweepParam) -> list[Any]:
    """A key's choices as Optuna stores them: its categorical choices must be scalars, so a list
    or table choice (``"dims.weights" = { choices = [[1, 1, 1, 1], [1, 1, 2, 4]] }``) goes to it as
    its TOML text, which :func:`decoded` reads back."""
    assert param.choices is not None
    return [c if _scalar(c) else toml_value(c) for c in param.choices]


def decoded(params: dict[str, Any], space: dict[str, SweepParam]) -> dict[str, Any]:
    """A trial's values as the recipe takes them: list and table choices read back from the TOML
    text Optuna holds (:func:`optuna_choices`); every other value as it is."""
    import tomllib

    out = {}
    for key, value in params.items():
        param = space.get(key)
        if param is not None and param.choices is not None and isinstance(value, str) and value not in param.choices:
            value = tomllib.loads(f"v = {value}")["v"]
        out[key] = value
    return out


def grid(param: SweepParam) -> list[Any]:
    if param.choices is not None:
        return optuna_choices(param)
    assert param.low is not None and param.high is not None and param.step is not None
    count = math.floor((param.high - param.low) / param.step + 1e-9) + 1
    values = [param.low + i * param.step for i in range(count)]
    return [int(v) for v in values] if param.integer else values


def suggest(trial: Any, key: str, param: SweepParam) -> Any:
    if param.choices is not None:
        return decoded({key: trial.suggest_categorical(key, optuna_choices(param))}, {key: param})[key]
    assert param.low is not None and param.high is not None
    if param.integer:
        return trial.suggest_int(key, int(param.low), int(param.high), log=param.log,
                                 step=int(param.step) if param.step else 1)
    return trial.suggest_float(key, param.low, param.high, log=param.log, step=param.step)


class Pruned(RunAbandoned):
    """Optuna's pruner stopped a trial: its run keeps nothing."""


class TrialHooks:
    """What a run hears from being a sweep's trial (:attr:`RunContext.trial`)."""

    def __init__(self, sweep: Sweep, trial: Any):
        self.sweep, self.trial = sweep, trial

    def describe(self) -> dict[str, Any]:
        return {"study": self.sweep.recipe.settings.name, "number": self.trial.number,
                "params": decoded(self.trial.params, self.sweep.settings.space)}

    def report(self, step: int, metrics: dict[int, dict[str, float]]) -> None:
        value = self.sweep.objective_value(metrics)
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise Pruned(f"pruned at step {step} (validation {value:.4f}, below the median of earlier trials there)")


def final_run(sweep: Sweep, params: dict[str, Any]) -> RunResults | None:
    """The best recipe, run once in full: the only time the evaluation set is scored."""
    from ..publish.documents import push_if_asked, write_run_documents
    from ..run import run

    out = sweep.folder / "final"
    if RunDir(out).results_file.is_file():
        final = RunResults.load(RunDir(out).results_file)
        if final.trial is None and _same_params(out, params):
            logger.info("the final run of these values exists: %s", out)
            return final
        shutil.rmtree(out)  # the sweep's own output, of other values: made again
    overrides = [*sweep.recipe.overrides, *assignments(params), f"output_dir={toml_value(str(out))}"]
    recipe = load_recipe(sweep.recipe.path, overrides, registry=sweep.recipe.registry)
    results = run(recipe, overwrite=True, documents=write_run_documents)
    if results is not None:
        push_if_asked(recipe.output_dir, results, recipe)
    return results


def recipe_values(out: Path, keys: Iterable[str]) -> dict[str, Any] | None:
    """The values a finished run's resolved recipe has at dotted keys (``None`` for a key it does
    not set); ``None`` when the run folder has no readable recipe."""
    import tomllib

    try:
        resolved = tomllib.loads(RunDir(out).recipe_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return values_at(resolved, keys)


def values_at(resolved: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The values a resolved recipe (:meth:`Recipe.resolved`, or a run's ``recipe.toml``) has at
    dotted keys (``None`` for a key it does not set)."""
    found: dict[str, Any] = {}
    for key in keys:
        node: Any = resolved
        for part in key.split("."):
            node = node[int(part)] if isinstance(node, list) and part.isdigit() and int(part) < len(node) else \
                node.get(part) if isinstance(node, dict) else None
        found[key] = node
    return found


def _same_params(out: Path, params: dict[str, Any]) -> bool:
    """Whether the final run in ``out`` ran these values (never for no values: nothing to compare)."""
    return bool(params) and recipe_values(out, params) == params
