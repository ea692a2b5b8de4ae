"""The MTEB plugin's tests need the mteb package (pip install -e plugins/mrl-mteb). CI sets
``MRL_REQUIRE_MTEB=1``: mteb missing is then a failure, never a silent skip."""

from __future__ import annotations

import pytest

from mrl_plugins.testkit.required import require_modules


@pytest.fixture(autouse=True)
def mteb_installed():
    require_modules("MRL_REQUIRE_MTEB", "the MTEB plugin's", "mteb", "mrl_mteb", hint="pip install -e plugins/mrl-mteb")
