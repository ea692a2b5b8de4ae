"""Does validation predict held out? The run's own agreement table on each shipped real dataset.

For each dataset (the Debian descriptions: recipes/quickstart.toml; the manual pages:
recipes/manpages.toml with the adaptor added; the Python docstrings: recipes/confirm-docstrings.toml,
on which no default was chosen) ONE run is made as its recipe says, and this prints from its
results.json:

- what the validation split is made of (queries, documents, where they came from);
- "Did the choices hold?": every choice the run made on validation (the widths, what to serve, the
  model to publish per width, where each adaptor is used), its held-out score, the best held-out
  alternative and the paired test; a choice does not hold when it is significantly worse held out;
- the validation − held-out gap of every column (mean over widths of MRR@10 on validation minus
  MRR@10 held out): a column fitted to the training side (the adaptor, PCA) that validation
  flatters shows a larger gap than the fine-tuned models.

    .venv/bin/python benchmarks/bench_validation.py [--datasets debian manpages docstrings] [--runs RUN ...]
        [--cv-folds 5]

``--runs`` reads finished run folders instead of running the recipes. ``--cv-folds K`` adds, beside
every adaptor of the recipe, its twin with ``cv_folds = K`` (issue #36, item 4: the stopping epoch
and the per-width gate chosen by K-fold cross-validation over the training pairs instead of on the
validation split), so that both ways of choosing are checked held out in the same run.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"debian": "quickstart.toml", "manpages": "manpages.toml", "docstrings": "confirm-docstrings.toml"}
EXTRA = {"manpages": [{"name": "adaptor", "model": "mrl"}]}  # so every dataset has a fitted post-hoc column


def run_dataset(name: str, cv_folds: int = 0) -> Path:
    from recipe_runs import run_table

    raw = tomllib.loads((ROOT / "recipes" / RECIPES[name]).read_text())
    raw["compare"] = [*raw.get("compare", []), *EXTRA.get(name, [])]
    if cv_folds:
        raw["compare"] += [{**c, "cv_folds": cv_folds} for c in raw["compare"] if c["name"] == "adaptor"]
    return run_table(raw, f"bench-validation-{name}", f"{name}: {RECIPES[name]}")


def report(run: Path) -> None:
    from mrl_plugins.evidence.results import PRIMARY, RunResults
    from mrl_plugins.recipe.data import validation_words

    results = RunResults.load(run / "results.json")
    data, key = results.data, PRIMARY.key(results.k)
    print(f"\n## {results.name} ({data.source})\n")
    print(f"Validation: {data.validation_queries} queries, {data.validation_corpus} documents "
          f"({validation_words(data.validation_from)}); held out: {data.eval_queries} queries, {data.corpus} "
          "documents.")
    print("\n| choice | chosen | held out | best alternative held out | difference | holds |")
    print("|---|---|---|---|---|---|")
    for c in results.checks:
        share = c.choice.startswith(("width", "to serve"))
        value = (lambda v: f"{v:.1%}") if share else (lambda v: f"{v:.4f}")
        alt = f"{c.alternative}: {value(c.alternative_held_out)}" if c.alternative and c.alternative_held_out else "-"
        test = f"{c.delta:+.3f} (p = {c.p:.3f})" if c.delta is not None else "-"
        print(f"| {c.choice} | {c.chosen} | {value(c.held_out)} | {alt} | {test} | {'yes' if c.holds else '**no**'} |")
    held = sum(c.holds for c in results.checks)
    print(f"\n{held} of {len(results.checks)} choices held.")
    widths = " | ".join(f"at {d}" for d in results.dims)
    print(f"\n| column | kind | validation − held out, MRR@10 (mean over widths) | {widths} |\n"
          f"|---|---|---|{'---|' * len(results.dims)}")
    gaps = {}
    for column, entry in results.quality_columns().items():
        if column not in results.validation:
            continue
        on = results.validation[column].metrics
        each = [on[d][key] - entry.metrics[d][key] for d in results.dims]
        gap = float(np.mean(each))
        gaps[column] = gap
        print(f"| {entry.label} | {entry.component or entry.kind} | {gap:+.4f} | "
              + " | ".join(f"{g:+.3f}" for g in each) + " |")
    fine_tuned = [g for c, g in gaps.items() if results.models[c].kind == "model" and c != "base"]
    fitted = {c: g for c, g in gaps.items() if results.models[c].component == "adaptor"}
    if fine_tuned and fitted:
        reference = float(np.mean(fine_tuned))
        for column, gap in fitted.items():
            print(f"\n{results.models[column].label}: gap {gap:+.4f}, fine-tuned models' {reference:+.4f}: "
                  f"{gap - reference:+.4f} apart ({'within' if abs(gap - reference) <= 0.01 else 'beyond'} 0.01).")
    gates(results)


def gates(results) -> None:
    """Each adaptor's choices side by side with how it made them, and what held out says of them."""
    from mrl_plugins.evidence.decisions import adaptor_gates

    found = adaptor_gates(results)
    if not any(g.cross_validated for g in found):
        return
    head = " | ".join(f"{d}: chosen Δ / held-out Δ" for d in results.dims)
    print(f"\n| adaptor | chosen by | stopping epoch | {head} |\n|---|---|---|" + "---|" * len(results.dims))
    for gate in found:
        facts = results.models[gate.column].facts
        cells = [f"{'use' if d in gate.helps else 'no'} {gate.validation_delta[d]:+.3f} / {gate.held_out_delta[d]:+.3f}"
                 for d in results.dims]
        print(f"| {results.models[gate.column].label} | {gate.cross_validated or 'validation split'} | "
              f"{facts.get('epochs', '-')} | " + " | ".join(cells) + " |")
    # what each gate serves, held out: the adapted embedding where it says "use", else the model alone
    served = {g.column: {d: results.value(g.column if d in g.helps else g.model, d) for d in results.dims}
              for g in found}
    print("\nHeld-out MRR@10 of what each gate serves (the adapted embedding where it says use, else the model):\n")
    print("| adaptor | " + " | ".join(map(str, results.dims)) + " | mean |\n|---|" + "---|" * (len(results.dims) + 1))
    for gate in found:
        values = served[gate.column]
        print(f"| {results.models[gate.column].label} | " + " | ".join(f"{values[d]:.4f}" for d in results.dims)
              + f" | {np.mean(list(values.values())):.4f} |")
    for gate in found:
        twin = next((g for g in found if g is not gate and g.model == gate.model and not g.cross_validated), None)
        if gate.cross_validated and twin is not None:
            diff = {d: served[gate.column][d] - served[twin.column][d] for d in results.dims}
            print(f"\n{results.models[gate.column].label} − {results.models[twin.column].label} (validation split), "
                  "held out: " + ", ".join(f"{d}: {v:+.4f}" for d, v in diff.items()) + ".")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(RECIPES), default=["debian", "manpages", "docstrings"])
    parser.add_argument("--runs", nargs="+", type=Path, help="Finished run folders to read instead.")
    parser.add_argument("--cv-folds", type=int, default=0,
                        help="Add each adaptor's twin choosing by this many folds of cross-validation (0: none).")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    runs = args.runs or [run_dataset(name, args.cv_folds) for name in args.datasets]
    for run in runs:
        report(run)


if __name__ == "__main__":
    main()
