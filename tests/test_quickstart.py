"""The real quickstart with the packaged all-MiniLM-L6-v2 (a few minutes on 2 CPU cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrl_plugins.results import RunResults

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = ROOT / "tests" / "data" / "run-v0.1" / "results.json"
#: The same seed on the reference machine reproduces mrl-plugins 0.1's numbers exactly (0.0
#: difference, checked when the runner was split); this allows only another CPU's float rounding.
TOLERANCE = 0.002


@pytest.mark.skipif(os.environ.get("MRL_SKIP_SLOW") == "1", reason="MRL_SKIP_SLOW=1")
def test_quickstart_beats_the_base_model_and_reproduces_the_previous_version(tmp_path):
    out = tmp_path / "quickstart"
    proc = subprocess.run(
        [sys.executable, "-m", "mrl_plugins.cli", "recipes/quickstart.toml", "--set", f"output_dir='{out}'"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = RunResults.load(out / "results.json")
    assert results.dims == [384, 192, 96, 48]
    assert results.value("mrl", 48) > results.value("base", 48)
    assert "MRR@10" in proc.stdout and "Quality versus cost" in proc.stdout
    funnel = results.models["funnel(mrl, shortlist=200)"]
    assert funnel.metrics[384]["mrr@10"] == results.value("mrl", 384)  # at full width the funnel is exact search
    assert funnel.metrics[48]["mrr@10"] > results.value("mrl", 48)  # reranking a 48-dim shortlist recovers quality
    adapted = results.models["adaptor(mrl)"]
    assert adapted.metrics[48]["mrr@10"] > results.value("mrl", 48)  # what the README says it buys at 48 dims
    assert adapted.saved_model == "comparisons/adaptor-mrl/model" and (out / adapted.saved_model / "modules.json").is_file()
    previous = RunResults.load(PREVIOUS)  # 0.1's keys were labels: match the columns by what tables call them
    labels = [c.label for c in results.models.values()]
    assert labels[: len(previous.models)] == [c.label for c in previous.models.values()]  # 0.2 adds funnel, adaptor after
    now = {c.label: c for c in results.models.values()}
    for column in previous.models.values():
        for dim, metrics in column.metrics.items():
            for name, value in metrics.items():
                assert now[column.label].metrics[dim][name] == pytest.approx(value, abs=TOLERANCE), (column.label, dim)
