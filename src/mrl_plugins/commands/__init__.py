"""The built-in subcommands of ``mrl-run``, one module each (as tox's ``session/cmd/``),
registered through ``register_commands`` exactly as a plugin registers its own.

Each module holds a :class:`~mrl_plugins.components.Command` (its arguments, its ``run``) and the
frozen request its ``run`` turns the parsed arguments into, once; the request goes to the
feature's own function (:mod:`mrl_plugins.run`, :mod:`mrl_plugins.search`, :mod:`mrl_plugins.embed`,
:mod:`mrl_plugins.export` …). Commands read their arguments and never write to them
(``tests/test_layers.py`` holds it). ``args`` holds what they share: argument types, the recipe
arguments, ``KEY=VALUE`` parameters and the model argument. ``validate`` and ``plugins`` never
import torch: every command imports its feature inside ``run``.
"""

from __future__ import annotations

from ..hookspecs import hookimpl
from .demo import Demo
from .embed import Embed
from .export import Export
from .index import Index
from .plugins import Plugins
from .publish import Publish
from .report import Report
from .run import Run
from .search import Search
from .sweep import Sweep
from .validate import Validate

BUILTIN = (Run, Validate, Plugins, Publish, Report, Embed, Index, Search, Demo, Export, Sweep)


@hookimpl
def register_commands(register):
    for command in BUILTIN:
        register(command)
