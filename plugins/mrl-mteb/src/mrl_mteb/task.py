"""The ``mteb`` task: one MTEB task scored for every model of a run at every width.

``mteb.evaluate`` runs once per model and width, each time on a fresh instance of the task (so its
seeded sampling is the same at every width, and at full width equals ``mteb``'s own run of the same
task and model), with the data loaded once and every text encoded once per model.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mrl_plugins.components import Params, Task, TaskContext, ValidationContext
from mrl_plugins.data.files import file_problem
from mrl_plugins.errors import PluginError, UserError
from mrl_plugins.hookspecs import hookimpl

from .local import MAIN_SCORE, ROLES, dataset, local_task, read_rows

SKIP = {"main_score", "evaluation_time", "kg_co2_emissions"}


class MtebParams(Params):
    task: str = Field(description='An MTEB task by name ("STS12", "Banking77Classification": its data comes from the '
                                  'Hugging Face Hub), an AbsTask subclass of yours as "package.module:Class", or, with '
                                  "path and type, the name to give a task on a local file.")
    type: Literal["STS", "Classification", "Clustering"] | None = Field(
        None, description="With path: which of MTEB's task types runs on the file.")
    path: str | None = Field(None, description="A local file (JSON lines, JSON, CSV, TSV or Parquet), relative to the "
                                               "recipe: STS reads sentence1, sentence2, score; Classification text, "
                                               "label (and split: train/test, else halved per label); Clustering "
                                               "text, label.")
    columns: dict[str, str] = Field(default_factory=dict, description='Rename the file\'s columns, role = column: '
                                                                      '{ text = "description", label = "section" }.')
    batch_size: int = Field(32, gt=0, description="Encoding batch size (MTEB's default, so that full-width scores "
                                                   "equal its own run's).")


class Mteb(Task[MtebParams]):
    """An MTEB task at every width: each model wrapped as an MTEB encoder that truncates and re-normalises."""

    name = "mteb"
    title = "MTEB"
    metric = "main_score"
    Params = MtebParams
    _data: Any = None
    _scores: list[float] | None = None

    def key(self) -> str:
        return f"mteb:{self.params.task}"

    def label(self) -> str:
        return f"MTEB {self.params.task} ({self.main_score()})"

    def main_score(self) -> str:
        """The name of MTEB's main score for the task (``cosine_spearman``, ``accuracy``…), from its metadata."""
        if self.params.type is not None:
            return MAIN_SCORE[self.params.type]
        return str(self.task_class().metadata.main_score)

    def task_class(self) -> Any:
        """The task's class (``module:Class``) or an instance by name, before any data is loaded."""
        p = self.params
        if ":" in p.task:
            module, _, attr = p.task.partition(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise UserError(f"task = \"{p.task}\": cannot import {attr} from {module} ({exc}); give "
                                "\"package.module:Class\" of an mteb AbsTask subclass on the Python path.") from None
        import mteb

        try:
            return mteb.get_task(p.task)
        except KeyError as exc:
            raise UserError(f"task = \"{p.task}\" is not an MTEB task name ({exc.args[0] if exc.args else ''}; "
                            "mteb.get_tasks() lists them); for "
                            "your own data give path and type, or \"package.module:Class\".") from None

    # -- the task -------------------------------------------------------------------------------
    def new_task(self, recipe_dir: Path | None, seed: int = 42) -> Any:
        """A fresh instance of the task (seeded sampling starts over), its data loaded once."""
        p = self.params
        if p.path is not None:
            if self._data is None:
                if recipe_dir is None:
                    raise UserError("the local MTEB task is read before its recipe folder is known")
                assert p.type is not None
                rows = read_rows(recipe_dir / p.path, p.type, p.columns)
                self._scores = [float(s) for s in rows["score"]] if p.type == "STS" else None
                self._data = dataset(rows, p.type, seed)
            assert p.type is not None
            return local_task(p.type, p.task, Path(p.path), self._data, self._scores)
        found = self.task_class()
        task = found() if isinstance(found, type) else found
        if self._data is not None:
            task.dataset, task.data_loaded = self._data, True
        return task

    def check(self, ctx: ValidationContext) -> list[str]:
        p = self.params
        if (p.path is None) != (p.type is None):
            return ["path and type go together: a task on a local file names both (type = \"STS\", "
                    "\"Classification\" or \"Clustering\"); an MTEB task by name needs neither."]
        unknown = sorted(set(p.columns) - set(ROLES.get(p.type or "", ())) - ({"split"} if p.type == "Classification"
                                                                               else set()))
        if p.path is not None and unknown:
            return [f"columns: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not read by an MTEB "
                    f"{p.type} task; its roles are {', '.join(ROLES[p.type or ''])}."]
        if p.path is not None:
            problem = file_problem("path", p.path, ctx.recipe_dir / p.path)
            if problem:
                return [problem]
        try:
            from mteb.abstasks.abstask import AbsTask

            task = self.new_task(ctx.recipe_dir)
        except UserError as exc:
            return [str(exc)]
        if not isinstance(task, AbsTask):
            return [f"task = \"{p.task}\" is a {type(task).__name__}, not an mteb AbsTask subclass."]
        return []

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, ctx: TaskContext, model: str) -> dict[int, dict[str, float]]:
        import mteb  # here, not at import: `mrl-run plugins` and `validate` must not import mteb (it imports datasets)

        from .encoder import Cache, WidthEncoder

        cache: Cache = {}
        out = {}
        for d in ctx.dims:
            task = self.new_task(ctx.recipe_dir, ctx.seed)
            if self._data is None and not task.data_loaded:
                try:
                    task.load_data()
                except Exception as exc:
                    raise UserError(f"MTEB task '{self.params.task}' could not load its data ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''}). MTEB's tasks live on the "
                                    "Hugging Face Hub: run where it can be reached, or give the task a local file "
                                    "(path and type).") from None
                self._data = task.dataset
            encoder = WidthEncoder(ctx, model, d, cache, self.params.batch_size)
            # EncoderProtocol also declares __init__(model_name, revision) for mteb's CLI to load a model by
            # name; a wrapper around a model the run already holds has none, so mypy cannot match it
            result = mteb.evaluate(encoder, task,  # type: ignore[arg-type]
                                   cache=None, overwrite_strategy="always", show_progress_bar=False,
                                   encode_kwargs={"batch_size": self.params.batch_size})
            if not result.task_results:
                raise PluginError(f"mteb returned no result for task '{self.params.task}' at width {d}.")
            out[d] = metrics(result.task_results[0])
        return out


def metrics(result: Any) -> dict[str, float]:
    """MTEB's main score (averaged over splits and subsets, as ``TaskResult.get_score`` does) and
    every other number it reports in every split and subset, averaged the same way."""
    entries = [entry for split in result.scores.values() for entry in split]
    found: dict[str, float] = {"main_score": float(result.get_score())}
    for key in entries[0] if entries else {}:
        values = [entry.get(key) for entry in entries]
        if key in SKIP or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        mean = sum(float(v) for v in values) / len(values)
        if math.isfinite(mean):
            found[key] = mean
    return found


@hookimpl
def register_tasks(register):
    register(Mteb)
