"""Fault injection: nothing the user has is lost, and every mistake is caught before training.

Each test puts a run (or a publish) through one fault: an interrupt while a checkpoint is
written, a failure after training, a failed final move, two runs at once, a hung endpoint, a
changed recipe on resume, a full disk, bad data files, missing models and devices.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mrl_plugins.run import staging as staging_module
from mrl_plugins.run import training
from mrl_plugins.run.staging import Staging, staging_dir
from mrl_plugins.testkit.models import tiny_model
from mrl_plugins.testkit.recipes import run_recipe, toy_pairs, write_jsonl
from tests.hub_server import FakeHub
from tests.test_compare import StopAt

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def interrupted(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    """A run stopped at step 3 of 4 with a checkpoint at every step: its recipe path."""
    recipe = tiny_recipe.set("train.max_steps", 4).set("train.checkpoint_steps", 1).write(recipe_path)
    monkeypatch.setattr(training, "trainer_callbacks", lambda: [StopAt(3)])
    assert run_recipe(recipe, "-q").code == 130
    monkeypatch.setattr(training, "trainer_callbacks", lambda: [])
    return recipe


# -- state that survives -------------------------------------------------------------------------
def test_a_checkpoint_cut_short_is_set_aside_and_the_complete_one_resumed(interrupted, tmp_path, caplog):
    checkpoints = tmp_path / ".out.partial" / "checkpoints" / "mrl"
    (checkpoints / "checkpoint-2" / "trainer_state.json").unlink()  # killed while checkpoint-2 was written
    results = run_recipe(interrupted, "--resume", "-q").assert_success().results
    assert results.train["mrl"].resumed_from == "checkpoint-1" and results.train["mrl"].steps == 4
    assert "checkpoint-2 was cut short while being written" in caplog.text


def test_a_failure_after_training_keeps_the_trained_models_for_resume(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    from mrl_plugins.builtin.comparisons import PCA
    from mrl_plugins.errors import UserError

    def refuse(self, ctx):
        raise UserError("[[compare]] pca: refused after training")

    monkeypatch.setattr(PCA, "run", refuse)
    recipe = tiny_recipe.add_comparison("no-mrl").add_comparison("pca").write(recipe_path)
    failed = run_recipe(recipe, "-q")
    assert failed.code == 2 and "refused after training" in failed.err and "--resume" in failed.err
    assert "Traceback" not in failed.err
    kept = tmp_path / ".out.partial" / "trained"
    assert sorted(p.name for p in kept.iterdir()) == ["mrl.json", "no-mrl.json"]
    monkeypatch.undo()
    resumed = run_recipe(recipe, "--resume", "-q")
    assert resumed.assert_success().results.models["pca(base)"]
    assert not (tmp_path / ".out.partial").exists()


def test_what_pca_needs_is_refused_before_training(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(training, "train_or_reuse", lambda ctx, m: trained.append(m) or (_ for _ in ()).throw(AssertionError))
    tiny_recipe.set("data.eval_queries", 130).set("data.corpus_size", 0).add_comparison("pca")  # 30 rows left < 32 dims
    tiny_recipe.set("validation.queries", 0)  # (30 rows are too few to validate on too, and that would be said first)
    failed = run_recipe(tiny_recipe.write(recipe_path), "-q")
    assert failed.code == 2 and trained == []
    assert "checked against the loaded data, before training" in failed.err
    assert "pca: 30 training-side documents to fit on, fewer than the model's 32 dimensions" in failed.err
    assert not (tmp_path / ".out.partial").exists() and not (tmp_path / "out").exists()


def test_a_failed_final_move_keeps_the_finished_run(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    real = staging_module._move

    def fail_into_place(src, dst):
        if src.name.endswith(".partial"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(src, dst)

    monkeypatch.setattr(staging_module, "_move", fail_into_place)
    recipe = tiny_recipe.write(recipe_path)
    failed = run_recipe(recipe, "-q")
    staged = tmp_path / ".out.partial"
    assert failed.code == 1 and "Traceback" not in failed.err
    assert f"the finished run is whole in {staged}" in failed.err and "mv " in failed.err
    assert (staged / "results.json").is_file() and (staged / "model" / "modules.json").is_file()
    monkeypatch.undo()
    run_recipe(recipe, "--resume", "-q").assert_success()  # or finish it from the trained model
    assert (tmp_path / "out" / "results.json").is_file() and not staged.exists()


def test_a_failed_move_over_an_old_output_puts_the_old_one_back(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    real = staging_module._move
    monkeypatch.setattr(staging_module, "_move",
                        lambda s, d: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")) if s.name.endswith(".partial") else real(s, d))
    assert run_recipe(tiny_recipe.write(recipe_path), "--overwrite", "-q").code == 1
    assert (out / "mine.txt").read_text() == "mine"


def test_two_runs_cannot_write_the_same_output_folder(tiny_recipe, recipe_path, tmp_path):
    recipe = tiny_recipe.write(recipe_path)
    other = Staging(tmp_path / "out", staging_dir(tmp_path / "out"), Path("other.toml"))
    other.acquire()  # another run holds the folder
    try:
        refused = run_recipe(recipe, "-q")
        assert refused.code == 2 and "another run is writing" in refused.err and "other.toml" in refused.err
        assert not (tmp_path / "out").exists()
    finally:
        other.release()
    run_recipe(recipe, "-q").assert_success()


def test_resume_refuses_a_recipe_change_that_breaks_the_checkpoints(interrupted, tmp_path):
    text = interrupted.read_text()
    interrupted.write_text(text.replace("values = [\n    32,\n    16,\n    8,\n]", "values = [\n    32,\n    16,\n]"))
    refused = run_recipe(interrupted, "--resume", "-q")
    assert refused.code == 2 and "dims.values: [32, 16, 8] -> [32, 16]" in refused.err
    assert (tmp_path / ".out.partial" / "checkpoints" / "mrl" / "checkpoint-2").is_dir()  # nothing lost
    interrupted.write_text(text.replace("[train]", "[eval]\nk = 5\n\n[train]"))
    results = run_recipe(interrupted, "--resume", "-q").assert_success().results
    assert results.resumed_with_changes == ["eval.k: 10 -> 5"] and results.k == 5


def test_a_full_disk_keeps_the_state_and_says_so(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    from mrl_plugins.run import pipeline

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".out.partial" / "results.json"))

    monkeypatch.setattr(pipeline, "save_evaluation", full)
    failed = run_recipe(tiny_recipe.write(recipe_path), "-q")
    assert failed.code == 1 and "the disk filled up" in failed.err and "--resume" in failed.err
    assert "Traceback" not in failed.err and (tmp_path / ".out.partial" / "trained" / "mrl.json").is_file()


# -- publishing without side effects --------------------------------------------------------------
@pytest.fixture
def finished(finished_tiny_run):
    return finished_tiny_run


def publish(run, *args, env=None):
    proc = subprocess.run([sys.executable, "-m", "mrl_plugins.cli", "publish", str(run), *args],
                          capture_output=True, text=True, timeout=300, env=env)
    return proc.returncode, proc.stderr


def test_publish_without_a_token_changes_nothing_and_prints_the_exact_retry(finished, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = files_of(run)
    env = {**__import__("os").environ, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": ""}
    code, err = publish(run, "--truncate-dim", "8", "--repo-id", "alice/x", env=env)
    assert code == 1 and "no Hugging Face token" in err and "Traceback" not in err
    assert f"'mrl-run publish {run} --repo-id alice/x --truncate-dim 8'" in err
    assert files_of(run) == before


def test_a_failed_push_leaves_every_file_byte_identical(finished, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = files_of(run)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.state.fail_commit = 403
        code, err = publish(run, "--truncate-dim", "8", "--repo-id", "alice/x")
        assert code == 1 and "403" in err and f"mrl-run publish {run} --repo-id alice/x --truncate-dim 8" in err
        assert files_of(run) == before
        hub.state.fail_commit = None
        assert publish(run, "--truncate-dim", "8", "--repo-id", "alice/x")[0] == 0  # the printed retry works
    assert json.loads((run / "model" / "config_sentence_transformers.json").read_text())["truncate_dim"] == 8
    assert json.loads((run / "results.json").read_text())["publish"]["truncate_dim"] == 8


class HungServer:
    """Accepts connections on 127.0.0.1 and never answers, until stopped."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.held.append(conn)  # read nothing, answer nothing
            except OSError:
                continue

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_a_hung_endpoint_times_out_retries_and_says_how_to_retry(finished, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = files_of(run)
    server = HungServer()
    try:
        env = {**__import__("os").environ, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_test",
               "HF_ENDPOINT": server.url, "MRL_HUB_TIMEOUT": "1", "MRL_HUB_RETRIES": "2", "MRL_HUB_BACKOFF": "0.1"}
        code, err = publish(run, "--repo-id", "alice/x", env=env)
    finally:
        server.close()
    assert code == 1 and "failed after 2 attempts" in err and "Timeout" in err and "Traceback" not in err
    assert "push attempt 1 failed" in err and f"'mrl-run publish {run} --repo-id alice/x'" in err
    assert files_of(run) == before


# -- models, devices, folders: refused at validate -----------------------------------------------------
def test_a_base_model_with_a_default_truncate_dim_trains_and_saves_at_full_width(tiny_recipe, recipe_path, tmp_path):
    from sentence_transformers import SentenceTransformer

    model = tiny_model(tmp_path / "truncating")
    config = model / "config_sentence_transformers.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "truncate_dim": 16}))
    tiny_recipe.set("model.name", str(model)).set("dims", {"name": "halving", "floor": 8})
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert results.dims == [32, 16, 8] and results.model.full_dim == 32
    assert SentenceTransformer(str(tmp_path / "out" / "model"), device="cpu").encode(["audio"]).shape == (1, 32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model.name": "nobody/no-such-model"}, "[model] name: 'nobody/no-such-model' is not a local folder"),
        ({"model.device": "cuda"}, "[model] device: 'cuda' needs an NVIDIA GPU"),
        ({"output_dir": "/etc/hostname/out"}, "output_dir: '/etc/hostname/out' cannot be written: /etc/hostname is a file"),
        ({"data.columns": {"anchor": "question"}}, "[data] path: 'pairs.jsonl' has no column 'question'"),
    ],
)
def test_what_the_run_would_hit_is_refused_by_validate(tiny_recipe, recipe_path, monkeypatch, change, message):
    if Path("/dev/nvidia0").exists():
        pytest.skip("this machine has an NVIDIA GPU")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for key, value in change.items():
        tiny_recipe.set(key, value)
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and message in outcome.err and "Traceback" not in outcome.err


def test_a_model_folder_without_weights_is_refused(tiny_recipe, recipe_path, tmp_path):
    broken = shutil.copytree(tiny_model(tmp_path / "m"), tmp_path / "broken")
    for weights in broken.rglob("*.safetensors"):
        weights.unlink()
    outcome = run_recipe(tiny_recipe.set("model.name", str(broken)).write(recipe_path), command="validate")
    assert outcome.code == 2 and "has no weights" in outcome.err


def test_too_little_disk_is_refused_at_validate(tiny_recipe, recipe_path, monkeypatch):
    import collections

    monkeypatch.setattr(shutil, "disk_usage", lambda p: collections.namedtuple("U", "total used free")(10, 10, 1000))
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and "this run will write about" in outcome.err and "0 MiB free" in outcome.err


# -- data that is dropped is said; bad data names its line ----------------------------------------------
def write_rows(tmp_path, rows, name="pairs.jsonl"):
    return write_jsonl(tmp_path / name, rows)


def test_rows_with_empty_texts_are_counted_on_the_console(tiny_recipe, recipe_path, tmp_path, caplog):
    rows = toy_pairs(160)
    for i in range(0, 160, 4):
        rows[i]["positive"] = "  "
    write_rows(tmp_path, rows)
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert "pairs.jsonl: skipped 40 of 160 rows with an empty text (line 1, line 5, line 9, line 13, line 17, …)" in caplog.text
    assert results.data.summary["skipped"] == {"an empty text": 40}


@pytest.mark.parametrize(
    ("score", "policy", "message"),
    [
        ("high", "error", "pairs.jsonl, line 3: score 'high' is not a number"),
        (1.7, "error", "pairs.jsonl, line 3: score 1.7 is outside [0, 1]"),
        (float("nan"), "error", "pairs.jsonl, line 3: score is NaN"),
    ],
)
def test_bad_scores_name_their_line(tiny_recipe, recipe_path, tmp_path, score, policy, message):
    rows = [{"sentence1": r["anchor"], "sentence2": r["positive"], "score": 1.0} for r in toy_pairs(120)]
    rows[2]["score"] = score
    write_rows(tmp_path, rows)
    tiny_recipe.set("loss.name", "cosent").set("data.format", "scored-pairs").set("data.invalid_scores", policy)
    failed = run_recipe(tiny_recipe.write(recipe_path), "-q")
    assert failed.code == 2 and message in failed.err and "Traceback" not in failed.err


def test_clipping_scores_is_an_explicit_choice_and_is_reported(tiny_recipe, recipe_path, tmp_path, caplog):
    rows = [{"sentence1": r["anchor"], "sentence2": r["positive"], "score": 1.4} for r in toy_pairs(120)]
    write_rows(tmp_path, rows)
    tiny_recipe.set("loss.name", "cosent").set("data.format", "scored-pairs").set("data.invalid_scores", "clip")
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert results.data.summary["clipped_scores"] == 120 and "clipped 120 scores into [0, 1]" in caplog.text


def test_a_broken_jsonl_line_is_named(tiny_recipe, recipe_path, tmp_path):
    text = (tmp_path / "pairs.jsonl").read_text().splitlines()
    text[6] = '{"anchor": "audio", "positive": '
    (tmp_path / "pairs.jsonl").write_text("\n".join(text) + "\n")
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and "pairs.jsonl, line 7: not a JSON object" in outcome.err


def test_a_latin1_csv_without_encoding_names_the_encoding_key(tiny_recipe, recipe_path, tmp_path):
    lines = ["anchor,positive"] + [f"{r['anchor']},{r['positive']} café" for r in toy_pairs(80)]
    (tmp_path / "pairs.csv").write_bytes("\n".join(lines).encode("latin-1"))
    outcome = run_recipe(tiny_recipe.set("data.path", "pairs.csv").write(recipe_path), command="validate")
    assert outcome.code == 2 and "pairs.csv, line 2: not valid utf-8 text" in outcome.err
    assert '[data] encoding' in outcome.err
    ok = run_recipe(tiny_recipe.set("data.encoding", "latin-1").write(recipe_path), command="validate")
    assert ok.code == 0, ok.err


def test_an_empty_file_says_it_is_empty(tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "pairs.jsonl").write_text("")
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and "pairs.jsonl: the file is empty" in outcome.err


def test_too_few_rows_for_the_evaluation_set_is_refused_at_validate(tiny_recipe, recipe_path):
    outcome = run_recipe(tiny_recipe.set("data.eval_queries", 500).write(recipe_path), command="validate")
    assert outcome.code == 2 and "eval_queries: 500 held out of the 160 rows of 'pairs.jsonl' leaves no training rows" in outcome.err


def test_a_tiny_evaluation_set_is_warned_about(tiny_recipe, recipe_path, caplog):
    run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success()
    assert "the evaluation set is tiny (20 queries" in caplog.text


def test_leak_detection_compares_normalised_text():
    from mrl_plugins.data.split import find_leaks, split_by_query
    from mrl_plugins.data.types import IRSet

    ir = IRSet({"q": "Audio Tools"}, {"d": "the audio package"}, {"q": {"d"}})
    assert find_leaks(["audio  tools ", "THE AUDIO PACKAGE"], ir) == (1, 1)
    # every document also appears, in capitals and with a trailing space, under another query
    rows = [{"anchor": f"q{i}", "positive": f"doc {i}"} for i in range(30)]
    rows += [{"anchor": f"other {i}", "positive": f"DOC {i} "} for i in range(30)]
    split = split_by_query(rows, eval_queries=5, seed=0)
    held = {d for d in split.eval.corpus.values()}
    assert len(held) >= 5
    assert not any(r["positive"].strip().lower() in held for r in split.train_rows)  # the variants left training
    assert find_leaks([t for r in split.train_rows for t in r.values()], split.eval) == (0, 0)


# -- plugins that fail name themselves ---------------------------------------------------------------------
BROKEN_SOURCE = '''
from mrl_plugins import hookimpl
from mrl_plugins.components import DataSource



class Broken(DataSource):
    """A data source with a bug."""

    name = "broken"
    produces = ("pairs",)

    def load(self, request):
        {body}


@hookimpl
def register_data_sources(register):
    register(Broken)
'''


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ("return {}['missing']", 1, "[data]: data source 'broken' (plugin 'broken.py') failed in load(): KeyError: 'missing'"),
        ("return [1, 2, 3]", 2, "data source 'broken' (plugin 'broken.py'): load() returned list, not a DataBundle"),
    ],
)
def test_a_plugins_exception_or_wrong_return_names_the_plugin(tiny_recipe, recipe_path, tmp_path, body, code, message):
    (tmp_path / "broken.py").write_text(BROKEN_SOURCE.replace("{body}", body))
    tiny_recipe.set("plugins", ["broken.py"]).set("data", {"name": "broken"})
    failed = run_recipe(tiny_recipe.write(recipe_path), "-q")
    assert failed.code == code and message in failed.err and "Traceback" not in failed.err


def test_quiet_prints_no_progress_bars(tiny_recipe, recipe_path):
    proc = subprocess.run([sys.executable, "-m", "mrl_plugins.cli", str(tiny_recipe.write(recipe_path)), "-q"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for bar in ("it/s]", "Loading weights", "Writing model shards", "Generating train split", "Computing widget examples"):
        assert bar not in proc.stderr, proc.stderr[-2000:]


def test_debian_counts_are_checked_at_validate():
    from pathlib import Path as P

    root = P(__file__).resolve().parents[1]
    outcome = run_recipe(root / "recipes" / "quickstart.toml", "--set", "data.train_pairs=3500", command="validate")
    assert outcome.code == 2
    assert "[data] train_pairs: at most 3000 pairs are left for training after holding out 3000 documents" in outcome.err


def test_a_device_torch_cannot_use_is_refused_when_the_run_starts(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    from mrl_plugins.recipe import checks

    monkeypatch.setattr(checks, "device_problems", lambda device: [])  # as if validate could not tell
    failed = run_recipe(tiny_recipe.set("model.device", "cuda:3").write(recipe_path), "-q")
    assert failed.code == 2 and "[model] device: 'cuda:3' is not available (torch sees" in failed.err
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_validate_with_data_runs_the_checks_a_run_makes_before_training(tiny_recipe, recipe_path):
    tiny_recipe.set("data.eval_queries", 130).set("data.corpus_size", 0).add_comparison("pca")
    recipe = tiny_recipe.write(recipe_path)
    assert run_recipe(recipe, command="validate").code == 0  # without the data, nothing to see
    outcome = run_recipe(recipe, "--data", command="validate")
    assert outcome.code == 2 and "checked against its data" in outcome.err
    assert "pca: 30 training-side documents to fit on" in outcome.err
