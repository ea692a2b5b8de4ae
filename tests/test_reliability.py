"""The newer surfaces (``embed``, ``export``, ``publish --export``, ``sweep``, ``[validation]``,
``[mining]``, ``gist``) get the run path's care: each case of the fault catalogue of issue #41 is a
test here that failed before its fix (the embedded PostgreSQL and pgvector cases are in the
plugin's own tests, ``plugins/mrl-pgvector/tests``).

One kind, one fix: a writability probe of every ``-o`` before any lock or model load; one
resolver for every model a recipe names, run at ``validate``; the sweep's objective checked
against the run's planned columns at ``validate``; every reader of a recorded folder checks its
hashes; nothing left running or RUNNING after a kill.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.testkit.models import tiny_model
from mrl_plugins.testkit.recipes import TOPICS, RecipeBuilder, run_cli, run_recipe, toy_pairs, write_jsonl

UNWRITABLE = Path("/sys/mrl-test-out")  # sysfs: read-only, for root too, on every Linux


def one_message(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    rows = [{"doc": f"d{i}", "body": r["positive"]} for i, r in enumerate(toy_pairs(60))]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made unwritable for this process, root included (``chattr +i`` when root; a
    mode without write permission otherwise)."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot make a folder read-only for root here (no chattr, or a file system without it)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


# -- high: publish --export compares weights, not paths ------------------------------------------------------
@pytest.mark.slow
def test_publish_refuses_an_export_made_before_the_run_was_trained_again(tiny_recipe, recipe_path, tmp_path,
                                                                         monkeypatch):
    from mrl_plugins.export.published import read_exports

    recipe = tiny_recipe.set("publish", {"repo_id": "alice/tiny-mrl"}).set("train.max_steps", 2).write(recipe_path)
    run_recipe(recipe, "-q").assert_success()
    run = tmp_path / "out"
    assert run_cli("export", run, "-o", tmp_path / "e16", "--dim", 16)[0] == 0
    run_recipe(recipe, "-q", "--overwrite", "--set", "seed=2").assert_success()  # the same folder, other weights
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _, err = run_cli("publish", run, "--export", tmp_path / "e16")
    one_message(code, err, "whose weights have changed since (the run was trained again)", "Nothing was pushed")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    killed = tmp_path / ".e16.exporting-999999"  # what an export killed midway leaves beside -o
    killed.mkdir()
    assert run_cli("export", run, "-o", tmp_path / "e16", "--dim", 16, "--overwrite")[0] == 0
    assert not killed.exists()
    assert len(read_exports([tmp_path / "e16"], run / "model")) == 1  # an export of these weights is accepted
    graph = tmp_path / "e16" / "model.onnx"
    good = graph.read_bytes()
    graph.write_bytes(good[:-100])  # the graph cut after the export: its record's SHA-256 says so
    code, _, err = run_cli("publish", run, "--export", tmp_path / "e16")
    one_message(code, err, f"{graph} is not the file the export wrote (its SHA-256 differs")
    graph.write_bytes(good)

    record = json.loads((tmp_path / "e16" / "mrl_export.json").read_text())
    del record["weights"]  # an export made before 0.9 records none
    (tmp_path / "e16" / "mrl_export.json").write_text(json.dumps(record))
    code, _, err = run_cli("publish", run, "--export", tmp_path / "e16")
    one_message(code, err, "records no fingerprint of the weights")


# -- medium: a 100 MB training line is cut, not the machine's memory ----------------------------------------
@pytest.mark.slow
def test_a_100_mb_line_in_the_training_file_is_cut_before_tokenising(tmp_path):
    """Under an 8 GiB address-space limit: before the fix the run died at about 6 GiB, in the
    tokenizer, while it encoded the validation split (the kernel killed it at 18.9 GB without a
    limit)."""
    import resource

    model = tiny_model(tmp_path / "tiny", dim=32, words=TOPICS)
    rows = toy_pairs(300)
    rows[7]["positive"] = "audio video text " * (100_000_000 // 17)
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    data = {"name": "local", "path": "pairs.jsonl", "format": "pairs", "eval_queries": 20, "corpus_size": 60}
    RecipeBuilder.tiny(model, data, output_dir=tmp_path / "out", max_steps=2).write(tmp_path / "recipe.toml")
    limit = 8 << 30

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "mrl_plugins.cli", str(tmp_path / "recipe.toml"), "-q"],
                          preexec_fn=capped, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "longer than 16,384 characters" in done.stderr and "were cut there before tokenising" in done.stderr
    assert (tmp_path / "out" / "results.json").is_file()


# -- medium: the sweep's objective is checked at validate ---------------------------------------------------
@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"column": "mrl-typo"}, "[sweep] column: 'mrl-typo' is not a column the run will have; did you mean 'mrl'?"),
        ({"dims": [24, 8]}, "[sweep] dims: [24] are not among the widths the run trains and scores"),
        ({"dims": [16, 8], "weights": [1.0]}, "[sweep] weights: 1 weights for 2 dims"),
        ({"sampler": "grid"}, '[sweep] sampler = "grid" needs choices'),
        ({"space": {"train.learnin_rate": {"low": 1e-5, "high": 1e-3}}}, '[sweep.space] "train.learnin_rate"'),
    ],
)
def test_a_sweep_that_every_trial_would_fail_is_refused_at_validate(tiny_recipe, recipe_path, tmp_path, sweep,
                                                                    message):
    table = {"trials": 2, "sampler": "random", "output_dir": str(tmp_path / "sweep"),
             "space": {"train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}, **sweep}
    recipe = tiny_recipe.set("dims", {"name": "explicit", "values": [32, 16, 8]}).set("sweep", table)
    outcome = run_recipe(recipe.write(recipe_path), command="validate")
    one_message(outcome.code, outcome.err, message)
    outcome = run_recipe(recipe_path, "-q", command="sweep")  # and the sweep trains nothing
    one_message(outcome.code, outcome.err, message)
    assert not (tmp_path / "sweep" / "trials").exists()


# -- kind 1: nothing is opened before -o is known to be writable ---------------------------------------------
def test_every_output_flag_is_probed_before_any_lock_or_model_load(tiny_model_dir, corpus_file, tmp_path):
    for args in (("embed", tiny_model_dir, corpus_file, "-o", UNWRITABLE, "--text-column", "body"),
                 ("index", tiny_model_dir, corpus_file, "-o", UNWRITABLE, "--text-column", "body"),
                 ("export", tiny_model_dir, "-o", UNWRITABLE)):
        code, _, err = run_cli(*args)
        one_message(code, err, f"-o: '{UNWRITABLE}' cannot be written: /sys is not writable", "nothing was changed")
    assert not UNWRITABLE.exists()


def test_a_folder_that_cannot_be_written_is_refused_before_anything_is_made(tiny_model_dir, corpus_file, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        for args in (("embed", tiny_model_dir, corpus_file, "-o", locked / "emb", "--text-column", "body"),
                     ("export", tiny_model_dir, "-o", locked / "onnx")):
            code, _, err = run_cli(*args)
            one_message(code, err, f"cannot be written: {locked} is not writable")
        assert list(locked.iterdir()) == []


def test_report_in_a_run_folder_it_cannot_write_is_one_message(finished_tiny_run, tmp_path):
    run = shutil.copytree(finished_tiny_run, tmp_path / "run")
    before = (run / "report.md").read_bytes()
    with read_only(run):
        code, _, err = run_cli("report", run)
    one_message(code, err, f"{run}: cannot rewrite the report there", "copy the run folder")
    assert (run / "report.md").read_bytes() == before


def test_publish_from_a_run_folder_it_cannot_write_pushes_nothing(finished_tiny_run, tmp_path, monkeypatch):
    from mrl_plugins.publish import push

    run = shutil.copytree(finished_tiny_run, tmp_path / "run")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(push, "push", lambda *a, **k: pytest.fail("pushed"))
    with read_only(run):
        code, _, err = run_cli("publish", run)
    one_message(code, err, "cannot be written", "Nothing was pushed")


def test_a_disk_that_fills_while_embedding_is_one_message_and_resume_finishes_it(tiny_model_dir, corpus_file,
                                                                                  tmp_path, monkeypatch):
    from mrl_plugins.embed import embedder

    reference = tmp_path / "reference"
    assert run_cli("embed", tiny_model_dir, corpus_file, "-o", reference, "--text-column", "body",
                   "--shard-rows", 20)[0] == 0
    real, written = embedder.write_atomic, []

    def fills_up(path: Path, data: bytes) -> None:
        if path.name == "shard-00001.npy":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path.name)
        real(path, data)

    monkeypatch.setattr(embedder, "write_atomic", fills_up)
    out = tmp_path / "emb"
    code, _, err = run_cli("embed", tiny_model_dir, corpus_file, "-o", out, "--text-column", "body",
                           "--shard-rows", 20)
    one_message(code, err, "the disk filled up while embedding; the 1 shard(s) finished are kept",
                "with --resume")
    monkeypatch.setattr(embedder, "write_atomic", real)
    assert run_cli("embed", tiny_model_dir, corpus_file, "-o", out, "--text-column", "body", "--shard-rows", 20,
                   "--resume")[0] == 0
    for name in sorted(p.name for p in reference.glob("shard-*")):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_full_disk_in_export_or_publish_is_one_message_and_changes_nothing(tiny_model_dir, finished_tiny_run,
                                                                            tmp_path, monkeypatch):
    from mrl_plugins.export import onnx
    from mrl_plugins.outputs import destination

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "somewhere"))

    monkeypatch.setattr(onnx, "export_onnx", full)
    code, _, err = run_cli("export", tiny_model_dir, "-o", tmp_path / "onnx")
    assert code == 1 and "Traceback" not in err and "the disk filled up" in err, err
    assert not (tmp_path / "onnx").exists() and not list(tmp_path.glob(".onnx*exporting*"))

    run = shutil.copytree(finished_tiny_run, tmp_path / "run")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr(destination, "copy_to_edit", full)
    code, _, err = run_cli("publish", run, "--truncate-dim", 16)
    assert code == 1 and "Traceback" not in err and "the disk filled up" in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert not (run / ".publish-staging").exists()


def test_a_sweep_storage_that_is_not_a_database_is_one_message(tiny_recipe, recipe_path, tmp_path):
    table = {"trials": 1, "sampler": "random", "output_dir": str(tmp_path / "sweep"),
             "space": {"train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}}
    recipe = tiny_recipe.set("sweep", table).write(recipe_path)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "study.db").write_text("not a database")
    outcome = run_recipe(recipe, "-q", command="sweep")
    one_message(outcome.code, outcome.err, "Optuna cannot use it")


# -- kind 2: validate sees what the run would hit --------------------------------------------------------------
def test_every_model_a_recipe_names_is_resolved_and_checked_at_validate(tiny_recipe, recipe_path, tmp_path):
    broken = shutil.copytree(tiny_model(tmp_path / "m", dim=32, words=TOPICS), tmp_path / "broken")
    for weights in broken.rglob("*.safetensors"):
        weights.unlink()
    cases = [
        ({"loss": {"name": "gist", "guide": "no-such-guide"}}, "[loss] guide: 'no-such-guide' is not a local folder"),
        ({"loss": {"name": "gist", "guide": "broken"}}, f"[loss] guide: the model folder {broken} has no weights"),
        ({"mining": {"model": "broken"}}, f"[mining] model: the model folder {broken} has no weights"),
    ]
    for change, message in cases:
        recipe = RecipeBuilder(json.loads(json.dumps(tiny_recipe.table)))
        for key, value in change.items():
            recipe.set(key, value)
        outcome = run_recipe(recipe.write(recipe_path), command="validate")
        one_message(outcome.code, outcome.err, message)
    # a guide named relative to the recipe's folder is found there, from any working directory
    shutil.copytree(tiny_model(tmp_path / "g", dim=32, words=TOPICS), tmp_path / "guide")
    recipe = RecipeBuilder(json.loads(json.dumps(tiny_recipe.table))).set("loss", {"name": "gist", "guide": "guide"})
    with contextlib.chdir("/"):
        outcome = run_recipe(recipe.write(recipe_path), command="validate")
    assert outcome.code == 0, outcome.err


def test_too_few_validation_queries_are_refused_at_validate_naming_the_key(tiny_recipe, recipe_path):
    outcome = run_recipe(tiny_recipe.set("validation.queries", 5).write(recipe_path), command="validate")
    one_message(outcome.code, outcome.err, "[validation] queries: 5 validation queries cannot tell widths apart",
                "queries = 0 to")


def test_a_relative_output_dir_is_checked_where_the_run_will_write_it(tiny_recipe, recipe_path, tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder would be")
    recipe = tiny_recipe.set("output_dir", "runs/{name}").write(recipe_path)
    with contextlib.chdir("/"):  # checked against the recipe's folder, not the working directory
        outcome = run_recipe(recipe, command="validate")
    one_message(outcome.code, outcome.err, f"output_dir: '{blocker / 'tiny'}' cannot be written: {blocker} is a file")


# -- kind 3: damaged or odd input -------------------------------------------------------------------------------
def test_an_embeddings_folder_whose_texts_were_cut_builds_nothing(tiny_model_dir, corpus_file, tmp_path):
    emb = tmp_path / "emb"
    assert run_cli("embed", tiny_model_dir, corpus_file, "-o", emb, "--text-column", "body", "--shard-rows", 20)[0] == 0
    texts = emb / "shard-00001.jsonl"
    texts.write_bytes(texts.read_bytes()[:-40])  # cut: the header and sizes of the vectors say nothing of it
    code, _, err = run_cli("index", emb, "-o", tmp_path / "idx")
    one_message(code, err, f"{texts}: its SHA-256 is not the one manifest.json records", "nothing was built")
    assert not (tmp_path / "idx").exists() and not list(tmp_path.glob(".idx*"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: [], "not a results file (it holds an array, a results.json holds a JSON object)"),
        (lambda raw: {**raw, "models": {k: v for k, v in raw["models"].items() if k != "mrl"},
                      "tests": [{"dim": 16, "column": "base", "against": "mrl", "role": "plain MRL", "delta": 0.01,
                                 "p": 0.5}]},
         "tests[0] compares the column 'mrl', which models does not hold"),
        (lambda raw: {**raw, "schema_version": "5"}, "schema_version: '5' is not a schema number"),
    ],
)
def test_report_of_an_odd_results_file_is_one_message(finished_tiny_run, tmp_path, change, message):
    run = shutil.copytree(finished_tiny_run, tmp_path / "run")
    raw = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps(change(raw)))
    code, _, err = run_cli("report", run)
    one_message(code, err, message)


def test_report_of_results_without_the_mrl_column_renders(finished_tiny_run, tmp_path):
    run = shutil.copytree(finished_tiny_run, tmp_path / "run")
    raw = json.loads((run / "results.json").read_text())
    raw["models"].pop("mrl")
    raw["tests"] = []  # a test naming the column would be refused (above)
    (run / "results.json").write_text(json.dumps(raw))
    code, _, err = run_cli("report", run)
    assert code == 0 and "Traceback" not in err, err


def test_export_of_a_model_folder_without_weights_is_one_message(tiny_model_dir, tmp_path):
    broken = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    for weights in broken.rglob("*.safetensors"):
        weights.unlink()
    code, _, err = run_cli("export", broken, "-o", tmp_path / "onnx")
    one_message(code, err, f"the model folder {broken} has no weights")
    assert not (tmp_path / "onnx").exists()


def test_dev_zero_as_a_corpus_is_one_message(tiny_model_dir, tmp_path):
    code, _, err = run_cli("index", tiny_model_dir, "/dev/zero", "-o", tmp_path / "idx")
    one_message(code, err, "/dev/zero, line 1: over 256 MiB without a line break (all zero bytes")
    assert not (tmp_path / "idx").exists()


# -- kind 4: the message names the cause -------------------------------------------------------------------------
def test_identical_rows_say_that_every_row_has_one_query(tiny_recipe, recipe_path, tmp_path):
    write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": "audio player", "positive": "plays music files"}] * 100)
    outcome = run_recipe(tiny_recipe.set("data.eval_queries", 1).set("data.corpus_size", 0).write(recipe_path), "-q")
    one_message(outcome.code, outcome.err, "all 100 rows have the same query ('audio player')",
                "whatever [data] eval_queries is")
    assert "Lower [data] eval_queries" not in outcome.err


# -- kind 5: nothing left behind ------------------------------------------------------------------------------------
def test_a_part_with_nothing_left_exits_0(tiny_model_dir, corpus_file, tmp_path):
    out = tmp_path / "emb"
    assert run_cli("embed", tiny_model_dir, corpus_file, "-o", out, "--text-column", "body", "--shard", "0/2")[0] == 0
    assert (out / "manifest.json").is_file()  # one shard (60 rows): part 0 of 2 did the whole folder
    code, stdout, err = run_cli("embed", tiny_model_dir, corpus_file, "-o", out, "--text-column", "body", "--shard",
                                "1/2")
    assert code == 0, err
    assert "nothing left for part 1/2" in stdout
    code, _, err = run_cli("embed", tiny_model_dir, corpus_file, "-o", out, "--text-column", "body")
    one_message(code, err, "a finished embed is already there")  # run whole, it is still refused


@pytest.mark.slow
@pytest.mark.parametrize("baseline", [False, True])
def test_a_killed_sweep_trial_is_marked_failed_and_the_rerun_samples_anew(tiny_recipe, recipe_path, tmp_path,
                                                                          baseline):
    import optuna

    table = {"trials": 2, "sampler": "random", "dims": [16, 8], "output_dir": str(tmp_path / "sweep"),
             "baseline": baseline, "space": {"train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}}
    recipe = tiny_recipe.set("train.max_steps", 2).set("sweep", table).write(recipe_path)
    db = f"sqlite:///{tmp_path / 'sweep' / 'study.db'}"
    worker = subprocess.Popen([sys.executable, "-m", "mrl_plugins.cli", "sweep", str(recipe), "-q", "--set",
                               "train.max_steps=100000"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # until trial 0 is training
            if worker.poll() is not None:
                pytest.fail(f"the sweep ended before it could be killed: {worker.stderr.read()[-2000:]}")
            if (tmp_path / "sweep" / "study.db").is_file():
                with contextlib.suppress(Exception):
                    trial = optuna.load_study(study_name="tiny", storage=db).trials
                    if trial and "folder" in trial[0].user_attrs:  # set as its run starts
                        break
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    killed = optuna.load_study(study_name="tiny", storage=db).trials[0]
    assert killed.state.name == "RUNNING"  # what the kill leaves: no exit handler ran

    run_recipe(recipe, "-q", command="sweep").assert_success()
    with (tmp_path / "sweep" / "trials.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE"]
    assert "ended without finishing it (killed?)" in rows[0]["error"]
    if baseline:  # the recipe as written is run again, once, still with none of the space's values set
        assert [r["baseline"] for r in rows] == ["True", "True"] and not rows[1].get("params.train.learning_rate")
    else:
        assert rows[1]["params.train.learning_rate"] != rows[0]["params.train.learning_rate"]  # sampled anew


def test_a_seeded_sweep_samples_the_same_values_whether_interrupted_or_not(tmp_path):
    import optuna

    from mrl_plugins.sweep.study import TrialSeeded

    def sample(study_name: str, batches: list[int]) -> list[float]:
        storage = f"sqlite:///{tmp_path / 'studies.db'}"
        for n in batches:  # each batch a new process would make: a new sampler
            sampler = TrialSeeded(lambda seed: optuna.samplers.RandomSampler(seed=seed), 7)
            study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, load_if_exists=True)
            study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-3, log=True), n_trials=n)
        return [t.params["lr"] for t in study.trials]

    whole, resumed = sample("whole", [4]), sample("resumed", [2, 2])
    assert whole == resumed and len(set(whole)) == 4
    plain = optuna.samplers.RandomSampler(seed=7)  # what a process-seeded sampler does on a rerun: repeats
    first = optuna.create_study(sampler=plain)
    first.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-3, log=True), n_trials=1)
    again = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    again.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-3, log=True), n_trials=1)
    assert first.trials[0].params == again.trials[0].params


def test_the_probe_leaves_nothing_behind(tmp_path):
    from mrl_plugins.outputs.destination import cannot_write, output_problems

    assert cannot_write(tmp_path / "new" / "deeper") is None and list(tmp_path.iterdir()) == []
    assert output_problems(tmp_path / "out", "-o") == []
    (tmp_path / "file").write_text("x")
    assert output_problems(tmp_path / "file" / "out", "-o") == [
        f"-o: '{tmp_path / 'file' / 'out'}' cannot be written: {tmp_path / 'file'} is a file; nothing was changed. "
        "Choose another -o."]
    assert np.array_equal(sorted(p.name for p in tmp_path.iterdir()), ["file"])
