"""The whole contract between mrl-plugins and a plugin, on one screen.

Each hook receives ``register``: call ``register(ComponentClass)`` once per component. The
component base classes, and the methods each kind must implement, live in
:mod:`mrl_plugins.components`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import pluggy

if TYPE_CHECKING:
    from .components import (
        Command,
        Comparison,
        DataSource,
        DimSchedule,
        Executor,
        IndexBackend,
        Loss,
        Objective,
        Task,
        WarmStart,
    )

hookspec = pluggy.HookspecMarker("mrl_plugins")
hookimpl = pluggy.HookimplMarker("mrl_plugins")
ENTRY_POINT_GROUP = "mrl_plugins"
"""The entry-point group an installed plugin registers its hook module under."""

C = TypeVar("C")
Register = Callable[[type[C]], None]
"""``register(ComponentClass)``: what every hook receives."""


@hookspec
def register_data_sources(register: Register[DataSource]) -> None:
    """Register DataSource classes: where training rows and the evaluation set come from."""


@hookspec
def register_losses(register: Register[Loss]) -> None:
    """Register Loss classes: base losses that the runner wraps in MatryoshkaLoss."""


@hookspec
def register_dim_schedules(register: Register[DimSchedule]) -> None:
    """Register DimSchedule classes: which Matryoshka dimensions (and weights) to train."""


@hookspec
def register_comparisons(register: Register[Comparison]) -> None:
    """Register Comparison classes: post-hoc methods scored next to the trained model."""


@hookspec
def register_warm_starts(register: Register[WarmStart]) -> None:
    """Register WarmStart classes: prepare the model before training (e.g. a PCA rotation)."""


@hookspec
def register_index_backends(register: Register[IndexBackend]) -> None:
    """Register IndexBackend classes: search engines for the shortlist of a funnel (FAISS …)."""


@hookspec
def register_objectives(register: Register[Objective]) -> None:
    """Register Objective classes: how the prefix dimensions are trained around the base loss."""


@hookspec
def register_commands(register: Register[Command]) -> None:
    """Register Command classes: subcommands of ``mrl-run`` (the built-in ones are registered so too)."""


@hookspec
def register_executors(register: Register[Executor]) -> None:
    """Register Executor classes: where ``mrl-run embed`` encodes shards (this process, a cluster …)."""


@hookspec
def register_tasks(register: Register[Task]) -> None:
    """Register Task classes: evaluations beyond retrieval (similarity, classification, clustering …)."""
