"""Tests that need something installed (a package, a server, a JVM): skipped where it is missing,
**failed** where CI says it is required, so that a required test can never pass by skipping.

Every plugin of this repository that starts a real engine in its tests (Annoy, MTEB, Ray, Spark,
PostgreSQL) has CI set ``MRL_REQUIRE_<NAME>=1``; its ``conftest.py`` calls :func:`require_modules`
(or :func:`missing` for anything that is not an import) in a fixture.
"""

from __future__ import annotations

import importlib
import os
from typing import NoReturn

import pytest


def missing(env_var: str, what: str, why: str, hint: str) -> NoReturn:
    """Fail (``env_var`` set to ``1``: the tests are required here) or skip, saying ``why``."""
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{what} tests are required here ({env_var}=1) but {why}")
    pytest.skip(f"{why} ({hint})" if hint else why)


def require_modules(env_var: str, what: str, *modules: str, hint: str = "") -> None:
    """Import ``modules``; the first missing one is :func:`missing`."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing(env_var, what, f"{exc.name or module} is missing", hint)
