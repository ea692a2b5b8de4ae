"""One local Ray instance (2 CPUs) for the Ray tests' module (stopped after it, so no later test
runs beside it), as ``--executor ray`` with no address
starts. CI sets ``MRL_REQUIRE_RAY=1``: Ray missing is then a failure, never a silent skip."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def local_ray():
    try:
        import ray
    except ImportError as exc:
        if os.environ.get("MRL_REQUIRE_RAY") == "1":
            pytest.fail(f"the Ray executor's tests are required here (MRL_REQUIRE_RAY=1) but {exc.name} is missing")
        pytest.skip("ray is not installed (pip install -e plugins/mrl-ray)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
