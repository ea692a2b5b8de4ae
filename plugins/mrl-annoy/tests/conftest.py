"""The Annoy backend's tests need the annoy package (a C++ extension built when the plugin is
installed). CI sets ``MRL_REQUIRE_ANNOY=1``: annoy missing is then a failure, never a silent skip."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def annoy_installed():
    try:
        import annoy  # noqa: F401

        import mrl_annoy  # noqa: F401
    except ImportError as exc:
        if os.environ.get("MRL_REQUIRE_ANNOY") == "1":
            pytest.fail(f"the Annoy backend's tests are required here (MRL_REQUIRE_ANNOY=1) but {exc.name} is missing")
        pytest.skip(f"{exc.name} is not installed (pip install -e plugins/mrl-annoy)")
