"""The conformance checks, at the import path plugins have used since 0.7
(``from mrl_plugins.conformance import assert_index_backend_conforms``); they live in
:mod:`mrl_plugins.testkit.conformance`."""

from .testkit.conformance import *  # noqa: F403
from .testkit.conformance import __all__  # noqa: F401
