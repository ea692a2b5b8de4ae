"""How the funnel's settings scale with the corpus, and the serving choice that is never slower
than exact search (issue #37, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.builtin.index_backends import Flat
from mrl_plugins.data.types import DataBundle, IRSet, normalise_text, rows_to_dataset
from mrl_plugins.evidence import decisions
from mrl_plugins.evidence.results import RunResults
from mrl_plugins.search.growth import Growth, ladder, needed, recall_at, shortlist_ranks
from mrl_plugins.search.index import FunnelIndex
from mrl_plugins.testkit import run_recipe


def test_ranks_are_positions_in_the_shortlist_index_own_ranking():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(300, 16)).astype(np.float32)
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    index = FunnelIndex(16, 4, Flat(Flat.Params()))
    index.add(corpus)
    exact_ids = index.search(queries, 10, shortlist=300).ids  # a shortlist of the whole corpus: exact
    ranks = shortlist_ranks(index, queries, exact_ids, longest=50)
    unit = corpus[:, :4] / np.linalg.norm(corpus[:, :4], axis=1, keepdims=True)
    for i, q in enumerate(queries):
        order = np.argsort(-(unit @ (q[:4] / np.linalg.norm(q[:4]))), kind="stable")
        position = {doc: r + 1 for r, doc in enumerate(order)}
        expected = [position[d] if position[d] <= 50 else 51 for d in exact_ids[i]]
        assert ranks[i].tolist() == expected
    # recall of a shortlist of S is the share of ranks within S; the shortest shortlist keeping a recall
    assert recall_at(ranks, 50) == float((ranks <= 50).mean())
    kept = recall_at(ranks, 20)
    shortest = needed(ranks, kept, 50, 10)
    assert shortest is not None and shortest <= 20 and recall_at(ranks, shortest) >= kept
    assert needed(ranks, 1.0, 50, 10) is None or recall_at(ranks, 50) == 1.0  # beyond the longest searched: None


def test_a_power_law_is_fitted_and_one_size_scales_in_proportion():
    measured = Growth(200, [1000, 3000, 10000], [0.9, 0.8, 0.7], [200, 600, 2000], 2000)
    assert measured.exponent == pytest.approx(1.0, abs=1e-3)
    assert measured.at(1_000_000) == pytest.approx(200_000, rel=1e-3)
    # measured at 1,000 documents only (no unlabelled text to grow with): in proportion, 1,000 → 1,000,000
    alone = Growth(200, [1000], [0.93], [180], 2000)
    assert alone.exponent is None and alone.at(1_000_000) == 200_000 and alone.at(500) <= 500
    assert Growth.from_json(json.loads(json.dumps(measured.to_json()))) == measured
    assert ladder(1000, [3000, 10000], 5400) == [1000, 3000, 5400]  # as far as the data goes
    assert ladder(1000, [3000, 10000], 20000) == [1000, 3000, 10000] and ladder(1000, [500], 800) == [1000]


def test_unseen_documents_hold_no_text_any_split_or_training_holds():
    train = rows_to_dataset([{"anchor": "q one", "positive": "Doc One"}], "pairs")
    bundle = DataBundle(train, IRSet({"q": "query two"}, {"d": "doc two"}, {"q": {"d"}}), "pairs",
                        validation=IRSet({"v": "query three"}, {"w": "doc three"}, {"v": {"w"}}),
                        unlabelled=["doc  one", "DOC TWO", "doc three", "fresh text", "Fresh  Text", "other"])
    assert bundle.unseen_documents() == ["fresh text", "other"]
    assert bundle.unseen_documents(1) == ["fresh text"]
    taken = {normalise_text(t) for t in ("doc one", "doc two", "doc three")}
    assert not taken & {normalise_text(t) for t in bundle.unseen_documents()}


def test_the_debian_source_offers_its_later_paragraphs_unlabelled(tmp_path):
    from mrl_plugins.builtin.debian import DebianSource, read_catalogue
    from mrl_plugins.data.types import DataRequest
    path = Path(__file__).resolve().parents[1] / "data" / "debian-sample-Translation-en.xz"
    source = DebianSource(DebianSource.Params(path=str(path), train_pairs=500, eval_queries=50, corpus_size=200))
    bundle = source.load(DataRequest("pairs", seed=0))
    later = {t for pkg in read_catalogue(path) for t in pkg.paragraphs[1:] if len(t) >= 40}
    assert bundle.unlabelled and set(bundle.unlabelled) <= later
    firsts = {normalise_text(t) for t in bundle.eval.corpus.values()} | set(map(normalise_text, bundle.training_texts()))
    assert not firsts & {normalise_text(t) for t in bundle.unseen_documents()}


def test_a_run_grows_its_validation_corpus_and_scales_the_shortlist_to_the_declared_corpus(tiny_recipe, recipe_path,
                                                                                          tmp_path):
    tiny_recipe.set("data.max_rows", 40).set("validation", {"queries": 20, "corpus": 30})
    tiny_recipe.set("serving", {"corpus_size": 1_000_000})
    tiny_recipe.add_comparison("funnel", shortlist=[10, 20], grow_to=[45, 60, 10_000])
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert results.serving_corpus_size == 1_000_000
    funnel = results.validation["funnel(mrl, shortlist=20)"]
    growth = {int(d): Growth.from_json(g) for d, g in funnel.facts["growth"].items()}
    assert set(growth) == set(results.dims) and "growth" not in results.models["funnel(mrl, shortlist=20)"].facts
    g = growth[8]
    assert g.sizes[0] == results.data.validation_corpus and len(g.sizes) >= 2 and g.sizes == sorted(g.sizes)
    assert growth[32].recall == [1.0] * len(g.sizes)  # the full width's shortlist holds the exact top k
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## How the settings scale with the corpus" in report and "shortlist at 1,000,000 (extrapolated)" in report
    assert f"| MRL · funnel 20 | 8 | {' | '.join(f'{r:.3f}' for r in g.recall)} |" in report
    assert f"{g.at(1_000_000):,} |" in report and (tmp_path / "out" / "scaling.png").is_file()


@pytest.mark.parametrize("ratio", [3.0, 0.9])  # slower than a scan; faster, but within timing noise of it
def test_a_setting_not_clearly_faster_than_exact_search_is_never_the_one_to_serve(finished_tiny_run, tmp_path, ratio):
    import shutil

    from mrl_plugins.cli import main

    run = tmp_path / "run"
    shutil.copytree(finished_tiny_run, run)
    results = RunResults.load(run / "results.json")
    # plant the truncated exact search at the smallest width as the cheapest, keeping everything, but not faster
    small = min(results.dims)
    for columns in (results.models, results.validation):
        mrl = columns["mrl"]
        mrl.metrics[small] = dict(mrl.metrics[results.full_dim])
        mrl.costs = {d: c.model_copy(update={"ratio_single": ratio if d == small else c.ratio_single})
                     for d, c in (mrl.costs or {}).items()}
    results.validation_scores = {}
    (run / "results.json").write_text(results.to_json())
    decision = decisions.serving_decision(results)
    assert decision is not None and decision.point.dim != small
    assert [(p.column, p.dim) for p in decision.slower] == [("mrl", small)]
    assert main(["report", str(run)]) == 0
    report = " ".join((run / "report.md").read_text().split())
    assert "not clearly faster than exact search one query at a time" in report
    assert f"{ratio:.2f}× exact's time" in report


def test_when_nothing_cheaper_is_clearly_faster_exact_search_is_served_and_the_report_says_why(finished_tiny_run):
    from mrl_plugins.present.card import card_section
    from mrl_plugins.present.sections import choices

    results = RunResults.load(finished_tiny_run / "results.json")
    small = min(results.dims)
    for columns in (results.models, results.validation):  # the cheapest keeps everything at 0.9x exact's time
        mrl = columns["mrl"]
        mrl.metrics[small] = dict(mrl.metrics[results.full_dim])
        mrl.costs = {d: c.model_copy(update={"ratio_single": 0.9 if d < results.full_dim else c.ratio_single})
                     for d, c in (mrl.costs or {}).items()}
    results.validation_scores = {}
    decision = decisions.serving_decision(results)
    assert decision is not None and decision.point.is_exact(results.full_dim) and decision.slower
    line = next(x for x in choices(results).lines if x.startswith("To serve"))
    why = "no setting on the Pareto front keeps ≥ 99% of exact quality and is clearly faster than exact search " \
          "(at most 80% of its time), so exact search"
    assert why in line
    card = " ".join(card_section(results, None, "alice/x").split())  # the card says the same, and what to do at scale
    assert f"Recommended ({why};" in card and "for a larger corpus, `mrl-run index` measures the settings" in card


def test_a_setting_clearly_faster_than_exact_search_is_served(finished_tiny_run):
    results = RunResults.load(finished_tiny_run / "results.json")
    small = min(results.dims)
    for columns in (results.models, results.validation):  # the same plant, now 25% faster than exact search
        mrl = columns["mrl"]
        mrl.metrics[small] = dict(mrl.metrics[results.full_dim])
        mrl.costs = {d: c.model_copy(update={"ratio_single": 0.75 if d == small else c.ratio_single})
                     for d, c in (mrl.costs or {}).items()}
    results.validation_scores = {}
    decision = decisions.serving_decision(results)
    assert decision is not None and (decision.point.column, decision.point.dim) == ("mrl", small)
    assert all(p.ratio_single > 0.8 for p in decision.slower)
