"""Quality at the smallest widths: training objectives as plugins, the post-hoc adaptor, and the
statistics that say which differences are real."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrl_plugins.builtin.adaptor import Adaptor, AdaptorParams, adapted_model, fit_adaptor
from mrl_plugins.evidence.stats import bootstrap_interval, bootstrap_p_value, paired_p_value
from mrl_plugins.testkit.contexts import ArrayComparisonContext
from mrl_plugins.testkit.models import tiny_model
from mrl_plugins.testkit.recipes import run_recipe, toy_pairs, write_jsonl

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')


# -- objectives ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_layer_model(tmp_path_factory):
    from mrl_plugins.testkit.models import TOPICS

    return tiny_model(tmp_path_factory.mktemp("models") / "two-layers", words=TOPICS, layers=2)


@pytest.mark.parametrize(
    ("objective", "label"),
    [({"name": "matryoshka"}, "MRL"), ({"name": "matryoshka-2d"}, "2D-MRL"),
     ({"name": "prefix-distill", "weight": 0.5}, "MRL + prefix-distill"),
     ({"name": "binary-matryoshka", "binary_dims": [16, 8], "int8_weight": 0.5}, "MRL + binary")],
)
def test_each_objective_trains_a_tiny_model_end_to_end(tiny_recipe, recipe_path, two_layer_model, objective, label):
    tiny_recipe.set("model.name", str(two_layer_model)).set("objective", objective).add_comparison("no-mrl")
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert results.models["mrl"].label == label and results.train["mrl"].objective == objective["name"]
    assert results.train["no-mrl"].objective is None and results.train["no-mrl"].matryoshka is False


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ({"name": "prefix-distill", "temprature": 1}, "[objective] temprature: unknown key; did you mean 'temperature'?"),
        ({"name": "matryoshka-2d", "n_layers_per_step": 2}, "2 earlier layers per step, but the model has 2 layers"),
        ({"name": "matryoshka-2d", "last_layer_weight": 0}, "[objective] last_layer_weight: Input should be greater than 0"),
        ({"name": "prefix-distill", "weight": -1}, "[objective] weight: Input should be greater than or equal to 0"),
        ({"name": "matryoska"}, "unknown training objective 'matryoska'; did you mean 'matryoshka'?"),
        ({"name": "binary-matryoshka", "binary_dims": [64]}, "binary_dims: 64 is wider than the model's 32"),
        ({"name": "binary-matryoshka", "binary_dims": [16, 8], "binary_weights": [1.0]},
         "binary_weights: 1 weights for 2 binary_dims"),
        ({"name": "binary-matryoshka", "estimator": "sigmoid"}, "[objective] estimator: Input should be"),
    ],
)
def test_objectives_are_validated(tiny_recipe, recipe_path, two_layer_model, objective, message):
    tiny_recipe.set("model.name", str(two_layer_model)).set("objective", objective)
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and message in outcome.err


def test_two_d_matryoshka_needs_more_than_one_layer(tiny_recipe, recipe_path):
    outcome = run_recipe(tiny_recipe.set("objective", {"name": "matryoshka-2d"}).write(recipe_path), command="validate")
    assert outcome.code == 2 and "the model has 1 transformer layer" in outcome.err


def _loss_value(model_dir, objective: dict) -> float:
    """One forward pass of an objective's loss on a fixed batch."""
    import torch
    from sentence_transformers import SentenceTransformer

    from mrl_plugins.builtin.losses import MNRLoss
    from mrl_plugins.components import ObjectiveContext
    from mrl_plugins.testkit.models import isolated_registry

    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    cls = isolated_registry().get("objective", objective.pop("name"))
    loss = cls(cls.Params(**objective)).build(model, MNRLoss().build(model), ObjectiveContext([32, 16, 8], None, 32))
    rows = toy_pairs(16)
    features = [model.tokenize([r[c] for r in rows]) for c in ("anchor", "positive")]
    return float(loss(features, torch.zeros(16)).detach())


def test_prefix_distill_with_weight_zero_is_matryoshka(tiny_model_dir):
    plain = _loss_value(tiny_model_dir, {"name": "matryoshka"})
    assert _loss_value(tiny_model_dir, {"name": "prefix-distill", "weight": 0.0}) == plain
    assert _loss_value(tiny_model_dir, {"name": "prefix-distill", "weight": 1.0}) > plain  # the KL term adds


def test_binary_matryoshka_adds_the_codes_loss_and_is_matryoshka_without_it(tiny_model_dir):
    plain = _loss_value(tiny_model_dir, {"name": "matryoshka"})
    assert _loss_value(tiny_model_dir, {"name": "binary-matryoshka", "binary_weight": 0.0}) == plain
    with_codes = _loss_value(tiny_model_dir, {"name": "binary-matryoshka", "binary_dims": [16, 8]})
    with_int8 = _loss_value(tiny_model_dir, {"name": "binary-matryoshka", "binary_dims": [16, 8], "int8_weight": 1.0})
    assert plain < with_codes < with_int8  # each term adds a base loss of its own


def test_binary_codes_are_the_served_sign_bits_with_a_gradient_near_zero():
    """Forward: exactly the sign bits a binary index keeps (x > 0), as ±1. Backward (tanh-ste): the
    coordinates nearest zero, the ones an update flips, get the largest gradient; saturated ones
    almost none. ste passes the gradient on whatever the magnitude."""
    import torch

    from mrl_plugins.builtin.objectives import binary_codes, int8_codes

    x = torch.tensor([[0.01, -0.02, 0.9, -1.5, 0.3, -0.05]], requires_grad=True)
    codes = binary_codes(x, "tanh-ste", 0.5)
    assert torch.equal(codes.detach(), torch.where(x > 0, 1.0, -1.0))
    codes[0, [0, 2]].sum().backward()
    near, saturated = float(x.grad[0, 0]), float(x.grad[0, 2])
    assert near > 10 * saturated > 0
    x.grad = None
    binary_codes(x, "ste")[0, [0, 2]].sum().backward()
    assert float(x.grad[0, 2]) > 0.1 * float(x.grad[0, 0])
    rounded = int8_codes(x.detach())
    assert torch.allclose(rounded, x.detach(), atol=1.5 / 127) and len(set((rounded / (1.5 / 127)).round().tolist()[0])) == 6


def _embedding_grads(model_dir, weight: float):
    """The gradient of the prefix-distill loss on each input's full-width embedding."""
    import torch
    from sentence_transformers import SentenceTransformer

    from mrl_plugins.builtin.losses import MNRLoss
    from mrl_plugins.builtin.objectives import PrefixDistill, PrefixDistillParams
    from mrl_plugins.components import ObjectiveContext

    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    seen = []
    forward = model.forward

    def keep(features):  # the loss calls the model's forward once per input; keep each embedding's gradient
        out = forward(features)
        out["sentence_embedding"].retain_grad()
        seen.append(out["sentence_embedding"])
        return out

    model.forward = keep
    loss = PrefixDistill(PrefixDistillParams(weight=weight)).build(model, MNRLoss().build(model),
                                                                    ObjectiveContext([32, 16, 8], None, 32))
    rows = toy_pairs(16)
    loss([model.tokenize([r[c] for r in rows]) for c in ("anchor", "positive")], torch.zeros(16)).backward()
    return [e.grad.clone() for e in seen]


def test_prefix_distill_teaches_the_prefixes_and_never_moves_the_teacher(tiny_model_dir):
    """The distillation term's gradient reaches the dimensions the prefixes use (the first 16) and
    none beyond them: the full-width similarities it distils from are a fixed target. Were the
    teacher not detached, dimensions 16-31 would be pulled towards the prefixes too."""
    import torch

    plain, distilled = _embedding_grads(tiny_model_dir, 0.0), _embedding_grads(tiny_model_dir, 5.0)
    assert len(plain) == len(distilled) == 2
    for g0, g1 in zip(plain, distilled):
        term = g1 - g0  # the distillation term's own gradient (the Matryoshka part is the same in both)
        assert torch.count_nonzero(term[:, :16]) > 0
        assert torch.allclose(term[:, 16:], torch.zeros_like(term[:, 16:]), atol=1e-7)


# -- the adaptor ------------------------------------------------------------------------------------
def vectors(n, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, dim)) * np.linspace(1.0, 3.0, dim)).astype(np.float32)  # variance at the end


def test_an_identity_adaptor_leaves_rankings_unchanged():
    rng = np.random.default_rng(1)
    queries, corpus = vectors(20, seed=2), vectors(80, seed=3)
    relevant = [{int(i)} for i in rng.integers(0, 80, 20)]
    ctx = ArrayComparisonContext(queries, corpus, relevant, [32, 16, 8], fit_vectors=vectors(100), texts=["t"] * 100)
    (untrained,) = Adaptor(AdaptorParams(epochs=0, save=False)).run(ctx)
    assert untrained.metrics == ctx.score(queries, corpus) and untrained.facts["epochs"] == 0


def test_an_adapted_shortlist_reranked_un_adapted_keeps_the_model_s_own_full_ranking():
    queries, corpus = vectors(30, seed=8), vectors(120, seed=9)
    relevant = [{int(i)} for i in np.random.default_rng(2).integers(0, 120, 30)]
    ctx = ArrayComparisonContext(queries, corpus, relevant, [32, 16, 8], fit_vectors=vectors(200), texts=["t"] * 200)
    adapted, reranked = Adaptor(AdaptorParams(epochs=3, save=False, rerank_full=120)).run(ctx)
    plain = ctx.score(queries, corpus)
    assert reranked.params == {"rerank_full": 120} and "rerank 32 un-adapted" in reranked.name
    # a shortlist of the whole corpus reranked by the un-adapted vectors is the un-adapted model at full width
    assert all(reranked.metrics[d]["mrr@10"] == pytest.approx(plain[32]["mrr@10"]) for d in (32, 16, 8))
    assert adapted.params == {} and adapted.facts["epochs"] == 3


def test_the_adaptor_helps_the_prefixes_it_was_trained_for():
    queries, corpus = vectors(60, seed=5), vectors(300, seed=6)
    relevant = [set(np.argsort(-(q @ corpus.T))[:1].tolist()) for q in queries]  # relevance by full similarity
    ctx = ArrayComparisonContext(queries, corpus, relevant, [32, 8], fit_vectors=vectors(1000, seed=7),
                                 texts=[f"t{i}" for i in range(1000)])
    before = ctx.score(queries, corpus)
    after = Adaptor(AdaptorParams(epochs=20, save=False, ranking_weight=0)).run(ctx)[0].metrics
    assert after[8]["mrr@10"] > before[8]["mrr@10"] + 0.05  # the leading dims now carry what mattered


def test_the_adaptor_fits_on_training_texts_only_and_saves_a_model_that_loads_truncated(
    tiny_recipe, recipe_path, tmp_path, monkeypatch
):
    from sentence_transformers import SentenceTransformer

    from mrl_plugins.builtin import adaptor as adaptor_module
    from mrl_plugins.run import scoring

    marker = "zz planted evaluation marker text"
    rows = toy_pairs(160)
    write_jsonl(tmp_path / "pairs.jsonl", rows[20:])
    write_jsonl(tmp_path / "eval.jsonl", [*rows[:20], {"anchor": marker, "positive": marker + " document"}])
    encoded: list[str] = []
    real = scoring.RunComparisonContext.encode
    monkeypatch.setattr(scoring.RunComparisonContext, "encode", lambda self, m, t: (encoded.extend(t), real(self, m, t))[1])
    fitted = []
    real_fit = adaptor_module.fit_adaptor
    monkeypatch.setattr(adaptor_module, "fit_adaptor", lambda *a, **k: fitted.append(a) or real_fit(*a, **k))
    tiny_recipe.set("data.eval_queries", None).set("data.eval_path", "eval.jsonl")
    tiny_recipe.add_comparison("adaptor", epochs=3, kind="mlp")
    tiny_recipe.set("validation.queries", 0)  # no epoch chosen: the fit runs its 3 epochs, so it moves
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert encoded and fitted and not any("marker" in t for t in encoded)
    assert set(encoded) <= {t for r in rows[20:] for t in (r["anchor"], r["positive"])}
    column = results.models["adaptor(base, epochs=3, kind=mlp)"]
    assert column.saved_model == "comparisons/adaptor-base-epochs-3-kind-mlp/model"
    saved = tmp_path / "out" / column.saved_model
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((saved / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Normalize", "Dense", "Normalize"]
    # the saved model gives what the comparison scored: the adaptor applied to the base model's vectors
    base = SentenceTransformer(str(results.model.name), device="cpu")
    adapted = SentenceTransformer(str(saved), device="cpu")
    texts = ["audio video tools", "the kernel editor"]
    assert adapted.encode(texts).shape == (2, 32) and not np.allclose(adapted.encode(texts), base.encode(texts), atol=1e-4)
    assert SentenceTransformer(str(saved), device="cpu", truncate_dim=8).encode(texts).shape == (2, 8)
    assert column.metrics[8]["mrr@10"] >= 0


def test_an_adapted_model_equals_the_adaptor_applied_to_the_original_vectors(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    texts = [r["anchor"] for r in toy_pairs(50)]
    x = model.encode(texts)
    for kind in ("linear", "mlp"):
        net, _ = fit_adaptor(x, None, [32, 16, 8], AdaptorParams(kind=kind, epochs=3, batch_size=16))
        adapted = adapted_model(model, net)
        expected = net.apply(x)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        np.testing.assert_allclose(adapted.encode(texts), expected, atol=1e-5)


# -- statistics ------------------------------------------------------------------------------------
def test_a_bootstrap_interval_holds_its_estimate_and_shrinks_with_more_queries():
    rng = np.random.default_rng(0)
    small, large = rng.random(100), rng.random(2000)
    for values in (small, large):
        low, high = bootstrap_interval(values)
        assert low <= values.mean() <= high
    width = lambda v: np.subtract(*bootstrap_interval(v)[::-1])  # noqa: E731
    assert width(large) < width(small) / 2


def test_the_paired_test_finds_no_difference_between_a_column_and_itself():
    rng = np.random.default_rng(1)
    a = rng.random(300)
    assert paired_p_value(a, a) == 1.0
    assert paired_p_value(a, np.clip(a + 0.05, 0, 1)) < 0.01  # a real shift is found
    assert paired_p_value(a, a + rng.normal(0, 1e-3, 300) * (rng.random(300) > 0.5)) > 0.05  # noise is not


def test_the_bootstrap_p_value_is_twice_the_smaller_tail_of_paired_replicates():
    assert bootstrap_p_value(np.full(99, 0.2)) == pytest.approx(2 / 100)  # every replicate above zero
    assert bootstrap_p_value(np.r_[np.full(49, 0.1), np.full(50, -0.1)]) == 1.0
    assert bootstrap_p_value(np.r_[np.full(9, 0.1), [-0.1], [np.nan] * 50]) == pytest.approx(2 * 2 / 11)  # NaN left out
    assert bootstrap_p_value(np.array([np.nan, np.nan])) == 1.0


def test_reports_carry_intervals_and_significance(tiny_recipe, recipe_path, tmp_path):
    tiny_recipe.add_comparison("pca").set("train.seeds", [1, 2])
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    low, high = results.interval("base", 8)
    assert low <= results.value("base", 8) <= high
    assert results.p_value("mrl", 8) == 1.0  # MRL against itself
    assert results.models["mrl-seed2"].kind == "seed" and results.train["mrl-seed2"].seed == 2
    assert results.train["mrl"].seed == 1
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Which differences are real (MRR@10, reference: MRL)" in report and "## Across training seeds" in report
    assert "mean ± sd over 2 seeds" in report
    assert "No intervals" not in report  # every built-in column is scored through the run's scorer
    from mrl_plugins.present.report import format_table, report_markdown

    bare = results.model_copy(deep=True)
    bare.models["pca(base)"].intervals = None  # as from a plugin that returns only its means
    line = "No intervals or tests for base · PCA: computed without per-query scores"
    assert line in format_table(bare) and line in report_markdown(bare)


def test_a_variant_trains_mrl_again_with_another_objective_or_warm_start(tiny_recipe, recipe_path):
    tiny_recipe.add_comparison("variant", objective="prefix-distill").add_comparison("variant", warm_start="pca-rotation")
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert [k for k in results.models] == ["base", "mrl", "mrl-prefix-distill", "mrl-pca-rotation"]
    assert results.train["mrl-prefix-distill"].objective == "prefix-distill"
    assert results.train["mrl-pca-rotation"].warm_start["name"] == "pca-rotation"
    assert results.train["mrl"].warm_start is None and results.models["mrl-pca-rotation"].label == "MRL + pca-rotation"
    assert results.p_value("mrl-prefix-distill", 8) is not None  # compared query by query with MRL


def test_a_variant_must_name_something_that_exists(tiny_recipe, recipe_path):
    tiny_recipe.add_comparison("variant").add_comparison("variant", objective="matryoska")
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and "variant: name an objective, a warm_start, or both" in outcome.err
    assert "objective: unknown training objective 'matryoska'; did you mean 'matryoshka'?" in outcome.err


def test_the_distillation_term_is_large_enough_to_change_training(tiny_model_dir):
    """Its size is comparable with the base loss's (a τ² factor once made it 400 times too small to matter)."""
    plain = _loss_value(tiny_model_dir, {"name": "matryoshka"})
    distilled = _loss_value(tiny_model_dir, {"name": "prefix-distill", "weight": 1.0})
    assert distilled - plain > 0.01 * plain


def test_an_adapted_model_publishes_like_the_mrl_model(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    from tests.hub_server import FakeHub

    run = run_recipe(tiny_recipe.add_comparison("adaptor", epochs=2).write(recipe_path), "-q").assert_success()
    column = run.results.models["adaptor(base, epochs=2)"]
    assert column.saved_model == "comparisons/adaptor-base-epochs-2/model"
    assert "base · adaptor: comparisons/adaptor-base-epochs-2/model" in run.out  # the run says where to publish it from
    assert "- base · adaptor: `comparisons/adaptor-base-epochs-2/model`" in (run.output_dir / "report.md").read_text()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        outcome = run_recipe(tmp_path / "out", "--repo-id", "alice/adapted", "--model", column.saved_model, command="publish")
        assert outcome.code == 0, outcome.err
        card = hub.state.files[("alice/adapted", "main")]["README.md"].decode()
        # loaded back by repo id, truncated: the adaptor's layers come with it
        import numpy as np
        from sentence_transformers import SentenceTransformer

        hub.serve_downloads(monkeypatch)
        texts = ["audio tools", "a text editor"]
        remote = SentenceTransformer("alice/adapted", truncate_dim=8, device="cpu", cache_folder=str(tmp_path / "dl"))
        local = SentenceTransformer(str(tmp_path / "out" / column.saved_model), truncate_dim=8, device="cpu")
        np.testing.assert_allclose(remote.encode(texts), local.encode(texts), atol=1e-6)
        assert len(remote) == len(local) > 2  # transformer, pooling and the adaptor's own modules
    assert "as 'base · adaptor'" in card
    m = column.metrics[8]
    assert f"| 8 | {m['mrr@10']:.4f} | {m['recall@10']:.4f} | {m['ndcg@10']:.4f} |" in card
    refused = run_recipe(tmp_path / "out", "--repo-id", "a/b", "--model", "variants/none", command="publish")
    assert refused.code == 2


def test_binary_matryoshka_refuses_a_base_loss_that_embeds_an_input_twice(tiny_model_dir):
    """The code terms replay one captured forward per input; a base loss that runs the model
    twice per input must stop the run with a clear error, not train plain MRL in silence."""
    import torch
    from sentence_transformers import SentenceTransformer

    from mrl_plugins.builtin.losses import MNRLoss
    from mrl_plugins.builtin.objectives import BinaryMatryoshka, BinaryMatryoshkaParams
    from mrl_plugins.components import ObjectiveContext
    from mrl_plugins.errors import UserError

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    mnr = MNRLoss().build(model)

    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, features, labels):
            for f in features:
                self.model(f)  # an extra pass per input (a loss of its own kind)
            return mnr(features, labels)

    def value(params: BinaryMatryoshkaParams):
        loss = BinaryMatryoshka(params).build(model, Twice(), ObjectiveContext([32, 16, 8], None, 32))
        rows = toy_pairs(8)
        features = [model.tokenize([r[c] for r in rows]) for c in ("anchor", "positive")]
        return loss(features, torch.zeros(8))

    with pytest.raises(UserError, match=r"ran the model 4 times for 2 inputs"):
        value(BinaryMatryoshkaParams(binary_dims=[16]))
    value(BinaryMatryoshkaParams(binary_weight=0.0))  # no code term: nothing replayed, plain MRL


def test_the_stopping_epoch_is_the_best_and_the_earliest_of_equals():
    from mrl_plugins.builtin.adaptor import best_epoch

    assert best_epoch({0: 0.50, 5: 0.61, 10: 0.60, 15: 0.61}) == 5  # a tie does not move it later
    assert best_epoch({0: 0.50, 5: 0.50 + 1e-10, 10: 0.49}) == 0  # nor a difference within 1e-9
    assert best_epoch({10: 0.7, 0: 0.4, 5: 0.7}) == 5  # judged in epoch order, whatever the dict's
    with pytest.raises(ValueError):
        best_epoch({})
