"""The whole contract between mrl-plugins and a plugin, on one screen.

Each hook receives ``register``: call ``register(ComponentClass)`` once per component. The
component classes and what they must implement live in :mod:`mrl_plugins.components`.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mrl_plugins")
hookimpl = pluggy.HookimplMarker("mrl_plugins")


@hookspec
def register_data_sources(register):
    """Register DataSource classes: where training rows and the evaluation set come from."""


@hookspec
def register_losses(register):
    """Register Loss classes: base losses that the runner wraps in MatryoshkaLoss."""


@hookspec
def register_dim_schedules(register):
    """Register DimSchedule classes: which Matryoshka dimensions (and weights) to train."""


@hookspec
def register_comparisons(register):
    """Register Comparison classes: post-hoc methods scored next to the trained model."""


@hookspec
def register_warm_starts(register):
    """Register WarmStart classes: prepare the model before training (e.g. a PCA rotation)."""
