"""The ``mteb`` task: MTEB's own protocols at every width, equal to ``mteb``'s own run at full
width (and, for STS, at every width: cosine does not care about re-normalising), tasks defined on
local data (no Hub), a user's AbsTask subclass, a run's report and results.json, and clear errors."""

from __future__ import annotations

import textwrap

import pytest

from mrl_plugins.testkit import ModelsTaskContext, run_recipe, toy_labelled, toy_scored_pairs, write_jsonl

DIMS = [32, 16, 8]


def scored_pairs(n: int = 60) -> list[dict]:
    """The kit's similarity rows with columns of other names (mapped in the task's columns)."""
    return [{"a": r["sentence1"], "b": r["sentence2"], "score": r["score"]} for r in toy_scored_pairs(n)]


def labelled(n_per: int = 16) -> list[dict]:
    return [{"text": r["text"], "topic": r["label"]} for r in toy_labelled(n_per)]


def own_run(model, task) -> float:
    import mteb

    result = mteb.evaluate(model, task, cache=None, overwrite_strategy="always", show_progress_bar=False,
                           encode_kwargs={"batch_size": 32})
    return float(result.task_results[0].get_score())


@pytest.mark.parametrize("kind", ["STS", "Classification", "Clustering"])
def test_full_width_equals_mtebs_own_run_of_the_same_task_and_model(kind, tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from mrl_mteb import Mteb

    if kind == "STS":
        write_jsonl(tmp_path / "data.jsonl", scored_pairs())
        columns = {"sentence1": "a", "sentence2": "b"}
    else:
        write_jsonl(tmp_path / "data.jsonl", labelled())
        columns = {"label": "topic"}
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    task = Mteb(Mteb.Params(task=f"Local{kind}", type=kind, path="data.jsonl", columns=columns))
    ours = task.score(ModelsTaskContext({"mrl": model}, DIMS, tmp_path), "mrl")
    assert set(ours) == set(DIMS) and all("main_score" in ours[d] for d in DIMS)
    assert ours[32]["main_score"] == pytest.approx(own_run(model, task.new_task(tmp_path)), abs=1e-6)
    if kind == "STS":  # cosine ignores the norm: MTEB's own run of the model truncated is the same number
        assert ours[32]["cosine_spearman"] == ours[32]["main_score"]
        for d in DIMS[1:]:
            truncated = SentenceTransformer(str(tiny_model_dir), device="cpu", truncate_dim=d)
            assert ours[d]["main_score"] == pytest.approx(own_run(truncated, task.new_task(tmp_path)), abs=1e-6)
    main = {"STS": "cosine_spearman", "Classification": "accuracy", "Clustering": "v_measure"}[kind]
    assert task.label() == f"MTEB Local{kind} ({main})"


def test_each_text_is_encoded_once_per_model_for_every_width(tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    from mrl_mteb import Mteb

    write_jsonl(tmp_path / "data.jsonl", labelled())
    calls = []

    class Counting(ModelsTaskContext):
        def encode(self, model, texts, role="document", batch_size=None):
            calls.append(len(texts))
            return super().encode(model, texts, role=role, batch_size=batch_size)

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    task = Mteb(Mteb.Params(task="Topics", type="Clustering", path="data.jsonl", columns={"label": "topic"}))
    task.score(Counting({"mrl": model}, DIMS, tmp_path), "mrl")
    assert calls == [len(labelled())]  # once, for three widths


def test_a_users_abstask_subclass_runs_by_module_and_class(tiny_model_dir, tmp_path, monkeypatch):
    """An AbsTask the user wrote (here on local data, as one would for a private set) by "module:Class"."""
    from sentence_transformers import SentenceTransformer

    from mrl_mteb import Mteb

    write_jsonl(tmp_path / "pairs.jsonl", scored_pairs())
    (tmp_path / "my_tasks.py").write_text(textwrap.dedent(f'''
        import json
        from datasets import Dataset, DatasetDict
        from mteb.abstasks.sts import AbsTaskSTS
        from mteb.abstasks.task_metadata import TaskMetadata

        class MyPairs(AbsTaskSTS):
            metadata = TaskMetadata(name="MyPairs", type="STS", main_score="cosine_spearman", description="mine",
                reference=None, dataset={{"path": "local", "revision": "1"}}, category="t2t", eval_splits=["test"],
                eval_langs=["eng-Latn"], date=None, dialect=None, domains=None, task_subtypes=None, license=None,
                annotations_creators=None, modalities=["text"], sample_creation=None, bibtex_citation="")

            def load_data(self, **kwargs):
                rows = [json.loads(line) for line in open({str(tmp_path / "pairs.jsonl")!r})]
                self.dataset = DatasetDict({{"test": Dataset.from_dict({{
                    "sentence1": [r["a"] for r in rows], "sentence2": [r["b"] for r in rows],
                    "score": [r["score"] for r in rows]}})}})
                self.data_loaded = True
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    task = Mteb(Mteb.Params(task="my_tasks:MyPairs"))
    ours = task.score(ModelsTaskContext({"mrl": model}, DIMS, tmp_path), "mrl")
    import my_tasks

    assert ours[32]["main_score"] == pytest.approx(own_run(model, my_tasks.MyPairs()), abs=1e-6)
    assert task.key() == "mteb:my_tasks:MyPairs" and task.label() == "MTEB my_tasks:MyPairs (cosine_spearman)"


def test_a_run_reports_the_mteb_task_per_width_under_its_mteb_name(tiny_recipe, recipe_path, tmp_path):
    write_jsonl(tmp_path / "topics.jsonl", labelled())
    tiny_recipe.set("task", [{"name": "mteb", "task": "Topics", "type": "Classification", "path": "topics.jsonl",
                              "columns": {"label": "topic"}}])
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    found = results.tasks["mteb:Topics"]
    assert found.metric == "main_score" and found.plugin == "mrl-mteb"
    assert set(found.scores) >= {"base", "mrl"}
    assert all(0 <= found.scores[m][d]["main_score"] <= 1 for m in found.scores for d in results.dims)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## MTEB Topics (accuracy): main score per dimension" in report


@pytest.mark.parametrize("task, expect", [
    ({"task": "NoSuchMtebTaskAnywhere"}, "is not an MTEB task name"),
    ({"task": "Topics", "path": "topics.jsonl"}, "path and type go together"),
    ({"task": "Topics", "type": "Clustering", "path": "topics.jsonl"}, "needs the column 'label'"),
    ({"task": "Topics", "type": "Clustering", "path": "nowhere.jsonl"}, "nowhere.jsonl"),
    ({"task": "Topics", "type": "STS", "path": "topics.jsonl", "columns": {"text": "text"}}, "not read by an MTEB STS"),
])
def test_a_bad_mteb_task_is_one_message_at_validate(task, expect, tiny_recipe, recipe_path, tmp_path):
    write_jsonl(tmp_path / "topics.jsonl", labelled())
    tiny_recipe.set("task", [{"name": "mteb", **task}])
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    err = " ".join(outcome.err.split())
    assert outcome.code == 2 and "Traceback" not in outcome.err, outcome.err
    assert "[[task]] #1" in err and expect in err, err
