"""Comparisons (PCA, control run), the report, resume and multi-process training."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from mrl_plugins.builtin.comparisons import PCA
from mrl_plugins.evaluation.metrics import METRICS
from mrl_plugins.evaluation.retrieval import score_dims
from mrl_plugins.results import RunResults
from mrl_plugins.run import training
from mrl_plugins.testkit.contexts import ArrayComparisonContext
from mrl_plugins.testkit.recipes import run_recipe

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')

LABELS = {"base": "base", "no-mrl": "no-MRL"}
OUTPUTS = ["costs.png", "evaluation", "metrics.png", "model", "recipe.toml", "report.md", "results.json"]


def test_pca_hand_checked_case():
    # Training-side documents spread along the diagonal, so PCA's first axis is (1, 1)/√2.
    t = np.linspace(-1, 1, 20, dtype=np.float32)
    fit = np.stack([t + 0.01 * np.sin(7 * t), t - 0.01 * np.sin(7 * t)], axis=1)
    queries = np.array([[1.0, 1.0]], dtype=np.float32)
    # relevant d0 = (-0.2, 1.0); d1 = (0.9, -1.0). Cut to 1 dim and re-normalised only the sign is
    # left: on x, d1 agrees with the query and d0 does not; on the diagonal axis it is the reverse.
    corpus = np.array([[-0.2, 1.0], [0.9, -1.0]], dtype=np.float32)
    ctx = ArrayComparisonContext(queries, corpus, [{0}], [2, 1], fit_vectors=fit, texts=[f"t{i}" for i in range(20)])
    pca = PCA(PCA.Params()).run(ctx)
    plain = score_dims(queries, corpus, [{0}], [2, 1])
    assert plain[1]["mrr@10"] == 0.5 and pca[1]["mrr@10"] == 1.0
    assert pca[2] == plain[2] == {"mrr@10": 1.0, "recall@10": 1.0, "ndcg@10": 1.0}


def test_pca_fits_on_training_side_only_and_never_on_eval_texts():
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    corpus = rng.normal(size=(12, 8)).astype(np.float32)
    ctx = ArrayComparisonContext(queries, corpus, [{i} for i in range(5)], [8, 4],
                                 fit_vectors=rng.normal(size=(30, 8)).astype(np.float32),
                                 texts=[f"train doc {i}" for i in range(30)])
    encoded = ctx.encoded
    pca = PCA(PCA.Params()).run(ctx)
    # at full dimension PCA without centring is a rotation: exactly the model's own rankings
    assert pca[8] == score_dims(queries, corpus, [{i} for i in range(5)], [8])[8]
    assert encoded and all(t.startswith("train doc") for t in encoded)
    assert not set(encoded) & (set(ctx.eval_set.corpus.values()) | set(ctx.eval_set.queries.values()))
    encoded.clear()
    PCA(PCA.Params(fit_on="eval-corpus")).run(ctx)
    assert encoded == []  # the recipe asked for the evaluation corpus: nothing else is encoded
    assert PCA(PCA.Params(fit_on="eval-corpus")).label(LABELS) == "base · PCA, fit on eval corpus"


def test_control_run_trains_without_matryoshka_and_report_matches_results(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    from mrl_plugins.models.compat import st_losses

    wrapped = []
    real = st_losses().MatryoshkaLoss

    class Spy(real):
        def __init__(self, *args, **kwargs):
            wrapped.append(kwargs["matryoshka_dims"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(st_losses(), "MatryoshkaLoss", Spy)
    tiny_recipe.add_comparison("no-mrl").add_comparison("pca").add_comparison("pca", model="no-mrl")
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    assert wrapped == [[32, 16, 8]]  # only the main model is wrapped; the control is not
    out = tmp_path / "out"
    assert results.train["no-mrl"].matryoshka is False and results.train["mrl"].matryoshka is True
    # one key and one label per model: the control is the model 'no-mrl', labelled no-MRL everywhere
    assert list(results.models) == ["base", "mrl", "no-mrl", "pca(base)", "pca(no-mrl)"]
    assert [m.label for m in results.models.values()] == ["base", "MRL", "no-MRL", "base · PCA", "no-MRL · PCA"]
    assert results.models["no-mrl"].kind == "model" and results.models["pca(no-mrl)"].reads == ["no-mrl"]
    assert not (out / "trained").exists() and not (out / "checkpoints").exists()
    from sentence_transformers import SentenceTransformer  # the control model is kept, for the demo

    assert SentenceTransformer(str(out / "variants" / "no-mrl"), device="cpu").encode(["audio"]).shape == (1, 32)

    report = (out / "report.md").read_text()
    assert "![metrics per dimension](metrics.png)" in report
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for metric in METRICS:
        block = report.split(f"## {metric.title}@10")[1].split("##")[0]
        rows = [line for line in block.splitlines() if re.match(r"\| \d+ \|", line)]
        assert [int(r.split("|")[1]) for r in rows] == [32, 16, 8]
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            dim = int(cells[0])
            assert cells[1] == f"{dim * 4} MB"  # float32, one million vectors
            for cell, key in zip(cells[2:], results.models):
                assert cell.startswith(f"{results.value(key, dim, metric):.4f}")
    assert "## Smallest dimension keeping MRR@10" in report


class StopAt:
    """A trainer callback that interrupts training at a given step, like Ctrl-C would."""

    def __init__(self, step):
        from transformers import TrainerCallback

        self.step = step
        self.__class__ = type("StopAtCallback", (StopAt, TrainerCallback), {})

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_interrupted_run_leaves_no_output_and_resumes(tiny_recipe, recipe_path, tmp_path, monkeypatch):
    recipe = tiny_recipe.set("train.max_steps", 4).set("train.checkpoint_steps", 1).write(recipe_path)
    monkeypatch.setattr(training, "trainer_callbacks", lambda: [StopAt(3)])
    interrupted = run_recipe(recipe, "-q")
    assert interrupted.code == 130
    assert "--resume" in interrupted.err and "Traceback" not in interrupted.err
    out, staging = tmp_path / "out", tmp_path / ".out.partial"
    assert not out.exists()  # no final model, no results
    assert sorted(p.name for p in (staging / "checkpoints" / "mrl").iterdir()) == ["checkpoint-1", "checkpoint-2"]

    monkeypatch.setattr(training, "trainer_callbacks", lambda: [])
    fresh = run_recipe(recipe, "-q")
    assert fresh.code == 2 and "--resume" in fresh.err  # a fresh run must not silently discard the checkpoints
    assert (staging / "checkpoints" / "mrl" / "checkpoint-2").is_dir()
    results = run_recipe(recipe, "--resume", "-q").assert_success().results
    assert results.train["mrl"].resumed_from == "checkpoint-2"
    assert results.train["mrl"].steps == 4
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    assert not staging.exists()


def test_resume_without_an_interrupted_run_is_a_clear_error(tiny_recipe, recipe_path):
    outcome = run_recipe(tiny_recipe.write(recipe_path), "--resume")
    assert outcome.code == 2 and "no interrupted run" in outcome.err


def _launcher(name: str, port: int) -> list[str]:
    bin_dir = os.path.dirname(sys.executable)
    if name == "torchrun":
        return [os.path.join(bin_dir, "torchrun"), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}"]
    # accelerate's multi-process launcher is --multi_gpu; on a machine without GPUs it runs CPU processes on gloo
    return [os.path.join(bin_dir, "accelerate"), "launch", "--multi_gpu", "--num_processes=2", f"--main_process_port={port}"]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_process_gloo_training_writes_once(launcher, tiny_recipe, recipe_path, tmp_path):
    if not os.path.exists(_launcher(launcher, 0)[0]):
        pytest.skip(f"{launcher} is not installed")
    recipe = tiny_recipe.add_comparison("no-mrl").set("train.max_steps", None).write(recipe_path)
    with socket.socket() as sock:  # a free port for the rendezvous (port 0 does not reach the workers)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run(
        [*_launcher(launcher, port), "-m", "mrl_plugins.cli", str(recipe)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = RunResults.load(tmp_path / "out" / "results.json")
    # 100 training rows less the 20 the validation split takes (every rank carves the same), batch 16 per
    # process, incomplete last batch dropped: two processes share an epoch in 80 // 32 = 2 steps, where one
    # process alone takes 80 // 16 = 5
    assert results.data.train_rows == 80
    assert {k: results.data.validation_from[k] for k in ("spare", "training", "training_rows_removed")} == {
        "spare": 0, "training": 20, "training_rows_removed": 20}
    # no training document stands in the validation corpus as a distractor (issue #36)
    assert results.data.validation_from["distractors_from_training"] == 0
    for key in ("mrl", "no-mrl"):  # the control run is distributed too
        assert results.train[key].world_size == 2
        assert results.train[key].steps == 2
    assert proc.stdout.count("MRR@10  (value and retention") == 1  # only rank 0 prints the table
    assert [p.name for p in tmp_path.iterdir() if "out" in p.name] == ["out"]
