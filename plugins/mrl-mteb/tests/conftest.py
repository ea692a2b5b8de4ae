"""The MTEB plugin's tests need the mteb package (pip install -e plugins/mrl-mteb). CI sets
``MRL_REQUIRE_MTEB=1``: mteb missing is then a failure, never a silent skip."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def mteb_installed():
    try:
        import mteb  # noqa: F401

        import mrl_mteb  # noqa: F401
    except ImportError as exc:
        if os.environ.get("MRL_REQUIRE_MTEB") == "1":
            pytest.fail(f"the MTEB plugin's tests are required here (MRL_REQUIRE_MTEB=1) but {exc.name} is missing")
        pytest.skip(f"{exc.name} is not installed (pip install -e plugins/mrl-mteb)")
