"""Choosing on a validation split: how it is carved, and that every decision reads it."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.data.split import ValidationSize, carve_validation
from mrl_plugins.data.types import DataBundle, IRSet, RowFormat, normalise_text, rows_to_dataset
from mrl_plugins.errors import UserError
from mrl_plugins.evidence import decisions
from mrl_plugins.evidence.results import RunResults
from mrl_plugins.present.render import console
from mrl_plugins.present.sections import choices, report_sections
from mrl_plugins.testkit.recipes import run_recipe

V02 = Path(__file__).parent / "data" / "run-v0.2"


def rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"anchor": f"query number {i}", "positive": f"document number {i} text"} for i in range(start, start + n)]


def bundle(train: list[dict], spare: list[dict] | None = None, fmt: RowFormat = RowFormat.PAIRS) -> DataBundle:
    held = rows(5, start=10_000)
    eval_set = IRSet({f"q{i}": r["anchor"] for i, r in enumerate(held)},
                     {f"d{i}": r["positive"] for i, r in enumerate(held)}, {f"q{i}": {f"d{i}"} for i in range(5)})
    return DataBundle(rows_to_dataset(train, fmt), eval_set, fmt, spare=spare or [])


def texts(ir: IRSet) -> set[str]:
    return {normalise_text(t) for t in (*ir.queries.values(), *ir.relevant_texts())}


def test_spare_rows_validate_first_and_training_is_left_alone():
    original = bundle(rows(300), spare=rows(100, start=1000))
    carved = carve_validation(original, ValidationSize(queries=50, corpus=200), seed=3)
    val = carved.bundle.validation
    assert val is not None and len(val.queries) == 50 and carved.from_spare == 50 and carved.from_training == 0
    assert carved.bundle.train is original.train  # the trained models are those of a run without a split
    # its documents, then spare documents as distractors; never a training document (nothing fitted saw them):
    # 50 spare rows are left for distractors, so the corpus is 100 of the 200 asked for
    assert len(val.corpus) == 100 and carved.distractors_from_spare == 50 and carved.distractors_from_training == 0
    trained = {normalise_text(t) for r in original.train.to_list() for t in r.values()}
    assert not texts(val) & trained
    assert all(q.startswith("query number 1") for q in val.queries.values())


def test_without_spare_rows_it_takes_at_most_its_share_of_training_and_nothing_leaks():
    original = bundle(rows(300))
    carved = carve_validation(original, ValidationSize(queries=200, corpus=150, from_training=0.1), seed=0)
    val, train = carved.bundle.validation, carved.bundle.train
    assert val is not None and len(val.queries) == 30 and carved.from_training == 30  # 10% of 300 rows
    assert len(train) == 270 and carved.training_rows_removed == 30
    trained = {normalise_text(t) for r in train.to_list() for t in r.values()}
    assert not texts(val) & trained  # validation queries and their documents are never trained on
    assert not texts(val) & texts(original.eval) and not set(val.corpus.values()) & set(original.eval.corpus.values())


def test_a_hard_negative_that_is_an_evaluation_text_stays_out_of_the_validation_corpus():
    held = rows(5, start=10_000)  # the evaluation set of bundle()
    train = [{**r, "negative": f"another document {i}"} for i, r in enumerate(rows(100))]
    spare = [{**r, "negative": held[i % 5]["positive"]} for i, r in enumerate(rows(50, start=1000))]
    carved = carve_validation(bundle(train, spare, fmt=RowFormat.TRIPLETS), ValidationSize(queries=20, corpus=40), seed=0)
    val = carved.bundle.validation
    assert val is not None and len(val.queries) == 20
    assert not {normalise_text(t) for t in val.corpus.values()} & {normalise_text(r["positive"]) for r in held}


def test_a_validation_set_too_small_to_choose_on_is_refused_with_the_fix():
    with pytest.raises(UserError) as err:
        carve_validation(bundle(rows(40)), ValidationSize(queries=200), seed=0, where="r.toml: [validation]")
    message = str(err.value)
    assert "r.toml: [validation] queries = 200" in message and "only 8 queries" in message
    assert "queries = 0" in message and "from_training" in message


def test_scored_pairs_validate_on_the_pairs_above_the_threshold():
    scored = [{"sentence1": f"query {i}", "sentence2": f"doc {i}", "score": 0.9 if i % 2 else 0.1} for i in range(200)]
    carved = carve_validation(bundle(scored, fmt=RowFormat.SCORED_PAIRS), ValidationSize(queries=20, corpus=60), seed=1)
    val = carved.bundle.validation
    assert val is not None and len(val.queries) == 20
    assert all(int(q.split()[1]) % 2 for q in val.queries.values())  # only queries with a relevant pair


# -- decisions read validation ---------------------------------------------------------------------------------
def planted() -> RunResults:
    """The 0.2 fixture with a validation split planted: there MRL keeps 99% at 16 dims (held out it does
    not), and the adaptor helps at 8 and 16 but hurts at 32."""
    results = RunResults.load(V02 / "results.json")
    validation = {k: m.model_copy(deep=True) for k, m in results.models.items()}
    validation["mrl"].metrics[16]["mrr@10"] = validation["mrl"].metrics[32]["mrr@10"]
    adaptor = validation["compare:MRL · adaptor"]
    adaptor.metrics[32]["mrr@10"] = validation["mrl"].metrics[32]["mrr@10"] - 0.05
    adaptor.metrics[16]["mrr@10"] = validation["mrl"].metrics[16]["mrr@10"] + 0.01
    results.validation = validation
    results.data.validation_queries, results.data.validation_corpus = 80, 400
    return results


def test_the_recommended_width_is_chosen_on_validation_and_reported_held_out():
    results = planted()
    assert results.chosen_on == "validation"
    assert decisions.recommended_widths(results)[0.99] == 16
    assert decisions.recommended_widths(RunResults.load(V02 / "results.json"))[0.99] == 32  # held out: not 16
    section = choices(results)
    assert section is not None and "chosen on the validation split (80 queries, 400 documents" in (section.note or "")
    widths = section.lines[0]
    held = results.retention("mrl", 16)
    assert "**16** (100.0% on validation" in widths and f"{held:.1%} held out" in widths


def test_the_adaptor_is_used_only_where_validation_says_it_helps():
    results = planted()
    (gate,) = decisions.adaptor_gates(results)
    assert gate.helps == [16, 8] and gate.hurts == [32]
    line = next(line for line in choices(results).lines if line.startswith("MRL · adaptor"))
    assert "use the adapted embedding at 16, 8 dims only" in line and "Held out:" in line


def test_a_run_without_validation_says_its_choices_rest_on_the_evaluation_set():
    results = RunResults.load(V02 / "results.json")
    assert results.chosen_on == "evaluation" and decisions.basis(results) is results
    assert results.scored("validation").models == {}
    text = console(report_sections(results))
    assert "chosen on the evaluation set itself" in text


def test_the_stopping_epoch_is_the_best_one_on_validation_and_can_be_the_identity():
    from mrl_plugins.builtin.adaptor import AdaptorParams, fit_adaptor

    x = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    params = AdaptorParams(epochs=6, validate_every=2, batch_size=16)
    identity, epoch = fit_adaptor(x, None, [16, 8], params, judge=lambda net: -float(net.linear.weight.detach().abs().sum()))
    assert epoch == 0 and float(identity.linear.weight.abs().sum()) == 0.0
    judged: list[float] = []
    moved, epoch = fit_adaptor(x, None, [16, 8], params,
                               judge=lambda net: judged.append(1) or float(net.linear.weight.detach().abs().sum()))
    assert epoch == 6 and len(judged) == 4 and float(moved.linear.weight.abs().sum()) > 0  # judged at 0, 2, 4, 6


@pytest.mark.slow
def test_a_run_scores_every_column_on_validation_and_reports_its_choices(finished_tiny_run):
    results = RunResults.load(finished_tiny_run / "results.json")
    assert results.chosen_on == "validation" and set(results.validation) == set(results.models)
    assert results.data.validation_queries >= 10 and results.data.validation_from["training"] > 0
    report = (finished_tiny_run / "report.md").read_text()
    assert "## What the run chooses" in report and "chosen on the validation split" in report
    card = (finished_tiny_run / "model" / "README.md").read_text()
    assert "chosen on the validation split" in card
    import json

    assert json.loads((finished_tiny_run / "model" / "mrl.json").read_text())["chosen_on"] == "validation"
    # the per-width recommendation is tested against plain MRL wherever it is another column
    assert all(t.role in ("plain MRL", "strongest alternative") and 0 <= t.p <= 1 for t in results.tests)


@pytest.mark.slow
def test_validation_can_be_turned_off_and_the_report_says_so(tiny_recipe, recipe_path):
    run = run_recipe(tiny_recipe.set("validation.queries", 0).write(recipe_path), "-q").assert_success()
    assert run.results.validation == {} and run.results.data.validation_queries == 0
    assert "chosen on the evaluation set itself" in (run.output_dir / "report.md").read_text()


@pytest.mark.slow
def test_training_curves_on_validation_and_early_stopping(tiny_recipe, recipe_path):
    recipe = tiny_recipe.set("train.max_steps", 8).set("validation.eval_steps", 2).set("validation.patience", 1)
    run = run_recipe(recipe.write(recipe_path), "-q").assert_success()
    facts = run.results.train["mrl"]
    steps = [point["step"] for point in facts.curve]
    assert steps and steps == sorted(steps) and all(s % 2 == 0 for s in steps[:-1])
    assert all(set(point["mrr@10"]) == {"32", "16", "8"} or set(point["mrr@10"]) == {32, 16, 8} for point in facts.curve)
    means = [np.mean(list(point["mrr@10"].values())) for point in facts.curve]
    if facts.curve[-1].get("stopped"):  # stopped at the first score that was not better than the best before it
        assert facts.steps == steps[-1] < 8 and means[-1] <= max(means[:-1])
    else:
        assert facts.steps == 8 and all(b > a for a, b in itertools.pairwise(means))
    report = (run.output_dir / "report.md").read_text()
    assert "## Training" in report and "validation MRR@10 at 8" in report


def test_patience_without_validation_scores_is_refused(tiny_recipe, recipe_path):
    outcome = run_recipe(tiny_recipe.set("validation.patience", 2).write(recipe_path), command="validate")
    assert outcome.code == 2 and "[validation] patience: 2 needs validation scores during training" in outcome.err


# -- choices with a margin (issue #36) -------------------------------------------------------------------------
def with_scores(results: RunResults, per_query: dict[str, dict[int, list[float]]]) -> RunResults:
    """Per-query validation scores planted beside the planted validation means (they agree)."""
    results.validation_scores = per_query
    for column, dims in per_query.items():
        for d, values in dims.items():
            results.validation[column].metrics[d]["mrr@10"] = float(np.mean(values))
    return results


def noisy(mean: float, n: int = 200, spread: float = 0.4, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(np.clip(mean + rng.normal(0, spread, n), 0, 1).round(4))


def jitter(values: list[float], mean: float, seed: int) -> list[float]:
    """Other per-query scores with the given mean: as far from ``values`` query by query as noise is."""
    noise = np.random.default_rng(seed).normal(0, 0.15, len(values))
    out = np.asarray(values) + noise
    return list((out - out.mean() + mean).round(6))


def test_within_noise_the_wider_width_wins_and_an_equal_cost_lead_is_taken_and_said():
    results = planted()
    base = noisy(0.8, seed=1)
    # 16 dims keep 99.7% on average (the mean rule took it), query by query as noisy as 200 queries are
    near = jitter(base, 0.997 * float(np.mean(base)), seed=8)
    adaptor = jitter(near, float(np.mean(near)) + 0.003, seed=9)  # "wins" by 0.003 at 16: noise, not a gain
    results = with_scores(results, {"mrl": {32: base, 16: near, 8: noisy(0.3, seed=2)},
                                    "compare:MRL · adaptor": {32: base, 16: adaptor, 8: noisy(0.5, seed=3)}})
    assert decisions.smallest_width(decisions.basis(results), "mrl", 0.99) == 16  # 0.8's answer, by the mean
    width = decisions.width_choice(results, 0.99)
    assert width.width == 32 and width.by_mean == 16 and width.noise is not None and not width.noise.beyond_noise
    # the adaptor costs no more to serve: its lead at 16 is taken, and said to be within noise
    for column in results.validation:
        if column not in ("mrl", "compare:MRL · adaptor"):
            results.validation[column].metrics[16]["mrr@10"] = 0.1  # out of the way: MRL or the adaptor at 16
    (gate,) = decisions.adaptor_gates(results)
    assert 16 in gate.helps and 16 in gate.noise and 8 in gate.helps and 8 not in gate.noise  # 8: +0.2, beyond
    assert decisions.best_column(results, 8) == "compare:MRL · adaptor"
    choice = decisions.column_choice(results, 16)
    assert choice.column == "compare:MRL · adaptor" and choice.noise is not None and not choice.noise.beyond_noise
    lines = "\n".join(choices(results).lines)
    assert "16 keeps" in lines and "within noise of 99%" in lines
    assert "ahead only within noise at 16: used there all the same" in lines
    assert "ahead of MRL only within noise, p = " in lines


def test_a_real_gain_leaves_the_simpler_option():
    results = planted()
    base = noisy(0.8, seed=4)
    results = with_scores(results, {"mrl": {32: base, 16: [v * 0.999 for v in base], 8: noisy(0.3, seed=5)},
                                    "compare:MRL · adaptor": {32: base, 16: [min(1.0, v + 0.2) for v in base],
                                                              8: noisy(0.5, seed=6)}})
    assert decisions.width_choice(results, 0.99).width == 16  # 99.9% of full on every query: beyond noise
    (gate,) = decisions.adaptor_gates(results)
    assert 16 in gate.helps and not gate.noise


def test_a_choice_that_did_not_hold_is_said_in_the_report_and_the_card():
    from mrl_plugins.evidence.agreement import choice_checks
    from mrl_plugins.present.card import checks_summary

    results = planted()  # validation says 16 keeps 99%; held out it keeps far less
    held = RunResults.load(V02 / "results.json")
    full = np.array(noisy(held.value("mrl", 32), n=60, spread=0.2, seed=7))
    scores = {"mrl": {32: full, 16: full * 0.8, 8: full * 0.3}}
    checks = choice_checks(results, scores)
    width = next(c for c in checks if c.choice == "width ≥ 99% (MRL)")
    assert width.chosen == "16 dims" and not width.holds and width.delta < 0 and width.p < 0.05
    results.checks = checks
    text = console(report_sections(results))
    assert "Did the choices hold?" in text and "Did not hold: width ≥ 99% (MRL): 16 dims" in text
    assert "width ≥ 99% (MRL): 16 dims" in " ".join(checks_summary(results)["failed"])


PLANTED_SOURCE = '''
"""A source that can give the validation split 0.8 carved: unseen queries, training documents as distractors."""
from pydantic import Field

from mrl_plugins import hookimpl
from mrl_plugins.components import Column, Comparison, DataSource, Params
from mrl_plugins.data import DataBundle, IRSet, RowFormat, rows_to_dataset, split_by_query
from mrl_plugins.testing import toy_pairs


class PlantedParams(Params):
    old_split: bool = Field(False, description="Give the validation set with training distractors.")


class Planted(DataSource[PlantedParams]):
    """Toy pairs; optionally the old validation split."""

    name = "planted"
    Params = PlantedParams
    produces = ("pairs",)

    def load(self, request):
        rows = [{"anchor": r["anchor"], "positive": r["positive"]} for r in toy_pairs(400)]
        split = split_by_query(rows, eval_queries=40, seed=request.seed, corpus_size=120)
        train, spare = split.train_rows[:250], split.train_rows[250:]
        validation = None
        if self.params.old_split:  # queries of spare rows, their documents, then training documents
            queries = {f"vq{i}": r["anchor"] for i, r in enumerate(spare[:40])}
            corpus = {f"v{i}": r["positive"] for i, r in enumerate(spare[:40])}
            corpus |= {f"t{i}": r["positive"] for i, r in enumerate(train[:200])}
            validation = IRSet(queries, corpus, {f"vq{i}": {f"v{i}"} for i in range(len(queries))})
        return DataBundle(rows_to_dataset(train, "pairs"), split.eval, RowFormat.PAIRS, spare=spare,
                          validation=validation)


class MemoriseParams(Params):
    model: str = "mrl"


class Memorise(Comparison[MemoriseParams]):
    """Overfits the training side: pushes every training document away from every query."""

    name = "memorise"
    Params = MemoriseParams

    def run(self, ctx):
        queries, corpus = ctx.embeddings("mrl")
        seen = set(ctx.train_texts("documents"))
        corpus = corpus.copy()
        for row, text in enumerate(ctx.eval_set.corpus.values()):
            if text in seen:
                corpus[row] = -corpus[row]
        ctx.model("mrl").save(str(ctx.output_dir() / "model"))  # a model one could publish
        return ctx.score(queries, corpus)


@hookimpl
def register_data_sources(register):
    register(Planted)


@hookimpl
def register_comparisons(register):
    register(Memorise)
'''


def test_training_distractors_flatter_an_overfitted_column_and_the_new_split_does_not(tiny_model_dir, tmp_path):
    """0.8 topped the validation corpus up with training documents: a column fitted to the
    training side (here one that pushes every training document away) looked better there than it
    is, and the run chose it. The validation split now holds no training text: the same column ties
    with MRL there (it changes no validation document), and is not chosen."""
    from mrl_plugins.testkit.recipes import RecipeBuilder

    (tmp_path / "planted.py").write_text(PLANTED_SOURCE)
    chosen = {}
    for old in (True, False):
        recipe = RecipeBuilder.tiny(tiny_model_dir, {"name": "planted", "old_split": old},
                                    output_dir=tmp_path / f"out-{old}", dims={"name": "explicit", "values": [32, 8]})
        recipe.set("plugins", ["planted.py"]).add_comparison("memorise")
        outcome = run_recipe(recipe.write(tmp_path / f"recipe-{old}.toml"), "-q")
        outcome.assert_success()
        results = outcome.results
        chosen[old] = {d: decisions.best_column(results, d) for d in results.dims}
    assert "memorise(mrl)" in chosen[True].values()  # flattered by the training distractors, and chosen
    assert set(chosen[False].values()) <= {"mrl", "base"} and "memorise(mrl)" not in chosen[False].values()


def test_no_validation_text_is_in_any_fit_set(tiny_recipe, recipe_path, monkeypatch):
    """The models' training rows, the adaptor's and PCA's fit texts and pairs, the warm start's fit
    and the mined negatives: none holds a validation text (compared normalised)."""
    from mrl_plugins.models import compat
    from mrl_plugins.run import scoring, training

    seen: set[str] = set()

    def record(texts):
        seen.update(normalise_text(t) for t in texts)
        return texts

    real_texts, real_pairs = scoring.RunComparisonContext.train_texts, scoring.RunComparisonContext.train_pairs
    monkeypatch.setattr(scoring.RunComparisonContext, "train_texts", lambda self, side="documents":
                        record(real_texts(self, side)))
    monkeypatch.setattr(scoring.RunComparisonContext, "train_pairs", lambda self:
                        [record(pair) and pair for pair in real_pairs(self)])
    real_warm = training._WarmStartTexts.train_texts
    monkeypatch.setattr(training._WarmStartTexts, "train_texts", lambda self, side="all": record(real_warm(self, side)))
    real_mine = compat.mine_hard_negatives

    def mine(dataset, *args, **kwargs):
        record([t for col in dataset.column_names for t in dataset[col]])
        out = real_mine(dataset, *args, **kwargs)
        record([t for col in out.column_names for t in out[col]])
        return out

    monkeypatch.setattr(compat, "mine_hard_negatives", mine)
    real_train = training.train

    def train(ctx, model, run_model):
        record(ctx.bundle.training_texts("all"))
        return real_train(ctx, model, run_model)

    monkeypatch.setattr(training, "train", train)
    recipe = tiny_recipe.add_comparison("pca").add_comparison("adaptor", model="mrl", epochs=2)
    recipe.set("warm_start", {"name": "pca-rotation"}).set("mining", {"num_negatives": 1, "range_max": 10})
    outcome = run_recipe(recipe.write(recipe_path), "-q")
    outcome.assert_success()
    run = outcome.results
    assert run.data.validation_queries > 0 and seen
    carved = run.data.validation_from
    assert carved.get("distractors_from_training", 0) == 0 or carved.get("training", 0) > 0
    # the texts themselves: re-carve as the run did and compare
    from mrl_plugins.recipe import load_recipe
    from mrl_plugins.recipe.data import read_data_source, with_validation

    loaded = load_recipe(recipe_path)
    bundle, _ = with_validation(loaded, read_data_source(loaded))
    val = bundle.validation
    assert val is not None and len(val.queries) == run.data.validation_queries
    validation_texts = {normalise_text(t) for t in (*val.queries.values(), *val.corpus.values())}
    assert not validation_texts & seen


def test_the_validation_split_holds_out_whole_families_as_the_evaluation_split_does():
    """A source that holds out families (``groups``) gets a validation split by family too: no
    training row shares a family with a validation query."""
    family = {f"query number {i}": f"f{i // 5}" for i in range(300)}
    original = bundle(rows(300))
    original.groups = lambda row: family[row["anchor"]]
    carved = carve_validation(original, ValidationSize(queries=20, corpus=40, from_training=0.2), seed=0)
    val, train = carved.bundle.validation, carved.bundle.train.to_list()
    assert val is not None and len(val.queries) == 20
    held = {family[q] for q in val.queries.values()}
    assert len(held) == 4 and not held & {family[r["anchor"]] for r in train}  # four whole families of five
    assert carved.bundle.groups is original.groups
    by_query = carve_validation(bundle(rows(300)), ValidationSize(queries=20, corpus=40), seed=0).bundle.validation
    assert by_query is not None and len({family[q] for q in by_query.queries.values()}) > 4  # without it: by query


# -- cross-validation for post-hoc choices (issue #36, item 4) ------------------------------------------------
def test_folds_share_no_text_and_deal_every_row_once():
    from mrl_plugins.data.split import pair_folds

    pairs = [(f"query {i}", f"document {i}") for i in range(40)]
    pairs += [("Query 3 ", "another document"),  # the same query, written differently
              ("query 41", "document 5"), ("query 42", "DOCUMENT 5")]  # a document relevant to three queries
    folds = pair_folds(pairs, 4, seed=1)
    assert sorted(i for fold in folds for i in fold) == list(range(len(pairs)))
    texts = [{normalise_text(t) for i in fold for t in pairs[i]} for fold in folds]
    assert all(not a & b for a, b in itertools.combinations(texts, 2))
    assert max(map(len, folds)) - min(map(len, folds)) <= 3  # whole groups, dealt to the smallest fold
    assert pair_folds(pairs, 4, seed=1) == folds and pair_folds(pairs, 4, seed=2) != folds


def cv_context(n: int = 120, dim: int = 16, seed: int = 0):
    """Training pairs whose vectors carry their signal in the last dimensions (where the adaptor
    helps the prefixes), each text with its own vector; a small held-out set beside them."""
    from mrl_plugins.testkit.contexts import ArrayComparisonContext

    rng = np.random.default_rng(seed)
    scale = np.linspace(1.0, 3.0, dim)

    def pairs_of(m: int) -> tuple[np.ndarray, np.ndarray]:
        docs = rng.normal(size=(m, dim)) * scale
        return (docs + 0.6 * scale * rng.normal(size=(m, dim))).astype(np.float32), docs.astype(np.float32)

    q, d = pairs_of(n)
    pairs = [(f"q{i}", f"d{i}") for i in range(n)]
    vectors = {**{f"q{i}": q[i] for i in range(n)}, **{f"d{i}": d[i] for i in range(n)}}
    eq, ed = pairs_of(30)
    return ArrayComparisonContext(eq, ed, [{i} for i in range(30)], [16, 8, 4], texts=list(vectors), pairs=pairs,
                                  text_vectors=vectors)


def test_cross_validation_fits_each_fold_without_its_text_and_scores_it_on_it(monkeypatch):
    from mrl_plugins.builtin import adaptor as module
    from mrl_plugins.builtin import adaptor_cv

    ctx = cv_context()
    vectors = ctx.text_vectors
    assert vectors is not None
    calls: list[tuple[np.ndarray, int, bool, object]] = []
    real = module.fit_adaptor
    for where in (module, adaptor_cv):  # the final fit's caller, and each fold's
        monkeypatch.setattr(where, "fit_adaptor",
                            lambda texts, pairs, dims, p, judge=None: calls.append((texts, p.epochs, judge is not None,
                                                                                    pairs))
                            or real(texts, pairs, dims, p, judge))
    params = module.AdaptorParams(epochs=6, validate_every=2, batch_size=32, save=False, cv_folds=3)
    (column,) = module.Adaptor(params).run(ctx)
    cv = column.facts["cv"]
    assert cv["folds"] == 3 and cv["queries"] == 120  # every training query validated once
    assert column.facts["epochs_chosen_on"] == "3-fold cross-validation"
    *fold_fits, final = calls
    assert len(fold_fits) == 3 and all(judged for _, _, judged, _ in fold_fits)
    folds = adaptor_cv.pair_folds(ctx.pairs, 3, params.seed)
    for (texts, _, _, fold_pairs), rows in zip(fold_fits, folds):
        assert len(fold_pairs[0]) == 120 - len(rows)  # the ranking term's pairs: none of the fold's
        held = np.stack([vectors[t] for i in rows for t in ctx.pairs[i]])
        assert len(texts) == 240 - len(held)  # everything else, and nothing of the fold
        assert not (np.abs(texts[:, None, :] - held[None, :, :]).max(axis=2) == 0).any()
    # the final net is fitted on everything, for the chosen number of epochs, and is what the column scored
    assert final[1] == column.facts["epochs"] and not final[2] and len(final[0]) == 240
    refit, _ = real(final[0], final[3], ctx.dims, params.model_copy(update={"epochs": column.facts["epochs"]}))
    assert column.metrics == ctx.score(refit.apply(ctx.queries), refit.apply(ctx.corpus))


def test_the_cross_validated_epoch_is_the_best_mean_over_every_fold_s_queries():
    from mrl_plugins.builtin.adaptor import AdaptorParams, checkpoints, cross_validate

    ctx = cv_context(seed=3)
    vectors = dict(ctx.text_vectors or {})
    params = AdaptorParams(epochs=8, validate_every=2, batch_size=32, cv_folds=4, ranking_weight=0)
    fit = sorted(vectors)
    found = cross_validate(vectors, fit, list(ctx.pairs), ctx.dims, params)
    assert checkpoints(params) == [0, 2, 4, 6, 8] and found.epoch in checkpoints(params) and found.folds == 4
    facts = found.facts()
    for d in ctx.dims:
        assert facts["delta"][str(d)] == pytest.approx(found.adapted[d].mean() - found.plain[d].mean(), abs=1e-4)
        assert 0 <= facts["p"][str(d)] <= 1
    # epoch 0 is the identity: its scores are the un-adapted vectors' own, fold by fold
    assert found.epoch > 0 and facts["delta"]["4"] > 0  # the signal sits in the last dimensions: the prefix gains
    never = cross_validate(vectors, fit, list(ctx.pairs), ctx.dims, params.model_copy(update={"learning_rate": 1e-9}))
    assert never.epoch == 0 and all(np.array_equal(never.adapted[d], never.plain[d]) for d in ctx.dims)


def test_the_gate_follows_cross_validation_when_the_adaptor_chose_by_it():
    results = planted()  # on validation the adaptor helps at 16 and 8, hurts at 32
    column = results.models["compare:MRL · adaptor"]
    column.facts = {"epochs": 10, "epochs_chosen_on": "5-fold cross-validation",
                    "cv": {"folds": 5, "queries": 1500, "delta": {"32": 0.004, "16": -0.002, "8": 0.03},
                           "p": {"32": 0.4, "16": 0.6, "8": 0.001}}}
    (gate,) = decisions.adaptor_gates(results)
    assert gate.helps == [32, 8] and gate.hurts == [16] and gate.noise == [32]
    assert gate.cross_validated == "5-fold cross-validation over 1,500 training queries"
    section = choices(results)
    line = next(line for line in section.lines if line.startswith("MRL · adaptor"))
    assert "stopping epoch 10, chosen by 5-fold cross-validation" in line
    assert "by 5-fold cross-validation over 1,500 training queries it beats" in line
    assert "chose by cross-validation over the training side" in (section.note or "")


@pytest.mark.parametrize(("params", "message"), [
    ({"cv_folds": 1}, "cv_folds = 1 leaves nothing to fit on"),
    ({"cv_folds": 50}, "cv_folds = 50: cross-validation needs (query, document) training rows, at least 20 per fold"),
])
def test_cross_validation_is_checked_before_the_run(tiny_recipe, recipe_path, params, message):
    outcome = run_recipe(tiny_recipe.add_comparison("adaptor", **params).write(recipe_path), "--data", command="validate")
    assert outcome.code == 2 and message in outcome.err and "Traceback" not in outcome.err


def test_a_run_chooses_the_adaptor_by_cross_validation_and_says_so(tiny_recipe, recipe_path, caplog):
    recipe = tiny_recipe.add_comparison("adaptor", model="mrl", epochs=4, validate_every=2, cv_folds=3)
    run = run_recipe(recipe.write(recipe_path), "-q").assert_success()
    column = run.results.models["adaptor(mrl, cv_folds=3, epochs=4, validate_every=2)"]
    assert column.label == "MRL · adaptor (3-fold)" and column.facts["cv"]["folds"] == 3
    assert 0 < column.facts["cv"]["queries"] <= run.results.data.train_rows
    assert "that model was fine-tuned on the training pairs the folds are cut from" in caplog.text  # measured: it loses
    report = (run.output_dir / "report.md").read_text()
    assert "MRL · adaptor (3-fold) (stopping epoch" in report and "by 3-fold cross-validation over" in report
    assert any(c.choice.startswith("MRL · adaptor (3-fold) at") for c in run.results.checks)


def test_the_width_rule_takes_the_narrowest_width_beyond_noise_and_names_the_first_passed_over():
    from mrl_plugins.evidence.decisions.widths import narrowest

    keeps = {8: True, 16: True, 32: True, 64: True}.__getitem__
    assert narrowest([64, 8, 16, 32], keeps, {8: False, 16: True, 32: True}.get) == (16, 8)
    assert narrowest([64, 8, 16, 32], keeps, {8: False, 16: False, 32: False}.get) == (64, 8)  # none: the full width
    assert narrowest([64, 8, 16, 32], keeps, {}.get) == (8, None)  # nothing to weigh it: the mean decides
    assert narrowest([64, 8, 16, 32], {8: False, 16: True, 32: True, 64: True}.__getitem__,
                     {16: False, 32: True}.get) == (32, 16)  # a width that does not keep the share is no candidate
