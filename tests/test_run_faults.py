"""Fault injection on the run path, the cases issue #24 added: a run killed without a word is
recognised, finished comparisons survive a resume, a full disk while saving keeps the trained
weights, plugins' return values and checks are guarded, the trainer stops on non-finite values,
``output_dir`` fills only its two placeholders, and every resume hint is the exact command."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from mrl_plugins.run import training
from mrl_plugins.testkit.recipes import run_recipe
from tests.test_compare import StopAt

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')


def one_message(outcome, *expected, code=2):
    assert outcome.code == code, outcome.err
    assert "Traceback" not in outcome.err
    for text in expected:
        assert text in outcome.err, outcome.err


# -- 3. a run killed without a chance to speak -------------------------------------------------------------
def test_a_sigkilled_run_is_recognised_with_its_stage_and_what_resume_reuses(tiny_recipe, recipe_path, tmp_path):
    recipe = tiny_recipe.set("train.max_steps", 400).set("train.checkpoint_steps", 1).write(recipe_path)
    proc = subprocess.Popen([sys.executable, "-m", "mrl_plugins.cli", str(recipe), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / ".out.partial" / "checkpoints" / "mrl"
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: only what is on disk tells
    proc.wait()
    again = run_recipe(recipe, "-q")
    one_message(again, "an earlier run into", "stopped without finishing during stage 'train:mrl'",
                f"pid {proc.pid}", "what --resume will reuse: checkpoints of 'mrl'", "--resume")
    assert list(checkpoints.glob("checkpoint-*"))  # nothing was removed


def test_finished_comparisons_are_not_computed_again_on_resume(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    from mrl_plugins.builtin.comparisons import PCA
    from mrl_plugins.errors import UserError

    calls = []
    real = PCA.run
    monkeypatch.setattr(PCA, "run", lambda self, ctx: calls.append(1) or real(self, ctx))
    monkeypatch.setattr("mrl_plugins.builtin.search_comparisons.Funnel.run",
                        lambda self, ctx: (_ for _ in ()).throw(UserError("funnel refused")))
    recipe = tiny_recipe.add_comparison("pca").add_comparison("funnel", shortlist=[20]).write(recipe_path)
    assert run_recipe(recipe, "-q").code == 2 and calls == [1, 1]  # on the validation split, then held out
    assert (tmp_path / ".out.partial" / "compared" / "0.json").is_file()
    assert (tmp_path / ".out.partial" / "compared" / "0-validation.json").is_file()
    monkeypatch.undo()
    monkeypatch.setattr(PCA, "run", lambda self, ctx: calls.append(2) or real(self, ctx))
    results = run_recipe(recipe, "--resume", "-q").assert_success().results
    assert calls == [1, 1]  # PCA's columns (both splits) came from the interrupted run
    assert results.models["pca(base)"].intervals  # with its per-query scores, so its statistics too


def test_validate_warns_when_the_run_would_not_fit_in_memory(tiny_recipe, recipe_path, monkeypatch):
    from mrl_plugins.recipe import checks

    monkeypatch.setattr(checks, "machine_memory", lambda: 2**20)
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 0
    assert "warning   this run may need about" in outcome.out and "more than this machine's 0.0 GiB" in outcome.out


# -- 5. a full disk while the trained model is saved --------------------------------------------------------
def test_a_full_disk_while_saving_keeps_the_weights_and_retries(tiny_recipe, recipe_path, tmp_path, monkeypatch, caplog):
    from sentence_transformers import SentenceTransformer

    real, failures = SentenceTransformer.save, []

    def full_once(self, path, *args, **kwargs):
        if not failures:
            failures.append(path)
            os.makedirs(path, exist_ok=True)
            (tmp_path / "half").write_text("x")
            raise Exception('Error while serializing: IoError(Os { code: 28, message: "No space left on device" })')
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "save", full_once)
    monkeypatch.setattr(training, "SAVE_POLL_SECONDS", 0.01)
    run_recipe(tiny_recipe.set("train.checkpoint_steps", 0).write(recipe_path), "-q").assert_success()
    assert failures and "The trained weights are kept in memory: free some space there" in caplog.text


def test_a_disk_that_stays_full_says_so_once(tiny_recipe, recipe_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    monkeypatch.setattr(SentenceTransformer, "save",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    monkeypatch.setattr(training, "SAVE_RETRY_SECONDS", 0.0)
    outcome = run_recipe(tiny_recipe.set("train.checkpoint_steps", 0).write(recipe_path), "-q")
    one_message(outcome, "the disk filled up while saving the trained model 'mrl'", "free some space", code=1)


# -- 10. what a comparison hands over, and a check() that raises ------------------------------------------
COMPARISON_SOURCE = '''
import math
from mrl_plugins import hookimpl
from mrl_plugins.components import Comparison



class Odd(Comparison):
    """A comparison with a bug."""

    name = "odd"

    def label(self, models):
        return "odd"

    def check(self, ctx):
        {check}

    def run(self, ctx):
        {body}


@hookimpl
def register_comparisons(register):
    register(Odd)
'''


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('return "done"', "returned str where metrics per dimension belong"),
        ("return {32: {'mrr@10': 0.5, 'recall@10': 0.5, 'ndcg@10': 0.5}}",
         "returned metrics for dimensions [32], the run's are [32, 16, 8]"),
        ("return {d: {'mrr@10': math.nan, 'recall@10': 0.5, 'ndcg@10': 0.5} for d in ctx.dims}",
         "returned mrr@10 = nan at dimension 32, not a finite number in [0, 1]"),
        ("return {d: {'mrr@10': 0.5} for d in ctx.dims}", "returned no recall@10, ndcg@10 at dimension 32"),
    ],
)
def test_a_comparisons_return_value_is_checked_where_it_is_handed_over(tiny_recipe, recipe_path, tmp_path, body, message):
    (tmp_path / "odd.py").write_text(COMPARISON_SOURCE.replace("{body}", body).replace("{check}", "return []"))
    tiny_recipe.set("plugins", ["odd.py"]).add_comparison("odd")
    outcome = run_recipe(tiny_recipe.write(recipe_path), "-q")
    one_message(outcome, "comparison 'odd' (plugin 'odd.py')", message, "does not follow the contract")


def test_a_check_that_raises_is_one_message_at_validate(tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "odd.py").write_text(COMPARISON_SOURCE.replace("{body}", "return {}").replace("{check}", "return 1 / 0"))
    tiny_recipe.set("plugins", ["odd.py"]).add_comparison("odd")
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    one_message(outcome, "check() of odd (plugin 'odd.py') failed: ZeroDivisionError")


# -- 11. a variant's objective is checked like the recipe's ----------------------------------------------
def test_a_variants_objective_is_checked_at_validate(tiny_recipe, recipe_path):
    tiny_recipe.add_comparison("variant", objective="matryoshka-2d")
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    one_message(outcome, "(variant ", "objective 'matryoshka-2d')", "needs at least 2")


# -- 12. non-finite losses stop the training ---------------------------------------------------------------
def test_a_non_finite_loss_stops_training_naming_the_objective(tiny_recipe, recipe_path, tmp_path):
    tiny_recipe.set("objective", {"name": "prefix-distill", "weight": 1e30, "temperature": 1e-6})
    outcome = run_recipe(tiny_recipe.write(recipe_path), "-q")
    one_message(outcome, "training 'mrl' stopped at step", "objective 'prefix-distill'", "'weight': 1e+30")
    assert not (tmp_path / "out").exists()


# -- 13. settings validate cannot let through ------------------------------------------------------------------
def test_device_gpu_is_refused_at_validate(tiny_recipe, recipe_path):
    outcome = run_recipe(tiny_recipe.set("model.device", "gpu").write(recipe_path), command="validate")
    one_message(outcome, "[model] device: 'gpu' is not a device torch knows")


def test_the_adaptors_top_k_check_names_top_k(tiny_recipe, recipe_path):
    tiny_recipe.add_comparison("adaptor", top_k=500)
    outcome = run_recipe(tiny_recipe.write(recipe_path), "--data", command="validate")
    one_message(outcome, "top_k: 500 neighbours per text need at least 1000 training texts")


# -- 14. output_dir fills {name} and {timestamp} only ------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "output_dir", "message"),
    [("run", "{name.__class__}", "unknown placeholder {name.__class__}"),
     ("run", "{name[0]}", "unknown placeholder {name[0]}"),
     ("run", "out/{name", "an unmatched brace"),
     ("bad\x00name", "out/{name}", "name: contains control characters ('\\x00')"),
     ("run", "out/\x1b[31m", "output_dir: contains control characters ('\\x1b')")],
)
def test_output_dir_placeholders_are_filled_literally(tiny_recipe, recipe_path, tmp_path, name, output_dir, message):
    tiny_recipe.set("name", name).set("output_dir", str(tmp_path / output_dir))
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    one_message(outcome, message)
    assert not any("class" in p.name for p in tmp_path.iterdir())


def test_literal_braces_are_written_doubled(tiny_recipe, recipe_path, tmp_path):
    from mrl_plugins.recipe.load import load_recipe

    tiny_recipe.set("output_dir", str(tmp_path / "{{x}}-{name}"))
    assert load_recipe(tiny_recipe.write(recipe_path)).output_dir == tmp_path / "{x}-tiny"


# -- 15. the resume hint is the whole command ------------------------------------------------------------------
def test_the_resume_hint_carries_the_overrides_and_resume_dir_works(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    recipe = tiny_recipe.set("train.max_steps", 4).set("train.checkpoint_steps", 1).write(recipe_path)
    monkeypatch.setattr(training, "trainer_callbacks", lambda: [StopAt(3)])
    out = tmp_path / "my out"
    stopped = run_recipe(recipe, "--set", f"output_dir='{out}'", "--set", "train.learning_rate=3e-5", "-q")
    assert stopped.code == 130
    expected = shlex.join(["mrl-run", str(recipe), "--set", f"output_dir='{out}'", "--set", "train.learning_rate=3e-5",
                           "--resume"])
    assert expected in stopped.err and f"mrl-run --resume {shlex.quote(str(out))}" in stopped.err
    monkeypatch.setattr(training, "trainer_callbacks", lambda: [])
    from mrl_plugins.cli import main

    assert main(["--resume", str(out), "-q"]) == 0  # the saved recipe and --set options, from any directory
    results = json.loads((out / "results.json").read_text())
    assert results["train"]["mrl"]["resumed_from"] == "checkpoint-2" and results["train"]["mrl"]["steps"] == 4
