"""Evaluation tasks beyond retrieval: similarity, classification, clustering per width (issue #39)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.builtin.tasks import Classification, Clustering, Similarity
from mrl_plugins.evaluation import tasks as protocols
from mrl_plugins.testkit import ModelsTaskContext, run_recipe, toy_labelled, toy_scored_pairs, write_jsonl

SECTIONS = Path(__file__).resolve().parents[1] / "data" / "debian-sections.jsonl.xz"


def scored_pairs(n: int = 80, seed: int = 0) -> list[dict]:
    return toy_scored_pairs(n, seed)


def labelled(n_per: int = 12, seed: int = 0) -> list[dict]:
    return toy_labelled(n_per, seed)


def test_similarity_equals_sentence_transformers_evaluator_at_every_width(tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    rows = scored_pairs()
    write_jsonl(tmp_path / "sts.jsonl", rows)
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    dims = [32, 16, 8]
    task = Similarity(Similarity.Params(path="sts.jsonl"))
    ours = task.score(ModelsTaskContext({"mrl": model}, dims, tmp_path), "mrl")
    for d in dims:
        evaluator = EmbeddingSimilarityEvaluator([r["sentence1"] for r in rows], [r["sentence2"] for r in rows],
                                                 [r["score"] for r in rows], truncate_dim=d, name="sts")
        theirs = evaluator(model)
        assert ours[d]["spearman"] == pytest.approx(theirs["sts_spearman_cosine"], abs=1e-6)
        assert ours[d]["pearson"] == pytest.approx(theirs["sts_pearson_cosine"], abs=1e-6)


def test_classification_follows_the_undersampled_logistic_regression_protocol():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    labels = [f"c{i % 3}" for i in range(60)]
    centres = rng.normal(size=(3, 16))
    x = np.stack([centres[int(y[1])] + 0.5 * rng.normal(size=16) for y in labels]).astype(np.float32)
    train, test = x[:30], x[30:]
    picked = protocols.undersample(labels[:30], 4, np.random.RandomState(7))
    assert all(sum(labels[i] == c for i in picked) == 4 for c in ("c0", "c1", "c2"))
    got = protocols.classification(train, labels[:30], test, labels[30:], [16, 8], n_experiments=1,
                                   samples_per_label=4, seed=7)
    # one experiment by hand: the same undersampled rows, the same classifier, on the re-normalised prefix
    idx = protocols.undersample(labels[:30], 4, np.random.RandomState(7))
    unit = lambda a, d: a[:, :d] / np.linalg.norm(a[:, :d], axis=1, keepdims=True)  # noqa: E731
    for d in (16, 8):
        clf = LogisticRegression(random_state=7, max_iter=100).fit(unit(train, d)[idx], np.asarray(labels[:30])[idx])
        assert got[d]["accuracy"] == pytest.approx(float((clf.predict(unit(test, d)) == np.asarray(labels[30:])).mean()))
    again = protocols.classification(train, labels[:30], test, labels[30:], [16, 8], n_experiments=3, seed=7)
    assert again == protocols.classification(train, labels[:30], test, labels[30:], [16, 8], n_experiments=3, seed=7)
    assert again[16]["accuracy"] > 0.9  # well-separated classes


def test_clustering_scores_v_measure_per_width_and_separable_groups_score_high():
    rng = np.random.default_rng(1)
    labels = [f"c{i % 4}" for i in range(80)]
    centres = rng.normal(size=(4, 12)) * 4
    x = np.stack([centres[int(y[1])] + rng.normal(size=12) for y in labels]).astype(np.float32)
    got = protocols.clustering(x, labels, [12, 6], runs=3, seed=0)
    assert set(got) == {12, 6} and got[12]["v_measure"] > 0.8
    assert got == protocols.clustering(x, labels, [12, 6], runs=3, seed=0)
    shuffled = protocols.clustering(rng.normal(size=(80, 12)).astype(np.float32), labels, [12], runs=3)
    assert shuffled[12]["v_measure"] < 0.3  # noise has no clusters to find


def test_a_run_scores_every_task_for_every_model_and_reports_them(tiny_recipe, recipe_path, tmp_path):
    write_jsonl(tmp_path / "sts.jsonl", scored_pairs())
    write_jsonl(tmp_path / "topics.jsonl", labelled())
    tiny_recipe.set("task", [{"name": "similarity", "path": "sts.jsonl"},
                             {"name": "classification", "path": "topics.jsonl", "n_experiments": 3},
                             {"name": "clustering", "path": "topics.jsonl", "runs": 3}])
    outcome = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success()
    results = outcome.results
    assert list(results.tasks) == ["similarity", "classification", "clustering"]
    for task in results.tasks.values():
        assert set(task.scores) == {"base", "mrl"} and all(set(s) == set(results.dims) for s in task.scores.values())
    assert results.tasks["classification"].metric == "accuracy" and results.tasks["clustering"].metric == "v_measure"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Semantic similarity (sts.jsonl): Spearman per dimension" in report
    assert "## Classification (topics.jsonl): accuracy per dimension" in report and "V-measure per dimension" in report
    found = results.tasks["similarity"]
    sim, (low, high) = found.scores["mrl"], found.intervals["mrl"][16]
    assert low <= sim[16]["spearman"] <= high and high - low > 0.01  # 80 pairs: an interval, not a point
    delta = found.versus_base["mrl"][16]
    assert delta.delta == pytest.approx(sim[16]["spearman"] - found.scores["base"][16]["spearman"], abs=1e-6)
    cell = (f"{sim[16]['spearman']:.4f} [{low:.3f}, {high:.3f}] ({sim[16]['spearman'] / sim[32]['spearman']:.1%}) "
            f"{delta.delta:+.3f} {'*' if delta.p < 0.05 else '≈'}")
    assert "| 16 | " in report and cell in report, cell
    assert "| dim | base | MRL vs base |" in report
    assert "![each task's main metric per width](tasks.png)" in report
    from PIL import Image

    with Image.open(tmp_path / "out" / "tasks.png") as image:  # one panel per task: wider than tall
        assert image.size[0] > 2 * image.size[1]
    for task in results.tasks.values():  # every built-in gives intervals, retention intervals and paired tests
        assert set(task.intervals) == {"base", "mrl"} and set(task.kept["mrl"]) == set(results.dims)
        assert set(task.versus_base) == {"mrl"}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["tasks"]["similarity"]["params"]["path"] == "sts.jsonl" and saved["schema_version"] == 6
    from mrl_plugins.evidence.results import RunResults

    older = {k: v for k, v in saved.items() if k != "tasks"} | {"schema_version": 5}  # before tasks: loads, none
    assert RunResults.from_json_dict(older).tasks == {} and RunResults.from_json_dict(older).models.keys() == \
        results.models.keys()
    card = (tmp_path / "out" / "model" / "README.md").read_text()
    assert "Beyond retrieval, each on its own data" in card
    from huggingface_hub import ModelCard

    entry = {t["task"]: t for t in ModelCard(card).data["mrl_tasks"]}["similarity"]  # front matter per task
    assert entry["metric"] == "spearman" and entry["scores"]["32"] == round(sim[32]["spearman"], 4)
    assert entry["keeps"] == {"99%": found.smallest_keeping("mrl", 0.99), "95%": found.smallest_keeping("mrl", 0.95)}
    assert f"| Semantic similarity (sts.jsonl) | Spearman | {sim[32]['spearman']:.4f} (100.0%) |" in card


def test_replicates_are_the_metric_recomputed_on_each_resample():
    """The fast per-resample statistics equal SciPy's and scikit-learn's on the resampled items;
    the identity resample gives the task's own value."""
    from scipy.stats import spearmanr
    from sklearn.metrics import v_measure_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 300).astype(str)
    clusters = rng.integers(0, 7, 300)
    clusters[:100] = labels[:100].astype(int)
    idx = rng.integers(0, 300, (40, 300))
    got = protocols.v_measure_rows(protocols.resample_counts(idx, 300), labels, clusters)
    assert got == pytest.approx([v_measure_score(labels[i], clusters[i]) for i in idx], abs=1e-12)
    assert protocols.v_measure_rows(np.ones((1, 300)), labels, clusters)[0] == pytest.approx(
        v_measure_score(labels, clusters), abs=1e-12)
    x = rng.normal(size=300)
    gold, y = np.round(x), x + rng.normal(size=300)
    assert protocols.spearman_rows(gold[idx], y[idx]) == pytest.approx([spearmanr(gold[i], y[i])[0] for i in idx],
                                                                       abs=1e-12)
    ctx = ModelsTaskContext({}, [8], Path("."))
    a, b = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    scored = protocols.similarity(a, b, rng.normal(size=60), [8, 4], resamples=ctx.resamples(60))
    assert set(scored.replicates) == {8, 4} and len(scored.replicates[8]) == ctx.resample_count
    assert np.array_equal(ctx.resamples(60), ModelsTaskContext({}, [8], Path(".")).resamples(60))  # paired


def test_classification_replicates_average_to_the_accuracy():
    rows = labelled(n_per=20)
    rng = np.random.default_rng(1)
    centres = {f"group {g}": rng.normal(size=16) for g in range(3)}
    x = np.stack([centres[r["label"]] + rng.normal(scale=1.5, size=16) for r in rows])
    train = [i for i, r in enumerate(rows) if r["split"] == "train"]
    test = [i for i, r in enumerate(rows) if r["split"] == "test"]
    labels = [r["label"] for r in rows]
    identity = np.arange(len(test))[None, :]
    got = protocols.classification(x[train], [labels[i] for i in train], x[test], [labels[i] for i in test], [16, 4],
                                   n_experiments=4, resamples=identity)
    for d in (16, 4):
        assert got.replicates[d][0] == pytest.approx(got[d]["accuracy"], abs=1e-12)


def test_a_task_file_that_is_missing_or_lacks_a_column_is_one_message(tiny_recipe, recipe_path, tmp_path):
    write_jsonl(tmp_path / "topics.jsonl", [{"text": "alpha", "group": "a"}])
    tiny_recipe.set("task", [{"name": "similarity", "path": "nowhere.jsonl"},
                             {"name": "clustering", "path": "topics.jsonl"}])
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and "Traceback" not in outcome.err
    err = " ".join(outcome.err.split())
    assert "[[task]] #1 path" in err and "nowhere.jsonl" in err
    assert "[[task]] #2" in err and "'label'" in err


def test_a_third_party_task_reaches_the_report(tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "length_task.py").write_text('''
from mrl_plugins import hookimpl
from mrl_plugins.components import Params, Task


class Norms(Task[Params]):
    """How long the truncated vectors are before re-normalising (a made-up task)."""

    name = "norms"
    title = "Prefix norms"
    metric = "mean_norm"

    def score(self, ctx, model):
        import numpy as np

        x = ctx.encode(model, ["alpha beta", "gamma delta"])
        return {d: {"mean_norm": float(np.linalg.norm(x[:, :d], axis=1).mean())} for d in ctx.dims}


@hookimpl
def register_tasks(register):
    register(Norms)
''')
    tiny_recipe.set("plugins", ["length_task.py"]).set("task", [{"name": "norms"}])
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert results.tasks["norms"].plugin == "length_task.py"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Prefix norms: mean_norm per dimension" in report and "(plugin 'length_task.py')" in report


@pytest.mark.slow
def test_the_debian_sections_set_separates_sections_with_minilm():
    """The committed set on the packaged all-MiniLM-L6-v2: a real check that the protocols see the
    sections (well above chance, 10%) and lose some of it at small widths."""
    from mrl_plugins.models import load_model, resolve_model

    model = load_model(resolve_model("sentence-transformers/all-MiniLM-L6-v2", Path(".")), device="cpu")
    ctx = ModelsTaskContext({"base": model}, [384, 48], SECTIONS.parent)
    got = Classification(Classification.Params(path=SECTIONS.name, text_column="text",
                                               label_column="section")).score(ctx, "base")
    assert got[384]["accuracy"] > 0.4 and got[48]["accuracy"] > 0.2
    clusters = Clustering(Clustering.Params(path=SECTIONS.name, label_column="section", runs=2)).score(ctx, "base")
    assert clusters[384]["v_measure"] > 0.2


REPLICATING = '''
from mrl_plugins import hookimpl
from mrl_plugins.components import Params, Task, TaskScores


class Offset(Task[Params]):
    """A made-up task whose trained models score OFFSET above the base on every resample."""

    name = "offset"
    metric = "score"

    def score(self, ctx, model):
        import numpy as np

        n = 50
        idx = ctx.resamples(n)
        item = np.linspace(0, 1, n) + (0 if model == "base" else OFFSET)
        return TaskScores({d: {"score": float(item.mean())} for d in ctx.dims},
                          {d: item[idx].mean(axis=1)[:COUNT] for d in ctx.dims})


@hookimpl
def register_tasks(register):
    register(Offset)
'''


@pytest.mark.parametrize("offset, mark", [(0.05, "*"), (0.0, "≈")])
def test_a_plugins_replicates_give_intervals_and_paired_tests(offset, mark, tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "offset_task.py").write_text(REPLICATING.replace("OFFSET", str(offset)).replace("COUNT", "None"))
    tiny_recipe.set("plugins", ["offset_task.py"]).set("task", [{"name": "offset"}])
    task = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results.tasks["offset"]
    versus = task.versus_base["mrl"][32]
    assert versus.delta == pytest.approx(offset, abs=1e-6)
    assert (versus.p < 0.05) == (mark == "*")
    low, high = task.intervals["mrl"][32]
    assert low < task.scores["mrl"][32]["score"] < high
    assert task.kept["mrl"][32] == (1.0, 1.0)
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"{offset:+.3f} {mark} |" in report


def test_replicates_of_the_wrong_length_are_one_message_naming_the_plugin(tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "offset_task.py").write_text(REPLICATING.replace("OFFSET", "0.1").replace("COUNT", "5"))
    tiny_recipe.set("plugins", ["offset_task.py"]).set("task", [{"name": "offset"}])
    outcome = run_recipe(tiny_recipe.write(recipe_path), "-q")
    err = " ".join(outcome.err.split())
    assert outcome.code != 0 and "Traceback" not in outcome.err
    assert "task 'offset' (plugin 'offset_task.py') returned 5 replicates" in err and "ctx.resamples(n)" in err, err


def test_comparison_columns_are_scored_on_every_task(tiny_recipe, recipe_path, tmp_path):
    """PCA and the adaptor transform any text's embeddings, so the tasks score their columns too;
    at full width PCA (uncentred) is a rotation, so its cosines, and its similarity, are the base
    model's own. A search setting (quantize) transforms nothing and is not a task column."""
    write_jsonl(tmp_path / "sts.jsonl", scored_pairs())
    tiny_recipe.set("task", [{"name": "similarity", "path": "sts.jsonl"}])
    tiny_recipe.add_comparison("pca", model="base").add_comparison("adaptor", epochs=2)
    tiny_recipe.add_comparison("quantize", precisions=["int8"]).add_comparison("truncate", model="mrl")
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    task = results.tasks["similarity"]
    pca, adaptor = "pca(base)", next(k for k in task.scores if k.startswith("adaptor("))
    assert set(task.scores) == {"base", "mrl", pca, adaptor, "truncate(mrl)"}
    assert task.scores["truncate(mrl)"] == task.scores["mrl"]  # the same model, as it is
    assert task.scores[pca][32]["spearman"] == pytest.approx(task.scores["base"][32]["spearman"], abs=1e-5)
    assert task.scores[pca][8]["spearman"] != pytest.approx(task.scores["base"][8]["spearman"], abs=1e-6)
    assert set(task.versus_base) == {"mrl", pca, adaptor, "truncate(mrl)"}
    report = (tmp_path / "out" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| dim | base | MRL vs base |"))
    assert results.models[pca].label + " vs base" in header and results.models[adaptor].label + " vs base" in header


def test_label_pattern_cuts_the_class_out_of_the_label_column(tmp_path):
    rows = [{"text": r["text"], "page": f"page{i}({r['label'][-1]})"} for i, r in enumerate(labelled())]
    write_jsonl(tmp_path / "pages.jsonl", rows)
    params = dict(path="pages.jsonl", label_column="page", label_pattern=r"\((\w+)\)$")
    task = Clustering(Clustering.Params(**params))
    assert sorted(set(task.read(tmp_path)["label"])) == ["0", "1", "2"]
    write_jsonl(tmp_path / "pages.jsonl", [*rows, {"text": "alpha", "page": "no section"}])
    with pytest.raises(Exception, match=r"row 37's page 'no section' does not match label_pattern"):
        Clustering(Clustering.Params(**params)).read(tmp_path)


def test_a_validation_share_chooses_widths_on_its_items_and_scores_the_rest(tiny_model_dir, tmp_path):
    """validation = 0.3: the metrics are the held-out 70% of the pairs (equal to SciPy on them), the
    validation part is scored apart, and the same items are set apart for every model."""
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    rows = scored_pairs(100)
    write_jsonl(tmp_path / "sts.jsonl", rows)
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    ctx = ModelsTaskContext({"mrl": model}, [32, 16, 8], tmp_path)
    got = Similarity(Similarity.Params(path="sts.jsonl", validation=0.3)).score(ctx, "mrl")
    mask = ctx.validation_items(100, 0.3)
    assert mask.sum() == 30 and np.array_equal(mask, ModelsTaskContext({}, [32], tmp_path).validation_items(100, 0.3))
    a = model.encode([r["sentence1"] for r in rows], batch_size=16)
    b = model.encode([r["sentence2"] for r in rows], batch_size=16)
    gold = np.array([r["score"] for r in rows])
    for d in (32, 8):
        cos = np.sum(protocols._at(a, d) * protocols._at(b, d), axis=1)
        assert got[d]["spearman"] == pytest.approx(spearmanr(gold[~mask], cos[~mask])[0], abs=1e-6)
        assert got.validation[d]["spearman"] == pytest.approx(spearmanr(gold[mask], cos[mask])[0], abs=1e-6)
        assert len(got.replicates[d]) == ctx.resample_count


def test_a_run_with_task_validation_chooses_there_and_reports_held_out(tiny_recipe, recipe_path, tmp_path):
    write_jsonl(tmp_path / "topics.jsonl", labelled(n_per=20))
    tiny_recipe.set("task", [{"name": "clustering", "path": "topics.jsonl", "runs": 2, "validation": 0.3}])
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    task = results.tasks["clustering"]
    assert set(task.validation) == {"base", "mrl"} and set(task.validation["mrl"]) == set(results.dims)
    on_validation = {d: v / task.validation["mrl"][32] for d, v in task.validation["mrl"].items()}
    assert task.smallest_keeping("mrl", 0.95) == min(d for d, kept in on_validation.items() if kept >= 0.95 - 1e-12)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "chosen on the task's validation part (0.3 of its items" in report
    from huggingface_hub import ModelCard

    card = ModelCard((tmp_path / "out" / "model" / "README.md").read_text())
    assert card.data["mrl_tasks"][0]["chosen_on"] == "validation"


def test_task_width_choices_need_a_margin_on_validation():
    """A width that keeps the share on average but within noise is passed over for the wider one."""
    from mrl_plugins.run.tasks import choices

    rng = np.random.default_rng(0)
    full = rng.normal(0.80, 0.01, 2000)
    validation = {"mrl": {32: 0.80, 16: 0.765, 8: 0.70}}  # 16 keeps 95.6% on average
    noisy = {32: full, 16: full * 0.956 + rng.normal(0, 0.03, 2000), 8: full * 0.875}
    steady = {32: full, 16: full * 0.956 + rng.normal(0, 0.001, 2000), 8: full * 0.875}
    picked = choices(validation, {"mrl": noisy}, [32, 16, 8])["mrl"]["95%"]
    assert (picked.width, picked.by_mean) == (32, 16) and picked.p is not None and picked.p >= 0.05
    picked = choices(validation, {"mrl": steady}, [32, 16, 8])["mrl"]["95%"]
    assert (picked.width, picked.by_mean, picked.p) == (16, 16, None)
    assert choices(validation, {"mrl": None}, [32, 16, 8])["mrl"]["95%"].width == 16  # no replicates: on average


def test_retrieval_as_a_task_gives_the_runs_own_scorers_numbers(tiny_model_dir, tmp_path):
    """``retrieval`` on a file of (query, document) rows: the same MRR, Recall and nDCG per width as
    the run's evaluation of the same set (evaluation.retrieval.evaluate), with replicates."""
    from sentence_transformers import SentenceTransformer

    from mrl_plugins.builtin.tasks import Retrieval
    from mrl_plugins.data.types import IRSet
    from mrl_plugins.evaluation.retrieval import evaluate
    from mrl_plugins.testkit import toy_pairs

    rows = toy_pairs(60)
    rows.append({**rows[0], "positive": "the second relevant document of the first query"})
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    task = Retrieval(Retrieval.Params(path="pairs.jsonl", query_column="anchor", document_column="positive"))
    ctx = ModelsTaskContext({"mrl": model}, [32, 16, 8], tmp_path)
    got = task.score(ctx, "mrl")
    queries, documents, relevant = task.ir(tmp_path)
    assert len(queries) == 60 and len(documents) == 61 and len(relevant[0]) == 2
    ir = IRSet({f"q{i}": q for i, q in enumerate(queries)}, {f"d{i}": d for i, d in enumerate(documents)},
               {f"q{i}": {f"d{j}" for j in rel} for i, rel in enumerate(relevant)})
    theirs = evaluate(model, ir, [32, 16, 8])
    for d in (32, 16, 8):
        assert got[d]["mrr"] == pytest.approx(theirs[d]["mrr@10"], abs=1e-9)
        assert got[d]["ndcg"] == pytest.approx(theirs[d]["ndcg@10"], abs=1e-9)
        assert len(got.replicates[d]) == ctx.resample_count
    assert task.label() == "Retrieval@10 (pairs.jsonl)"
