"""The real quickstart with the packaged all-MiniLM-L6-v2 (a few minutes on 2 CPU cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("MRL_SKIP_SLOW") == "1", reason="MRL_SKIP_SLOW=1")
def test_quickstart_beats_base_model_at_48_dims(tmp_path):
    out = tmp_path / "quickstart"
    proc = subprocess.run(
        [sys.executable, "-m", "mrl_plugins.cli", "recipes/quickstart.toml", "--set", f"output_dir='{out}'"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    base, mrl = results["models"]["base"]["metrics"], results["models"]["mrl"]["metrics"]
    assert results["dims"] == [384, 192, 96, 48]
    assert mrl["48"]["mrr@10"] > base["48"]["mrr@10"]
    assert "MRR@10" in proc.stdout
