"""The Spark executor's tests start a real local Spark (``local[2]``, a JVM) from ``mrl-run
embed``. CI sets ``MRL_REQUIRE_SPARK=1``: pyspark or Java missing is then a failure, never a
silent skip."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def spark_available():
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        if os.environ.get("MRL_REQUIRE_SPARK") == "1":
            pytest.fail(f"the Spark executor's tests are required here (MRL_REQUIRE_SPARK=1) but {exc.name} is missing")
        pytest.skip("pyspark is not installed (pip install -e plugins/mrl-spark)")
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java or not os.path.exists(java):
        if os.environ.get("MRL_REQUIRE_SPARK") == "1":
            pytest.fail("the Spark executor's tests are required here (MRL_REQUIRE_SPARK=1) but there is no Java "
                        "runtime (apt-get install openjdk-17-jre-headless; setup.sh installs it as root)")
        pytest.skip("no Java runtime for Spark")
