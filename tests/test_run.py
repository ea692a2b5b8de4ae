"""End to end through the CLI with a tiny model: outputs, overwrite protection, failures."""

from __future__ import annotations

import json
import tomllib

import pytest

from mrl_plugins import runner
from mrl_plugins.cli import main
from mrl_plugins.testing import write_jsonl
from tests.conftest import synthetic_pairs


def test_end_to_end_tiny_run(tiny_recipe, tmp_path, capsys):
    recipe = tiny_recipe('[[compare]]\nname = "truncate"\nmodel = "base"\n')
    assert main([str(recipe)]) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.png", "model", "recipe.toml", "report.md", "results.json"]
    results = json.loads((out / "results.json").read_text())
    assert results["dims"] == [32, 16, 8]
    assert set(results["models"]) == {"base", "mrl", "compare:base · truncate"}
    assert results["models"]["compare:base · truncate"]["metrics"] == results["models"]["base"]["metrics"]
    assert results["data"]["eval_queries"] == 20 and results["data"]["row_format"] == "pairs"
    assert {"load_data", "load_model", "evaluate_base", "train", "evaluate_tuned"} <= set(results["timings"])
    assert results["versions"]["sentence-transformers"]
    # the printed table shows exactly the numbers in results.json
    printed = capsys.readouterr().out
    mrr8 = results["models"]["mrl"]["metrics"]["8"]["mrr@10"]
    assert f"{mrr8:.4f}" in printed
    # the resolved recipe is complete and re-loadable
    resolved = tomllib.loads((out / "recipe.toml").read_text())
    assert resolved["loss"] == {"name": "mnr", "scale": 20.0} and resolved["eval"]["k"] == 10
    # the saved model loads with plain sentence-transformers
    from sentence_transformers import SentenceTransformer

    assert SentenceTransformer(str(out / "model"), device="cpu").encode(["audio"]).shape == (1, 32)


def test_refuses_non_empty_output_dir_unless_overwrite(tiny_recipe, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    recipe = tiny_recipe()
    assert main([str(recipe)]) == 2
    assert "is not empty; nothing was changed" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "mine"
    assert main([str(recipe), "--overwrite", "-q"]) == 0
    assert (out / "results.json").exists() and not (out / "precious.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_failure_mid_run_leaves_no_output(tiny_recipe, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("killed during training")

    monkeypatch.setattr(runner, "train", boom)
    with pytest.raises(RuntimeError):
        main([str(tiny_recipe()), "-q"])
    assert [p.name for p in tmp_path.iterdir() if "out" in p.name] == []


def test_cosent_on_scored_pairs(tmp_path, tiny_recipe):
    rows = []
    for r in synthetic_pairs(120):
        rows.append({"sentence1": r["anchor"], "sentence2": r["positive"], "score": 1.0})
        rows.append({"sentence1": r["anchor"], "sentence2": r["negative"], "score": 0.2})
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert main([str(tiny_recipe(loss="cosent", fmt="scored-pairs")), "-q"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["data"]["row_format"] == "scored-pairs"


def test_mnr_uses_triplets_when_the_data_has_them(tiny_recipe, tmp_path):
    assert main([str(tiny_recipe(fmt="triplets")), "-q"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["data"]["row_format"] == "triplets"
