"""Does the swept small-widths recipe beat today's on data it was not swept on? (issue #38, item 3)

``mrl-run sweep recipes/sweep-small-widths.toml`` chooses training settings (learning rate,
epochs, batch size, loss, mining) on the Debian descriptions' validation split and writes them to
``recipes/sweep-small-widths.sweep-best.toml``. This script runs the confirmation recipe
(``recipes/confirm-docstrings.toml``: the small-widths setup on CPython's docstrings, which no
default was chosen on) twice: as it is (today's settings: 1 epoch, batch 32, 5e-5, mnr, no mining)
and with the swept ``[train]``, ``[loss]``, ``[mining]`` and ``[objective]`` tables put in. Both
runs split the same file with the same seed, so they score the same held-out queries, and each
column is compared query by query (a paired sign-flip test, ``mrl_plugins.evidence.stats``).

    .venv/bin/python benchmarks/bench_small_widths.py [--best recipes/sweep-small-widths.sweep-best.toml]
        [--today RUN]                 # a finished run of confirm-docstrings.toml as shipped (e.g. the one
                                      # benchmarks/bench_validation.py makes: extra comparisons change no model)
        [--runs TODAY SWEPT]          # read two finished run folders instead
    .venv/bin/python benchmarks/bench_small_widths.py --sweep runs/sweep-small-widths-sweep
                                      # the sweep's trials against today's settings on validation (paired
                                      # tests); a trial with today's settings must be in the study

About 20 minutes on 2 CPU cores (two runs of about 8 and 12 minutes).
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIRM = ROOT / "recipes" / "confirm-docstrings.toml"
SWEPT_TABLES = ("train", "loss", "mining", "objective")
COLUMNS = ("adaptor(mrl)", "mrl", "adaptor(mrl-plain)", "mrl-plain")


def run(name: str, changes: dict) -> Path:
    from recipe_runs import run_table

    raw = tomllib.loads(CONFIRM.read_text())
    for table, value in changes.items():
        if value is None:
            raw.pop(table, None)
        else:
            raw[table] = value
    what = ", ".join(f"[{k}] {v}" for k, v in changes.items()) or "as shipped"
    return run_table(raw, f"bench-small-widths-{name}", f"{name}: {what}")


def swept(best: Path) -> dict:
    """The tables the sweep chose (a table the best recipe lacks is removed: no [mining], say)."""
    raw = tomllib.loads(best.read_text())
    return {table: raw.get(table) for table in SWEPT_TABLES}


def compare(today: Path, new: Path) -> None:
    from mrl_plugins.evidence.results import PRIMARY, RunResults
    from mrl_plugins.evidence.saved import load_per_query
    from mrl_plugins.evidence.stats import paired_p_value

    sets = [gzip.decompress((run / "evaluation" / "eval_set.json.gz").read_bytes()) for run in (today, new)]
    if sets[0] != sets[1]:
        sys.exit("the two runs did not score the same held-out set; nothing to pair")
    results = {"today": RunResults.load(today / "results.json"), "swept": RunResults.load(new / "results.json")}
    scores = {"today": load_per_query(today), "swept": load_per_query(new)}
    key = PRIMARY.key(results["today"].k)
    held = results["today"].data
    print(f"\nHeld out: {held.eval_queries} queries, {held.corpus} documents (source '{held.source}'). "
          f"MRR@{results['today'].k}, swept − today, paired sign-flip test over the queries:\n")
    dims = results["today"].dims
    print("| column | " + " | ".join(f"{d}" for d in dims) + " |\n|---|" + "---|" * len(dims))
    for column in COLUMNS:
        if column not in scores["today"] or column not in scores["swept"]:
            continue
        cells = []
        for d in dims:
            a, b = scores["swept"][column][d][key], scores["today"][column][d][key]
            delta = a.mean() - b.mean()
            cells.append(f"{b.mean():.4f} → {a.mean():.4f} ({delta:+.4f}, p = {paired_p_value(a, b):.3f})")
        print(f"| {results['today'].models[column].label} | " + " | ".join(cells) + " |")
    publish = "adaptor(mrl)"
    if publish in scores["today"] and publish in scores["swept"]:
        diffs = {d: (scores["swept"][publish][d][key], scores["today"][publish][d][key]) for d in dims}
        small = min(dims)
        a, b = diffs[small]
        wins = a.mean() > b.mean() and paired_p_value(a, b) < 0.05
        losses = [d for d, (a, b) in diffs.items() if a.mean() < b.mean() and paired_p_value(a, b) < 0.05]
        print(f"\nAt {small} dims the swept recipe's adapted model {'beats' if wins else 'does not beat'} today's "
              f"beyond noise; it loses significantly at {', '.join(map(str, losses)) if losses else 'no width'}.")
    for name, r in results.items():
        seconds = {k: v for k, v in r.timings.items() if k.startswith("train:")}
        print(f"{name}: {r.train['mrl'].steps} training steps of the MRL model; training seconds {seconds}")


def today_value(shipped: dict, key: str):
    """What ``recipes/small-widths.toml`` sets for a swept key (the defaults where it sets none:
    no mining, equal weights)."""
    if key == "mining.enabled":
        return shipped.get("mining", {}).get("enabled", False)
    if key == "dims.weights":
        return [float(w) for w in shipped["dims"].get("weights") or [1.0] * len(shipped["dims"]["values"])]
    table, name = key.split(".", 1)
    return shipped[table][name]


def trial_value(value):
    """A trial's value as the recipe takes it (a list choice is held by Optuna as its TOML text)."""
    if isinstance(value, str) and value[:1] in "[{":
        value = tomllib.loads(f"v = {value}")["v"]
    return [float(v) for v in value] if isinstance(value, list) else value


def shown(key: str, value) -> str:
    if value is None:
        return ""
    if key.endswith("learning_rate"):
        return f"{value:.2e}"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    return str(value)


def trials(folder: Path) -> None:
    """A sweep's trials on the validation split, each against the trial with today's settings
    (``recipes/small-widths.toml``'s values of the swept keys: for the shipped sweep its
    ``[train]``, mnr, no mining; for a sweep of ``dims.weights``, equal weights): the objective
    (MRR@10 of the adapted MRL model, mean of 96 and 48 dims) per trial, and a paired sign-flip
    test of each trial's per-query objective against today's over the 200 validation queries. The
    margin rule of the run's own choices (docs/defaults.md) then keeps today's settings unless a
    trial beats them beyond noise."""
    import optuna

    from mrl_plugins.evidence.results import RunResults
    from mrl_plugins.evidence.stats import paired_p_value

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    shipped = tomllib.loads((ROOT / "recipes" / "small-widths.toml").read_text())
    study = optuna.load_study(study_name="sweep-small-widths", storage=f"sqlite:///{folder / 'study.db'}")
    keys = list(dict.fromkeys(k for t in study.trials for k in t.params))
    today = {k: today_value(shipped, k) for k in keys}
    sweep = tomllib.loads((ROOT / "recipes" / "sweep-small-widths.toml").read_text())["sweep"]
    column, dims = sweep["column"], sweep["dims"]

    def per_query(trial) -> np.ndarray:
        results = RunResults.load(Path(trial.user_attrs["folder"]) / "results.json")
        return np.mean([np.asarray(results.validation_scores[column][d]) for d in dims], axis=0)

    def values(trial) -> dict:  # a baseline trial (mrl-run sweep's, the recipe as written) ran today's values
        return dict(today) if trial.user_attrs.get("baseline") else {k: trial_value(v) for k, v in trial.params.items()}

    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    base = next((t for t in done if values(t) == today), None)
    if base is None:
        sys.exit(f"{folder}: no completed trial has today's settings {today}; enqueue one (optuna's enqueue_trial)")
    ref = per_query(base)
    # a killed trial's end is when the next sweep marked it failed, not when it stopped: not counted
    minutes = {t.number: (t.datetime_complete - t.datetime_start).total_seconds() / 60 for t in study.trials
               if t.datetime_complete is not None and t.state.name != "FAIL"}
    states = {state: sum(t.state.name == state for t in study.trials) for state in ("COMPLETE", "PRUNED", "FAIL")}
    print(f"{len(study.trials)} trials ({states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} "
          f"failed or killed), {sum(minutes.values()):.0f} minutes of complete and pruned trials on 2 CPU cores; "
          f"objective: validation MRR@10 of {column}, mean of {dims} dims ({len(ref)} queries)\n")
    print("| trial | " + " | ".join(keys) + " | objective | − today's | p | minutes |")
    print("|---|" + "---|" * len(keys) + "---|---|---|---|")
    for t in sorted(study.trials, key=lambda t: -(t.value or -1)):
        mark = " (today)" if t.number == base.number else ""
        row = f"| {t.number}{mark} | " + " | ".join(shown(k, values(t).get(k)) for k in keys) + " | "
        if t.state.name != "COMPLETE":
            print(row + f"{t.state.name.lower()} | | | |")
            continue
        mine = per_query(t)
        diff = "- | -"
        if t.number != base.number:
            diff = f"{mine.mean() - ref.mean():+.4f} | {paired_p_value(mine, ref):.3f}"
        print(row + f"{t.value:.4f} | {diff} | {minutes[t.number]:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--best", type=Path, default=ROOT / "recipes" / "sweep-small-widths.sweep-best.toml")
    parser.add_argument("--today", type=Path, help="A finished run of the confirmation recipe as shipped.")
    parser.add_argument("--runs", nargs=2, type=Path, metavar=("TODAY", "SWEPT"))
    parser.add_argument("--sweep", type=Path, help="The sweep's folder (runs/sweep-small-widths-sweep): print its "
                        "trials against today's settings on the validation split, and stop.")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.sweep:
        trials(args.sweep)
        return
    if args.runs:
        compare(*args.runs)
        return
    if not args.best.is_file():
        sys.exit(f"{args.best}: no such file; run 'mrl-run sweep recipes/sweep-small-widths.toml' first, "
                 "or pass --best")
    new = swept(args.best)
    compare(args.today or run("today", {}), run("swept", new))


if __name__ == "__main__":
    main()
