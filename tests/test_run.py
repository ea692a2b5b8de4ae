"""End to end through the CLI with a tiny model: outputs, overwrite protection, failures."""

from __future__ import annotations

import tomllib

import pytest

from mrl_plugins.evaluation.metrics import Metric
from mrl_plugins.run import pipeline
from mrl_plugins.testkit.recipes import run_recipe, toy_pairs, write_jsonl

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')

OUTPUTS = ["costs.png", "evaluation", "metrics.png", "model", "recipe.toml", "report.md", "results.json"]


def test_end_to_end_tiny_run(tiny_recipe, recipe_path, tmp_path):
    outcome = run_recipe(tiny_recipe.add_comparison("truncate", model="base").write(recipe_path)).assert_success()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    results = outcome.results
    assert results.dims == [32, 16, 8]
    assert list(results.models) == ["base", "mrl", "truncate(base)"]
    # the same means (a model's own column also has its recall of the exact top 10, as a search cost row)
    base = {d: {m: v for m, v in by.items() if m != "overlap@10"} for d, by in results.models["base"].metrics.items()}
    assert results.models["truncate(base)"].metrics == base
    assert results.models["truncate(base)"].reads == ["base"]
    assert results.data.eval_queries == 20 and results.data.row_format == "pairs"
    assert {"load_data", "load_model", "evaluate:base", "train:mrl", "evaluate:mrl"} <= set(results.timings)
    assert results.versions["sentence-transformers"]
    # the printed table shows exactly the numbers in results.json
    assert f"{results.value('mrl', 8, Metric.MRR):.4f}" in outcome.out
    # the resolved recipe is complete and re-loadable
    resolved = tomllib.loads((out / "recipe.toml").read_text())
    assert resolved["loss"] == {"name": "mnr", "scale": 20.0} and resolved["eval"]["k"] == 10
    # the saved model loads with plain sentence-transformers
    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(out / "model"), device="cpu").encode(["audio"]).shape == (1, 32)
    # the evaluation set and embeddings are saved: re-scoring them gives the run's numbers again
    from mrl_plugins.evaluation.retrieval import score_dims
    from mrl_plugins.evidence.saved import load_evaluation

    saved = load_evaluation(out)
    assert sorted(saved.embeddings) == ["base", "mrl"] and len(saved.query_ids) == 20
    q, c = saved.embeddings["mrl"]
    again = score_dims(q, c, saved.relevant_rows, results.dims)
    assert all(abs(again[d][m] - row[m]) < 1e-6 for d, row in results.models["mrl"].metrics.items() for m in again[d])


def test_refuses_non_empty_output_dir_unless_overwrite(tiny_recipe, recipe_path, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    recipe = tiny_recipe.write(recipe_path)
    refused = run_recipe(recipe)
    assert refused.code == 2 and "is not empty; nothing was changed" in refused.err
    assert (out / "precious.txt").read_text() == "mine"
    run_recipe(recipe, "--overwrite", "-q").assert_success()
    assert (out / "results.json").exists() and not (out / "precious.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_failure_mid_run_leaves_no_output(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    def boom(ctx):
        raise RuntimeError("killed during training")

    monkeypatch.setattr(pipeline, "train_models", boom)
    with pytest.raises(RuntimeError):
        run_recipe(tiny_recipe.write(recipe_path), "-q")
    assert [p.name for p in tmp_path.iterdir() if "out" in p.name] == []


def test_cosent_on_scored_pairs(tmp_path, tiny_recipe, recipe_path):
    rows = []
    for r in toy_pairs(120):
        rows.append({"sentence1": r["anchor"], "sentence2": r["positive"], "score": 1.0})
        rows.append({"sentence1": r["anchor"], "sentence2": r["negative"], "score": 0.2})
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    tiny_recipe.set("loss.name", "cosent").set("data.format", "scored-pairs")
    assert run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results.data.row_format == "scored-pairs"


def test_mnr_uses_triplets_when_the_data_has_them(tiny_recipe, recipe_path):
    outcome = run_recipe(tiny_recipe.set("data.format", "triplets").write(recipe_path), "-q")
    assert outcome.assert_success().results.data.row_format == "triplets"


SOURCE_MODULE = '''
from mrl_plugins import hookimpl
from mrl_plugins.components import DataSource
from mrl_plugins.data import DataBundle, IRSet, rows_to_dataset
from mrl_plugins.testing import toy_pairs



class Sparse(DataSource):
    """Evaluation queries of which some have no relevant document."""

    name = "sparse"
    produces = ("pairs",)

    def load(self, request):
        rows = toy_pairs(80)
        queries = {f"q{i}": r["anchor"] for i, r in enumerate(rows[:10])}
        corpus = {f"d{i}": r["positive"] for i, r in enumerate(rows[:10])}
        relevant = {f"q{i}": {f"d{i}"} for i in range(7)}{extra}
        train = [{"anchor": r["anchor"], "positive": r["positive"]} for r in rows[10:]]
        return DataBundle(rows_to_dataset(train, "pairs"), IRSet(queries, corpus, relevant), "pairs")


@hookimpl
def register_data_sources(register):
    register(Sparse)
'''


def _sparse_recipe(tiny_recipe, recipe_path, tmp_path, extra=""):
    (tmp_path / "sparse.py").write_text(SOURCE_MODULE.replace("{extra}", extra))
    return tiny_recipe.set("plugins", ["sparse.py"]).set("data", {"name": "sparse"}).write(recipe_path)


def test_queries_without_relevant_documents_are_counted_aloud(tiny_recipe, recipe_path, tmp_path, caplog):
    results = run_recipe(_sparse_recipe(tiny_recipe, recipe_path, tmp_path), "-q").assert_success().results
    assert results.data.eval_queries == 7  # a plain string row format from a plugin is fine too
    assert "data source 'sparse' (plugin 'sparse.py'): 3 evaluation queries had no relevant document" in caplog.text


def test_an_inconsistent_evaluation_set_names_its_source(tiny_recipe, recipe_path, tmp_path):
    recipe = _sparse_recipe(tiny_recipe, recipe_path, tmp_path, extra=' | {"q9": {"d99"}}')
    outcome = run_recipe(recipe, "-q")
    assert outcome.code == 2 and "Traceback" not in outcome.err
    assert "data source 'sparse' (plugin 'sparse.py') built an inconsistent evaluation set" in outcome.err
    assert "relevant document ids are not in the corpus" in outcome.err
