"""The plugin author's test kit, at the import path plugins have used since 0.4
(``from mrl_plugins.testing import tiny_model``); it lives in :mod:`mrl_plugins.testkit`."""

from .testkit import *  # noqa: F403
from .testkit import __all__, __getattr__  # noqa: F401
