"""The one object a run's stages share, instead of arguments threaded through each of them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..components import KINDS
from ..data import DataBundle
from ..errors import UserError
from ..recipe import ComponentSpec, Recipe, RecipeModel
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
    encoded_texts: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(model, digest of the texts) → their document embeddings: what comparisons fit on, encoded once."""
    trial: Any = None
    """A sweep's trial (:class:`mrl_plugins.sweep.TrialHooks`) when this run is one: it is scored
    on the validation split only, and hears the MRL model's validation curve."""
    validation_from: dict[str, int] = field(default_factory=dict)
    """Where the validation queries came from (``spare``, ``training`` rows, or the ``source``)."""
    near_duplicates: dict[str, Any] | None = None
    """Evaluation texts with a near-copy in training (``find_near_duplicates``), for results.json."""

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


def plugin_call(spec: ComponentSpec[Any], method: str, *args: Any) -> Any:
    """Call a component's method; an exception from the plugin's own code names the plugin."""
    try:
        return getattr(spec.component, method)(*args)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise PluginFailed(spec, method, exc) from exc


class PluginFailed(UserError):
    """A component's own code raised: the message names the component, its plugin and the error."""

    exit_code = 1

    def __init__(self, spec: ComponentSpec[Any], method: str, exc: Exception):
        culprit = other_plugin_raising(exc, spec.cls.__module__)
        if culprit is None:
            blame, inside = spec.plugin, ""
        else:
            blame, where = culprit
            inside = f" inside plugin '{blame}' ({where}), which it called"
        super().__init__(
            f"{spec.where}: {KINDS[spec.kind].noun} '{spec.name}' (plugin '{spec.plugin}') failed in {method}()"
            f"{inside}: {type(exc).__name__}: {exc}. If this names your data or settings, fix them; otherwise it is a "
            f"bug in plugin '{blame}' (run with MRL_DEBUG=1 for the traceback)."
        )


def other_plugin_raising(exc: BaseException, own_module: str) -> tuple[str, str] | None:
    """The installed plugin distribution (entry point in ``mrl_plugins``) whose code raised
    ``exc``, when it is not the calling component's own: a funnel comparison (built in) that
    fails inside a third-party index backend names the backend's distribution, not itself.
    ``(distribution, "module.function")`` of the innermost such frame, or ``None``."""
    import importlib.metadata
    import traceback

    from ..plugins import ENTRY_POINT_GROUP

    own = own_module.split(".")[0]
    packages = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        top = ep.module.split(".")[0]
        if top not in (own, "mrl_plugins"):
            packages[top] = ep.dist.name if ep.dist is not None else ep.name
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if module.split(".")[0] in packages:
            found = (packages[module.split(".")[0]], f"{module}.{frame.f_code.co_name}")
    return found
