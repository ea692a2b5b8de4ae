"""Warm start: a PCA rotation in front of Matryoshka training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrl_plugins.builtin.warm_starts import PCARotation
from mrl_plugins.testkit.contexts import TextsWarmStartContext
from mrl_plugins.testkit.recipes import run_recipe, toy_pairs, write_jsonl

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')


def _model(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def test_rotation_keeps_full_dimension_similarities_and_rankings(tiny_model_dir):
    rows = toy_pairs(120)
    train = [r["anchor"] for r in rows[:80]] + [r["positive"] for r in rows[:80]]
    probe = [r["anchor"] for r in rows[80:]] + [r["positive"] for r in rows[80:]]
    model = _model(tiny_model_dir)
    before = model.encode(probe)
    facts = PCARotation(PCARotation.Params()).apply(model, TextsWarmStartContext(model, train))
    after = model.encode(probe)
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert facts["inserted_at"] == 2 and facts["fit_texts"] == 160
    np.testing.assert_allclose(after @ after.T, before @ before.T, atol=1e-5)
    assert np.array_equal(np.argsort(-(after @ after.T), axis=1), np.argsort(-(before @ before.T), axis=1))
    # the leading dimensions now carry more of the variance than before
    lead = lambda x: x[:, :8].var(axis=0).sum() / x.var(axis=0).sum()  # noqa: E731
    assert lead(after) > lead(before)


def test_rotation_appended_when_the_model_has_no_normalize(tiny_model_dir):
    model = _model(tiny_model_dir)
    del model._modules["2"]
    texts = [r["positive"] for r in toy_pairs(60)]
    PCARotation(PCARotation.Params()).apply(model, TextsWarmStartContext(model, texts))
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Dense"]


def test_warm_start_run_fits_on_training_texts_only_and_saves_the_layer(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    marker = "zz planted evaluation marker text"
    rows = toy_pairs(160)
    write_jsonl(tmp_path / "pairs.jsonl", rows[20:])
    write_jsonl(tmp_path / "eval.jsonl", [*rows[:20], {"anchor": marker, "positive": marker + " document"}])
    fitted: list[str] = []
    real_apply = PCARotation.apply

    def spy(self, model, ctx):
        encode = ctx.encode
        ctx.encode = lambda texts, role="document": (fitted.extend(texts), encode(texts, role))[1]
        return real_apply(self, model, ctx)

    monkeypatch.setattr(PCARotation, "apply", spy)
    tiny_recipe.set("warm_start", {"name": "pca-rotation"}).set("publish.truncate_dim", 16)
    tiny_recipe.set("data.eval_queries", None).set("data.eval_path", "eval.jsonl")
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results

    assert fitted and not any("marker" in t for t in fitted)
    assert set(fitted) <= {t for r in rows[20:] for t in (r["anchor"], r["positive"])}
    out = tmp_path / "out"
    assert [m.label for m in results.models.values()] == ["base", "MRL", "MRL + pca-rotation"]
    assert list(results.models) == ["base", "mrl-plain", "mrl"]
    assert results.train["mrl"].warm_start["name"] == "pca-rotation"
    assert results.train["mrl-plain"].warm_start is None
    assert "MRL + pca-rotation" in (out / "report.md").read_text()

    modules = json.loads((out / "model" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    loaded = _model(out / "model")
    assert loaded.encode(["audio tools"]).shape == (1, 16)  # the published default truncate_dim
    full = _model(out / "model")
    full.truncate_dim = None
    assert full.encode(["audio tools"]).shape == (1, 32)


def test_recipe_without_warm_start_is_unchanged(tiny_recipe, recipe_path, tmp_path):
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert list(results.models) == ["base", "mrl"] and results.models["mrl"].label == "MRL"
    assert list(results.train) == ["mrl"] and results.train["mrl"].warm_start is None
    modules = json.loads((tmp_path / "out" / "model" / "modules.json").read_text())
    assert len(modules) == 3
