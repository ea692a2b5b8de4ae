"""The stronger training components: GradCache MNR, GISTEmbed, and hard-negative mining."""

from __future__ import annotations

import pytest

from mrl_plugins.data.types import normalise_text
from mrl_plugins.testkit.recipes import run_recipe

pytestmark = pytest.mark.slow  # trains tiny runs: outside the fast lane (-m 'not slow')


@pytest.mark.parametrize("loss", [{"name": "cached-mnr", "mini_batch_size": 4}, {"name": "gist"}])
def test_the_stronger_losses_train_under_matryoshka(loss, tiny_recipe, recipe_path):
    results = run_recipe(tiny_recipe.set("loss", loss).write(recipe_path), "-q").assert_success().results
    assert results.train["mrl"].steps == 3 and results.train["mrl"].losses  # the trainer logged a finite loss
    assert all(v == v for _, v in results.train["mrl"].losses)


def test_mined_negatives_come_from_training_positives_only(tiny_recipe, recipe_path, monkeypatch):
    from mrl_plugins.models import compat as _st
    from mrl_plugins.run import pipeline

    seen, held = {}, {}
    real, real_check = _st.mine_hard_negatives, pipeline.check_with_data

    def recording(dataset, *args, **kwargs):
        seen["in"], seen["out"] = dataset, real(dataset, *args, **kwargs)
        return seen["out"]

    def checking(ctx):  # what the run holds out, seen right after mining (the validation corpus's distractors
        # are training documents by design: only its queries and their documents are held out)
        val, ev = ctx.bundle.validation, ctx.bundle.eval
        held["out"] = {normalise_text(t) for t in (*ev.queries.values(), *ev.corpus.values(), *val.queries.values(),
                                                   *val.relevant_texts())}
        return real_check(ctx)

    monkeypatch.setattr(_st, "mine_hard_negatives", recording)
    monkeypatch.setattr(pipeline, "check_with_data", checking)
    recipe = tiny_recipe.set("mining", {"num_negatives": 1, "relative_margin": 0.0, "range_max": 20})
    results = run_recipe(recipe.write(recipe_path), "-q").assert_success().results
    mined, pairs = seen["out"], seen["in"]
    assert results.data.row_format == "triplets" and mined.column_names == ["anchor", "positive", "negative"]
    facts = results.data.summary["mining"]
    assert facts["pairs"] == len(pairs) and facts["triplets"] == len(mined) > 0 and facts["seconds"] >= 0
    positives = set(pairs["positive"])
    assert set(mined["negative"]) <= positives  # mined among the training rows' own documents
    assert all(n != p for n, p in zip(mined["negative"], mined["positive"]))
    assert not {normalise_text(t) for t in mined["negative"]} & held["out"]


def test_mining_adds_negatives_to_pairs_only(tiny_recipe, recipe_path):
    recipe = tiny_recipe.set("mining", {}).set("data.format", "triplets")
    outcome = run_recipe(recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and "[mining]: data source 'local' gives triplets rows" in outcome.err


def test_mining_switched_off_is_no_mining(tiny_recipe, recipe_path):
    """``[mining] enabled = false`` (what a sweep switches) is the recipe without ``[mining]``: triplets data
    with mining off validates, and the run trains on its pairs."""
    recipe = tiny_recipe.set("mining", {"enabled": False, "num_negatives": 2}).set("data.format", "triplets")
    assert run_recipe(recipe.write(recipe_path), command="validate").code == 0
    off = tiny_recipe.set("data.format", "pairs").set("mining", {"enabled": False})
    results = run_recipe(off.write(recipe_path), "-q").assert_success().results
    assert results.data.row_format == "pairs" and "mining" not in results.data.summary
