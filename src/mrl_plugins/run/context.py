"""The one object a run's stages share, instead of arguments threaded through each of them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..data.types import DataBundle
from ..recipe.load import Recipe
from ..recipe.schema import RecipeModel
from .staging import Staging

logger = logging.getLogger("mrl_plugins")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun / accelerate launch (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class Stages:
    """Logs one line per stage with the time since the run started, and keeps the durations."""

    start: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, key: str, message: str) -> Iterator[None]:
        logger.info("[%7.1fs] %s", time.perf_counter() - self.start, message)
        t0 = time.perf_counter()
        yield
        self.timings[key] = round(time.perf_counter() - t0, 3)


@dataclass
class RunContext:
    """A run in progress: the validated recipe, where it writes, this process's place, and
    what the stages have produced so far."""

    recipe: Recipe
    staging: Staging
    dist: Distributed
    device: str
    resume: bool = False
    stages: Stages = field(default_factory=Stages)
    data: DataBundle | None = None
    full_dim: int = 0
    dims: list[int] = field(default_factory=list)
    weights: list[float] | None = None
    loaded: dict[str, Any] = field(default_factory=dict)
    """Loaded models by key: the run's models as they are produced, other models on first use."""
    embeddings: Any = None
    """The encode-once cache of evaluation embeddings (:class:`~.scoring.Embeddings`), rank 0."""
    per_query: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    """Column key → each query's scores, for intervals and paired tests."""
    validation_per_query: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    """The same on the validation split: the noise each choice is weighed against."""
    encoded_texts: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(model, digest of the texts) → their document embeddings: what comparisons fit on, encoded once."""
    trial: Any = None
    """A sweep's trial (:class:`mrl_plugins.sweep.TrialHooks`) when this run is one: it is scored
    on the validation split only, and hears the MRL model's validation curve."""
    validation_from: dict[str, int] = field(default_factory=dict)
    """Where the validation queries came from (``spare``, ``training`` rows, or the ``source``)."""
    near_duplicates: dict[str, Any] | None = None
    """Evaluation texts with a near-copy in training (``find_near_duplicates``), for results.json."""
    validation_near_duplicates: dict[str, Any] | None = None
    """The same, of the validation split."""
    task_columns: dict[str, tuple[str, Any]] = field(default_factory=dict)
    """Comparison column key → (the model it reads, its :meth:`Comparison.task_transform`): the
    comparison columns the ``[[task]]`` stage scores beside the run's models."""

    @property
    def settings(self) -> RecipeModel:
        return self.recipe.settings

    @property
    def bundle(self) -> DataBundle:
        assert self.data is not None, "the data stage has not run"
        return self.data

    def stage(self, key: str, message: str) -> AbstractContextManager[None]:
        """A timed stage of the run (``with ctx.stage(...)``), recorded first on rank 0."""
        if self.dist.is_main:  # what the next run reads if this one is killed without a word
            self.staging.record_stage(key, message)
        return self.stages.stage(key, message)


