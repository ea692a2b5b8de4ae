"""sentence-transformers compatibility: every import whose place moved between versions is in
``mrl_plugins.models.compat``, it works on the installed version, and a whole tiny recipe runs on the
oldest version the package metadata allows (unpacked by setup.sh into .venv/oldest/)."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.models import compat as _st
from mrl_plugins.testkit.required import missing

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mrl_plugins"
FLOOR = next(re.search(r">=\s*([\w.]+)", r).group(1) for r in importlib.metadata.requires("mrl-plugins") or []
             if r.startswith("sentence-transformers"))
OLDEST = ROOT / ".venv" / "oldest" / f"sentence-transformers-{FLOOR}"
#: what sentence-transformers exports at its top level in every version the metadata allows
STABLE = {"SentenceTransformer", "SentenceTransformerTrainer", "SentenceTransformerTrainingArguments"}


def test_no_moved_import_outside_the_compatibility_module():
    found = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "models" / "compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sentence_transformers"):
                if node.module != "sentence_transformers" or {a.name for a in node.names} - STABLE:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} from {node.module} import …")
            elif isinstance(node, ast.Import):
                found += [f"{path.relative_to(SRC)}:{node.lineno} import {a.name}" for a in node.names
                          if a.name.startswith("sentence_transformers.")]
    assert found == []


def test_the_compatibility_functions_on_the_installed_version():
    assert hasattr(_st.st_losses(), "MatryoshkaLoss") and hasattr(_st.st_models(), "Dense")
    bits = _st.quantize_embeddings(np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32), "ubinary")
    assert bits.shape == (3, 2) and bits.dtype == np.uint8
    cached = _st.st_losses().CachedMultipleNegativesRankingLoss
    plain = _st.st_losses().MultipleNegativesRankingLoss
    assert _st.uses_gradient_cache(cached.__new__(cached)) and not _st.uses_gradient_cache(plain.__new__(plain))


RUN = """
import sys
from pathlib import Path

import sentence_transformers
from sentence_transformers import SentenceTransformer

from mrl_plugins.testing import TOPICS, RecipeBuilder, run_recipe, tiny_model, toy_pairs, write_jsonl

root = Path(sys.argv[1])
model = tiny_model(root / "tiny", dim=32, words=TOPICS)
write_jsonl(root / "pairs.jsonl", toy_pairs())
data = {"name": "local", "path": "pairs.jsonl", "format": "pairs", "eval_queries": 20, "corpus_size": 60}
recipe = RecipeBuilder.tiny(model, data, output_dir=root / "out", dims={"name": "explicit", "values": [32, 16, 8]})
recipe.set("objective", {"name": "prefix-distill"}).set("publish.truncate_dim", 16)
recipe.add_comparison("pca").add_comparison("funnel", shortlist=[10]).add_comparison("quantize")
recipe.add_comparison("adaptor", epochs=1)
run_recipe(recipe.write(root / "recipe.toml"), "-q").assert_success()
loaded = SentenceTransformer(str(root / "out" / "model"), device="cpu")
print("version", sentence_transformers.__version__, sentence_transformers.__file__)
print("shape", loaded.encode(["audio"]).shape)
"""


@pytest.mark.slow
def test_a_whole_tiny_run_on_the_oldest_sentence_transformers_allowed(tmp_path):
    if not (OLDEST / "sentence_transformers" / "__init__.py").is_file():
        missing("MRL_REQUIRE_OLDEST_ST", "the oldest sentence-transformers'", f"{OLDEST} is missing",
                f"./setup.sh unpacks sentence-transformers {FLOOR} there")
    env = {**os.environ, "PYTHONPATH": str(OLDEST), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", RUN, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    version = re.search(r"^version (\S+) (\S+)$", proc.stdout, re.M)
    assert version and version.group(1).startswith(FLOOR) and version.group(2).startswith(str(OLDEST))
    assert "shape (1, 16)" in proc.stdout  # saved with truncate_dim, applied on load by the oldest version too
