"""mrl-homedepot on small files in the Hub schema and in Kaggle's original CSV layout."""

from __future__ import annotations

import csv
import json
import random

import datasets
import pytest

from mrl_homedepot import HomeDepotSource
from mrl_plugins.data.split import find_leaks
from mrl_plugins.data.types import DataRequest
from mrl_plugins.errors import UserError
from mrl_plugins.plugins import load_registry

LEVELS = [1.0, 1.33, 1.67, 2.0, 2.33, 2.5, 2.67, 3.0]


def hub_rows(queries: int = 80, products: int = 120, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for q in range(queries):
        for pid in rng.sample(range(products), 4):
            rows.append({
                "id": len(rows), "entity_id": 100000 + pid, "name": f"Product {pid} title",
                "description": f"Description of product {pid}, a tool", "query": f"search {q}",
                "relevance": rng.choice(LEVELS),
            })
    return rows


@pytest.fixture(params=["parquet", "jsonl"])
def hub_file(request, tmp_path):
    """The Hub schema as parquet and as JSONL, both read through the same datasets code path."""
    rows = hub_rows()
    rows.append({**rows[0], "id": 9998, "relevance": None})  # missing: skipped and counted
    rows.append({**rows[1], "id": 9999, "relevance": 3.5})  # outside 1-3: skipped and counted
    path = tmp_path / f"home_depot.{request.param}"
    if request.param == "parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def load(tmp_path, fmt="pairs", **params):
    if "data_files" not in params:
        params["data_files"] = next(p.name for p in tmp_path.glob("home_depot.*"))
    return HomeDepotSource(HomeDepotSource.Params(**params)).load(DataRequest(fmt, seed=0, recipe_dir=tmp_path))


def test_split_by_query_and_product_without_leakage(hub_file, tmp_path):
    bundle = load(tmp_path, sample_size=None)
    s = bundle.summary
    assert s["skipped_bad_relevance"] == 2 and s["rows"] == 322
    train_texts = set(bundle.train["anchor"]) | set(bundle.train["positive"])
    assert find_leaks(train_texts, bundle.eval) == (0, 0)
    assert not train_texts & set(bundle.eval.corpus.values())  # no test product, relevant or not
    assert not train_texts & set(bundle.eval.queries.values())
    assert s["test_queries"] == 16  # 20% of 80


def test_threshold_is_strict(tmp_path):
    rows = [
        {"id": i, "entity_id": i, "name": f"p{i}", "description": f"product {i}", "query": f"q{i // 2}",
         "relevance": 2.5 if i % 2 else 3.0}
        for i in range(200)
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "home_depot.parquet"))
    bundle = load(tmp_path, sample_size=None)
    rel = {f"product {r['entity_id']}": r["relevance"] for r in rows}
    assert {rel[t] for t in bundle.train["positive"]} == {3.0}  # 2.5 is not a positive
    relevant_texts = bundle.eval.relevant_texts()
    assert relevant_texts and {rel[t] for t in relevant_texts} == {3.0}
    assert len(bundle.eval.corpus) == 2 * len(bundle.eval.queries)  # the 2.5 products stay as distractors


def test_cosent_pairs_are_scaled_to_unit_interval(hub_file, tmp_path):
    bundle = load(tmp_path, fmt="scored-pairs", sample_size=None)
    assert bundle.train.column_names == ["sentence1", "sentence2", "score"]
    assert set(bundle.train["score"]) <= {round((lv - 1) / 2, 10) for lv in LEVELS} | {(lv - 1) / 2 for lv in LEVELS}
    assert min(bundle.train["score"]) == 0.0 and max(bundle.train["score"]) == 1.0


def test_sample_size_larger_than_data_is_a_stated_clamp(hub_file, tmp_path, caplog):
    bundle = load(tmp_path, sample_size=100_000)
    assert bundle.summary["sampled"] == 320
    assert "larger than the 320 usable rows" in caplog.text


def test_sampling_is_seeded(hub_file, tmp_path):
    a, b = load(tmp_path, sample_size=200), load(tmp_path, sample_size=200)
    assert a.train["anchor"] == b.train["anchor"] and a.eval.queries == b.eval.queries


def test_missing_column_names_existing_ones(tmp_path):
    datasets.Dataset.from_list([{"search": "a", "entity_id": 1, "relevance": 3.0, "description": "d"}]).to_parquet(
        str(tmp_path / "home_depot.parquet")
    )
    with pytest.raises(UserError,
                       match=r"missing column 'query'; it has 'search', 'entity_id', 'relevance', 'description'"):
        load(tmp_path)


def test_empty_evaluation_set_is_an_error(tmp_path):
    rows = [{"id": i, "entity_id": i, "name": "n", "description": f"d{i}", "query": f"q{i}",
             "relevance": 1.0} for i in range(50)]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "home_depot.parquet"))
    with pytest.raises(UserError, match="evaluation set is empty"):
        load(tmp_path, sample_size=None)


def test_kaggle_layout_latin1(tmp_path):
    kaggle = tmp_path / "kaggle"
    kaggle.mkdir()
    rows = hub_rows(40, 60)
    with open(kaggle / "train.csv", "w", encoding="latin-1", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "product_uid", "product_title", "search_term", "relevance"])
        for r in rows:
            w.writerow([r["id"], r["entity_id"], f"Crème {r['name']}", r["query"], r["relevance"]])
    with open(kaggle / "product_descriptions.csv", "w", encoding="latin-1", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["product_uid", "product_description"])
        for pid in sorted({r["entity_id"] for r in rows}):
            w.writerow([pid, f"Brûleur {pid} in façade grey"])
    bundle = HomeDepotSource(HomeDepotSource.Params(kaggle_dir="kaggle", product_text="both", sample_size=None)).load(
        DataRequest("pairs", seed=0, recipe_dir=tmp_path)
    )
    text = next(iter(bundle.eval.corpus.values()))
    assert text.startswith("Crème Product") and "Brûleur" in text and "façade" in text


def test_registers_through_its_entry_point():
    registry = load_registry()
    assert registry.get("data", "homedepot") is HomeDepotSource
    assert registry.owner("data", "homedepot") == "mrl-homedepot"


def test_keeps_the_data_source_contract(hub_file, tmp_path):
    """mrl-plugins' conformance checks (pairs and scored pairs, no leak, seeded, a publishable summary)."""
    from mrl_plugins.testkit.conformance import assert_data_source_conforms

    assert_data_source_conforms(HomeDepotSource(HomeDepotSource.Params(data_files=hub_file.name)), recipe_dir=tmp_path)
    assert HomeDepotSource(HomeDepotSource.Params()).card_metadata() == {"datasets": ["bstds/home_depot"]}


# -- the homedepot-similarity task ------------------------------------------------------------

def test_similarity_task_scores_the_held_out_pairs_as_the_evaluator_does(hub_file, tmp_path, tiny_model_dir):
    """Every held-out pair (a test query with each product it was judged against), none sharing a
    query or product with training; Spearman against relevance equals sentence-transformers'
    EmbeddingSimilarityEvaluator(truncate_dim=d) on those pairs at every width."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    from mrl_homedepot import HomeDepotSimilarity
    from mrl_plugins.testkit import ModelsTaskContext

    bundle = load(tmp_path, "scored-pairs", sample_size=None)
    searched = set(bundle.eval.queries.values())  # the test queries with a positive
    raw = [json.loads(line) for line in hub_file.read_text().splitlines()] if hub_file.suffix == ".jsonl" else \
        datasets.Dataset.from_parquet(str(hub_file)).to_list()
    expected = sorted((r["query"], r["description"], r["relevance"]) for r in raw
                      if r["query"] in searched and r["relevance"] is not None and 1 <= r["relevance"] <= 3)
    task = HomeDepotSimilarity(HomeDepotSimilarity.Params(data_files=hub_file.name, sample_size=None, max_pairs=None))
    ctx = ModelsTaskContext({"mrl": SentenceTransformer(str(tiny_model_dir), device="cpu")}, [32, 16, 8], tmp_path,
                            seed=0)
    pairs = task.pairs(ctx)
    got = sorted((p["query"], p["text"], p["relevance"]) for p in pairs)
    assert [g for g in got if g[0] in searched] == expected  # every graded pair of every searched query
    assert len({p["query"] for p in pairs}) == bundle.summary["test_queries"]  # and of those without a positive
    assert not {p["query"] for p in pairs} & set(bundle.train["sentence1"])
    assert not {p["text"] for p in pairs} & set(bundle.train["sentence2"])
    ours = task.score(ctx, "mrl")
    for d in (32, 16, 8):
        evaluator = EmbeddingSimilarityEvaluator([p["query"] for p in pairs], [p["text"] for p in pairs],
                                                 [p["relevance"] for p in pairs], truncate_dim=d, name="hd")
        assert ours[d]["spearman"] == pytest.approx(evaluator(ctx.models["mrl"])["hd_spearman_cosine"], abs=1e-6)
        assert len(ours.replicates[d]) == ctx.resample_count


def test_similarity_task_samples_at_most_max_pairs_seeded(hub_file, tmp_path):
    from mrl_homedepot import HomeDepotSimilarity
    from mrl_plugins.testkit import ModelsTaskContext

    task = HomeDepotSimilarity(HomeDepotSimilarity.Params(data_files=hub_file.name, sample_size=None, max_pairs=20))
    ctx = ModelsTaskContext({}, [32], tmp_path, seed=0)
    first, again = task.pairs(ctx), task.pairs(ctx)
    assert len(first) == 20 and first == again


def test_a_run_reports_home_depot_relevance_as_a_task(hub_file, tiny_recipe, recipe_path, tmp_path):
    from mrl_plugins.testkit import run_recipe

    tiny_recipe.set("task", [{"name": "homedepot-similarity", "data_files": hub_file.name, "sample_size": 300}])
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    found = results.tasks["homedepot-similarity"]
    assert found.metric == "spearman" and found.plugin == "mrl-homedepot" and set(found.versus_base) == {"mrl"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Home Depot relevance: Spearman per dimension" in report


def test_a_similarity_task_without_its_file_fails_at_validate(tiny_recipe, recipe_path, tmp_path):
    from mrl_plugins.testkit import run_recipe

    tiny_recipe.set("task", [{"name": "homedepot-similarity", "kaggle_dir": "nowhere"}])
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and "Traceback" not in outcome.err
    assert "[[task]] #1" in outcome.err and "kaggle_dir: 'nowhere' has no train.csv" in outcome.err
