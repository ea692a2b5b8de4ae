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
    assert len(val.corpus) == 200  # its documents, then spare documents, then training documents as distractors
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
