"""Write tests/data/run-v0.2: a tiny run made by mrl-plugins 0.2 with every kind of column
(a model, a control, PCA, a funnel on HNSW with a rerank width, quantisation, the adaptor), so
tests can check that results of schema 2 still load, re-report, publish and feed decisions.

Run it with the 0.2 package on the path, not this checkout's:

    git worktree add /tmp/mrl-0.2 2e167c7
    PYTHONPATH=/tmp/mrl-0.2/src .venv/bin/python scripts/make_run_v02_fixture.py tests/data/run-v0.2
"""

import shutil
import sys
import tempfile
from pathlib import Path

import mrl_plugins
from mrl_plugins.testkit.models import TOPICS, tiny_model
from mrl_plugins.testkit.recipes import RecipeBuilder, run_recipe, toy_pairs, write_jsonl

dest = Path(sys.argv[1])
print(f"mrl-plugins {mrl_plugins.__version__} from {mrl_plugins.__file__}")
with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    model = tiny_model(root / "tiny", dim=32, words=TOPICS)
    write_jsonl(root / "pairs.jsonl", toy_pairs())
    data = {"name": "local", "path": "pairs.jsonl", "format": "pairs", "eval_queries": 20, "corpus_size": 60}
    recipe = RecipeBuilder.tiny(model, data, output_dir=root / "out", dims={"name": "explicit", "values": [32, 16, 8]})
    recipe.add_comparison("pca").add_comparison("no-mrl")
    recipe.add_comparison("funnel", shortlist=[10, 40], index="hnsw", rerank_dim=16)
    recipe.add_comparison("quantize", precisions=["binary"]).add_comparison("adaptor", model="mrl", epochs=2)
    run_recipe(recipe.write(root / "recipe.toml"), "-q").assert_success()
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "recipe.toml"):
        shutil.copy2(root / "out" / name, dest / name)
    shutil.copytree(root / "out" / "evaluation", dest / "evaluation", dirs_exist_ok=True)
print(f"wrote {dest}")
