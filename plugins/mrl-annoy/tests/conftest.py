"""The Annoy backend's tests need the annoy package (a C++ extension built when the plugin is
installed). CI sets ``MRL_REQUIRE_ANNOY=1``: annoy missing is then a failure, never a silent skip."""

from __future__ import annotations

import pytest

from mrl_plugins.testkit.required import require_modules


@pytest.fixture(autouse=True)
def annoy_installed():
    require_modules("MRL_REQUIRE_ANNOY", "the Annoy backend's", "annoy", "mrl_annoy",
                    hint="pip install -e plugins/mrl-annoy")
