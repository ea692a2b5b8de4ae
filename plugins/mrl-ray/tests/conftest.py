"""One local Ray instance (2 CPUs) for the Ray tests' module (stopped after it, so no later test
runs beside it), as ``--executor ray`` with no address
starts. CI sets ``MRL_REQUIRE_RAY=1``: Ray missing is then a failure, never a silent skip."""

from __future__ import annotations

import pytest

from mrl_plugins.testkit.required import require_modules


@pytest.fixture(scope="module")
def local_ray():
    require_modules("MRL_REQUIRE_RAY", "the Ray executor's", "ray", hint="pip install -e plugins/mrl-ray")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
