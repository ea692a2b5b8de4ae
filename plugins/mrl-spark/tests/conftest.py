"""The Spark executor's tests start a real local Spark (``local[2]``, a JVM) from ``mrl-run
embed``. CI sets ``MRL_REQUIRE_SPARK=1``: pyspark or Java missing is then a failure, never a
silent skip."""

from __future__ import annotations

import os
import shutil

import pytest

from mrl_plugins.testkit.required import missing, require_modules


@pytest.fixture(scope="session")
def spark_available():
    require_modules("MRL_REQUIRE_SPARK", "the Spark executor's", "pyspark", hint="pip install -e plugins/mrl-spark")
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java or not os.path.exists(java):
        missing("MRL_REQUIRE_SPARK", "the Spark executor's", "there is no Java runtime for Spark",
                "apt-get install openjdk-17-jre-headless; setup.sh installs it as root")
