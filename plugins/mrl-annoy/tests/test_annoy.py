"""The Annoy backend: the contract (test kit), its answers against exact search on real Debian
descriptions, the file it maps, and its place in `mrl-run index/search`, a run's `funnel`
comparison (report, Pareto front, card) and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.evaluation.encode import normalise
from mrl_plugins.plugins import load_registry
from mrl_plugins.search import funnel_index
from mrl_plugins.testkit.recipes import run_cli, run_recipe, toy_pairs, write_jsonl

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "debian-sample-Translation-en.xz"


def annoy(**params):
    return load_registry().build("index", "annoy", params)


def exact_top(queries, corpus, k=10):
    return np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def real():
    """600 Debian package descriptions and 60 of their synopses, embedded by the packaged
    all-MiniLM-L6-v2 (the pgvector tests' set)."""
    from mrl_plugins.builtin.debian import read_catalogue, usable_packages
    from mrl_plugins.evaluation.encode import encode_texts
    from mrl_plugins.models import load_model, resolve_model

    packages = usable_packages(read_catalogue(SAMPLE), 80)[:600]
    model = load_model(resolve_model("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
    docs = encode_texts(model, [p.document for p in packages], role="document")
    queries = encode_texts(model, [p.synopsis for p in packages[::10]], role="query")
    return normalise(queries), normalise(docs)


def test_the_backend_keeps_the_index_backend_contract(tmp_path):
    from mrl_plugins.testkit.conformance import assert_index_backend_conforms

    assert_index_backend_conforms("annoy", folder=tmp_path)
    assert_index_backend_conforms("annoy", {"n_trees": 3, "search_k": 50, "seed": 7}, dim=48)


def test_mrl_run_plugins_lists_the_backend():
    code, out, err = run_cli("plugins", "-v")
    assert code == 0, err
    assert "annoy" in out and "n_trees" in out and "search_k" in out


def test_scores_are_the_cosines_and_inspecting_every_node_is_exact(real):
    queries, docs = real
    index = annoy(n_trees=5, search_k=10**7).create(96)
    index.add(normalise(docs[:, :96]))
    scores, ids = index.search(normalise(queries[:, :96]), 10)
    np.testing.assert_array_equal(ids, exact_top(normalise(queries[:, :96]), normalise(docs[:, :96])))
    cosine = np.take_along_axis(normalise(queries[:, :96]) @ normalise(docs[:, :96]).T, ids, axis=1)
    np.testing.assert_allclose(scores, cosine, atol=1e-5)


def test_the_funnel_over_annoy_finds_the_exact_top_10_with_a_long_shortlist(real):
    """Annoy's default search_k grows with the shortlist (n_trees × k): a shortlist of 300 of 600
    at 96 dims, reranked at 384, returns the exact full-width top 10 for nearly every query."""
    queries, docs = real
    funnel = funnel_index(annoy(), 384, 96)
    funnel.add(docs, [str(i) for i in range(len(docs))])
    hits = funnel.search(queries, 10, shortlist=300)
    exact = exact_top(queries, docs)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits.ids.tolist(), exact.tolist())])
    assert recall >= 0.97, recall
    short = funnel.search(queries, 10, shortlist=10)  # fewer nodes inspected: no better than the long shortlist
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(short.ids.tolist(), exact.tolist())]) <= recall
    funnel.close()


def test_the_saved_index_is_the_file_annoy_maps_and_is_read_only(real, tmp_path):
    queries, docs = real
    backend = annoy(n_trees=4)
    index = backend.create(48)
    index.add(normalise(docs[:300, :48]))
    before = index.search(normalise(queries[:, :48]), 10)
    index.add(normalise(docs[300:, :48]))  # built in memory, not saved: unbuilt and rebuilt with the rest
    assert len(index) == 600
    path = tmp_path / "shortlist.index"
    index.save(path)
    size = path.stat().st_size
    assert size % (12 + 4 * 48) == 0 and index.bytes_per_vector() == size / 600  # the mapped file is the cost
    assert index.bytes_per_vector() >= 12 + 4 * 48  # at least one node per vector, split nodes besides
    with pytest.raises(RuntimeError, match="read-only"):
        index.add(normalise(docs[:1, :48]))
    loaded = backend.load(path, 48)
    after = loaded.search(normalise(queries[:, :48]), 10)
    np.testing.assert_array_equal(after[1], index.search(normalise(queries[:, :48]), 10)[1])
    assert len(loaded) == 600 and not np.array_equal(before[1], after[1])  # the second half is searched too
    with pytest.raises(ValueError, match="not an angular Annoy index of 64 dimensions"):
        backend.load(path, 64)


def test_an_empty_index_answers_with_padding():
    index = annoy().create(16)
    scores, ids = index.search(normalise(np.ones((2, 16), np.float32)), 5)
    assert (ids == -1).all() and scores.shape == (2, 5) and len(index) == 0


def test_index_and_search_from_the_command_line(tiny_model_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["positive"]} for r in toy_pairs(80)])
    out = tmp_path / "idx"
    code, stdout, err = run_cli("index", tiny_model_dir, corpus, "-o", out, "--dim", 16, "--index", "annoy",
                                "--index-param", "n_trees=8")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["index"]["name"] == "annoy" and manifest["index"]["params"]["n_trees"] == 8
    assert manifest["index"]["provided_by"]["distribution"] == "mrl-annoy"
    assert (out / "shortlist.index").stat().st_size % (12 + 4 * 16) == 0
    query = toy_pairs(80)[5]["positive"]
    code, stdout, err = run_cli("search", out, query, "-k", 3)
    assert code == 0, err
    assert query in stdout.splitlines()[1]  # the document itself first
    code, _, err = run_cli("index", tiny_model_dir, corpus, "-o", tmp_path / "bad", "--dim", 16, "--index", "annoy",
                           "--index-param", "n_trees=0")
    assert code == 2 and "n_trees" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_recipe_with_an_annoy_funnel_reports_it_on_or_off_the_front(tiny_recipe, recipe_path, tmp_path):
    tiny_recipe.set("data.eval_queries", 30).set("data.corpus_size", 100)
    tiny_recipe.add_comparison("funnel", shortlist=[40], baselines=False)
    tiny_recipe.add_comparison("funnel", index="annoy", shortlist=[10, 40], baselines=False)
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    keys = [k for k in results.models if "annoy" in k]
    assert keys == ["funnel(mrl, baselines=false, index=annoy, shortlist=10)",
                    "funnel(mrl, baselines=false, index=annoy, shortlist=40)"], list(results.models)
    column = results.models["funnel(mrl, baselines=false, index=annoy, shortlist=40)"]
    assert column.metrics[32]["mrr@10"] == pytest.approx(results.value("mrl", 32), abs=1e-9)  # full width: exact
    assert column.costs[8].index_bytes >= 12 + 4 * 8 and column.costs[8].rerank_bytes == 32 * 4
    from mrl_plugins.evidence.decisions import pareto_front

    on_front = {(p.column, p.dim) for p in pareto_front(results)}
    lines = (tmp_path / "out" / "report.md").read_text().splitlines()
    for key, label in ((keys[0], "10"), (keys[1], "40")):
        for dim in (8, 16, 32):  # each width in the costs table, marked ◆ exactly when it is on the front
            row = next(line for line in lines if line.startswith(f"| MRL · funnel (annoy) {label} | {dim} |"))
            assert row.rstrip().endswith("◆ |") == ((key, dim) in on_front), row


def test_the_demo_serves_an_annoy_index_built_from_the_run(finished_tiny_run, tmp_path):
    from mrl_plugins.present.demo import DemoData, SideBySide

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["positive"]} for r in toy_pairs(30)])
    code, _, err = run_cli("index", finished_tiny_run, corpus, "-o", tmp_path / "an", "--dim", 8, "--index", "annoy")
    assert code == 0, err
    data = DemoData.from_run(finished_tiny_run, tmp_path / "an")
    view = SideBySide(data).search("mrl", toy_pairs(30)[3]["positive"], 8, "annoy", 20)
    assert view.full[0].text == toy_pairs(30)[3]["positive"]


def test_the_cards_index_command_builds_the_annoy_index_the_run_measured(tiny_model_dir, tmp_path):
    """The card tells users `mrl-run index RUN CORPUS -o INDEX --dim D{flags}`: with a backend's
    parameters those flags build the index the run measured, parameters included."""
    import shlex

    from mrl_plugins.components import SearchSetting
    from mrl_plugins.present.card import index_flags

    flags = index_flags(SearchSetting(16, "annoy", {"n_trees": 7, "prefault": True}, 40))
    assert flags == " --index annoy --index-param n_trees=7 --index-param prefault=true"
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["positive"]} for r in toy_pairs(40)])
    code, _, err = run_cli("index", tiny_model_dir, corpus, "-o", tmp_path / "idx", "--dim", 16, *shlex.split(flags))
    assert code == 0, err
    params = json.loads((tmp_path / "idx" / "manifest.json").read_text())["index"]["params"]
    assert params["n_trees"] == 7 and params["prefault"] is True
