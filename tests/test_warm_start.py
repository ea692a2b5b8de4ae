"""Warm start: a PCA rotation in front of Matryoshka training."""

from __future__ import annotations

import json

import numpy as np

from mrl_plugins.builtin.warm_starts import PCARotation
from mrl_plugins.cli import main
from mrl_plugins.components import WarmStartContext
from mrl_plugins.evaluation import encode_texts
from mrl_plugins.testing import write_jsonl
from tests.conftest import synthetic_pairs


def _model(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def test_rotation_keeps_full_dimension_similarities_and_rankings(tiny_model_dir):
    rows = synthetic_pairs(120)
    train = [r["anchor"] for r in rows[:80]] + [r["positive"] for r in rows[:80]]
    probe = [r["anchor"] for r in rows[80:]] + [r["positive"] for r in rows[80:]]
    model = _model(tiny_model_dir)
    before = model.encode(probe)
    facts = PCARotation(PCARotation.Params()).apply(model, WarmStartContext(
        seed=0, train_texts=lambda side="all": train, encode=lambda t, role="document": encode_texts(model, t, role=role),
    ))
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
    texts = [r["positive"] for r in synthetic_pairs(60)]
    PCARotation(PCARotation.Params()).apply(model, WarmStartContext(0, lambda side="all": texts, lambda t, role="document": encode_texts(model, t, role=role)))
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Dense"]


def test_warm_start_run_fits_on_training_texts_only_and_saves_the_layer(tiny_recipe, tmp_path, monkeypatch):
    marker = "zz planted evaluation marker text"
    rows = synthetic_pairs(160)
    write_jsonl(tmp_path / "pairs.jsonl", rows[20:])
    write_jsonl(tmp_path / "eval.jsonl", [*rows[:20], {"anchor": marker, "positive": marker + " document"}])
    fitted: list[str] = []
    real_apply = PCARotation.apply

    def spy(self, model, ctx):
        encode = ctx.encode
        ctx.encode = lambda texts, role="document": (fitted.extend(texts), encode(texts, role))[1]
        return real_apply(self, model, ctx)

    monkeypatch.setattr(PCARotation, "apply", spy)
    recipe = tiny_recipe('[warm_start]\nname = "pca-rotation"\n[publish]\ntruncate_dim = 16\n')
    recipe.write_text(recipe.read_text().replace('eval_queries = 20', 'eval_path = "eval.jsonl"'))
    assert main([str(recipe), "-q"]) == 0

    assert fitted and not any("marker" in t for t in fitted)
    assert set(fitted) <= {t for r in rows[20:] for t in (r["anchor"], r["positive"])}
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert [m["label"] for m in results["models"].values()] == ["base", "MRL", "MRL + pca-rotation"]
    assert results["train"]["mrl"]["warm_start"]["name"] == "pca-rotation"
    assert "warm_start" not in results["train"]["mrl-plain"]
    assert "MRL + pca-rotation" in (out / "report.md").read_text()

    modules = json.loads((out / "model" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    loaded = _model(out / "model")
    assert loaded.encode(["audio tools"]).shape == (1, 16)  # the published default truncate_dim
    full = _model(out / "model")
    full.truncate_dim = None
    assert full.encode(["audio tools"]).shape == (1, 32)


def test_recipe_without_warm_start_is_unchanged(tiny_recipe, tmp_path):
    assert main([str(tiny_recipe()), "-q"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results["models"]) == ["base", "mrl"] and results["models"]["mrl"]["label"] == "MRL"
    assert list(results["train"]) == ["mrl"] and "warm_start" not in results["train"]["mrl"]
    modules = json.loads((tmp_path / "out" / "model" / "modules.json").read_text())
    assert len(modules) == 3
