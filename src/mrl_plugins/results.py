"""The stable import path of the results schema (:mod:`mrl_plugins.evidence.results`), which
plugins and scripts have imported since 0.1 (``from mrl_plugins.results import RunResults``)."""

from .evidence.results import *  # noqa: F403
from .evidence.results import __all__  # noqa: F401
