"""What a sweep writes beside its trials: ``trials.csv``, ``sweep.md``, Optuna's plots and the
best trial's recipe.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..evidence.results import RunResults
from ..evidence.rundir import RunDir
from ..evidence.stats import paired_p_value
from ..recipe.schema import apply_override, read_toml
from .study import Sweep, assignments, decoded, recipe_values, values_at

NOISE_P = 0.05
"""A trial replaces the recipe as written only when it beats it on validation with p below this."""

BEST_MARK = "# written by mrl-run sweep"


# -- what the sweep writes -----------------------------------------------------------------------
def trials_table(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
            else None
        rows.append({"number": t.number, "baseline": bool(t.user_attrs.get("baseline")), "state": t.state.name,
                     "value": t.value,
                     **{f"params.{k}": v for k, v in t.params.items()},
                     "seconds": round(seconds, 1) if seconds is not None else None,
                     "folder": t.user_attrs.get("folder", ""), "error": t.user_attrs.get("error", "")})
    return rows


@dataclass(frozen=True)
class Choice:
    """What the sweep chose: the best trial, or the baseline (the recipe as written) when no trial
    beats it on validation beyond noise (the margin rule of a run's own choices, issue #36)."""

    trial: Any
    """The chosen trial (Optuna's ``FrozenTrial``)."""
    params: dict[str, Any]
    """Its values as the recipe takes them (the baseline's: the recipe's own, read from its run)."""
    best: Any
    """The trial with the best validation objective."""
    p: float | None
    """The paired test of the best trial against the baseline (``None``: none made), uncorrected."""
    note: str
    """The choice in words (why the baseline was kept, or what beat it)."""
    p_adjusted: float | None = None
    """``p`` times the trials the best was picked from (Bonferroni), at most 1: what the rule compares
    with :data:`NOISE_P`."""
    searched: int = 0
    """Finished trials besides the baseline: the best was picked from these."""
    baseline: int | None = None
    """The number of the trial the best was weighed against: the baseline trial, or on a grid the
    point with the recipe's own values (``None``: none)."""


def trial_values(sweep: Sweep, trial: Any) -> dict[str, Any]:
    """A trial's values of the space's keys as the recipe takes them; the baseline's are the
    recipe's own, read from its run folder (keys the recipe leaves unset are left out)."""
    if trial.user_attrs.get("baseline"):
        found = recipe_values(Path(trial.user_attrs.get("folder", "")), sweep.settings.space) or {}
        return {k: v for k, v in found.items() if v is not None}
    return decoded(trial.params, sweep.settings.space)


def per_query(sweep: Sweep, trial: Any) -> np.ndarray | None:
    """The objective per validation query (the weighted mean of the primary metric at the sweep's
    widths), from the trial's ``results.json``; ``None`` where it was not kept."""
    try:
        results = RunResults.load(RunDir(Path(trial.user_attrs.get("folder", ""))).results_file)
    except Exception:
        return None
    scores = results.validation_scores.get(sweep.settings.column, {})
    dims, weights = sweep.widths(scores)
    if not dims or any(d not in scores for d in dims):
        return None
    stacked = np.asarray([scores[d] for d in dims], dtype=np.float64)
    return np.asarray(weights, dtype=np.float64) @ stacked / float(sum(weights))


def choose(sweep: Sweep, study: Any) -> Choice:
    """The best trial, unless the baseline (the recipe as written) is within noise of it: then the
    recipe's own values are kept, as a run keeps the simpler option. One paired test of the best
    trial against the baseline, corrected for the trials it was picked from (Bonferroni: ``p``
    times the finished trials besides the baseline, the chance that any of them leads by as much
    when none is better): the best of twenty is picked for its lead, so its own p is optimistic.
    Bonferroni is conservative when trials are alike (neighbouring learning rates lead together),
    so a real but small gain found late in a long sweep may be kept out; pruned trials are not
    counted (they were stopped, never candidates). The final run's held-out scores are the check.

    A grid has no baseline trial of its own; there the grid point whose values are the recipe's
    own (when the choices include them) is the baseline."""
    from optuna.trial import TrialState

    best = study.best_trial
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    base = next((t for t in complete if t.user_attrs.get("baseline")), None)
    if base is None and sweep.settings.sampler == "grid":
        own = values_at(sweep.recipe.resolved(), sweep.settings.space)
        base = next((t for t in complete if decoded(t.params, sweep.settings.space) == own), None)
    searched = len(complete) - (base is not None)

    def chosen(trial: Any, p: float | None, note: str, adjusted: float | None = None) -> Choice:
        return Choice(trial, trial_values(sweep, trial), best, p, note, adjusted, searched,
                      base.number if base is not None else None)

    if base is None:
        why = ("no baseline trial finished" if sweep.settings.baseline and sweep.settings.sampler != "grid" else
               "no grid point has the recipe's own values" if sweep.settings.sampler == "grid" else
               "no baseline trial ran ([sweep] baseline = false)")
        return chosen(best, None, f"the best trial; {why}, so it was not weighed against the recipe as written")
    if best.number == base.number:
        return chosen(base, None, "the recipe as written is the best trial")
    a, b = per_query(sweep, best), per_query(sweep, base)
    delta = best.value - base.value
    if sweep.settings.metric != "mrr" or a is None or b is None or len(a) != len(b):
        return chosen(best, None, f"the best trial, {delta:+.4f} over the recipe as written (trial {base.number}; no "
                                  "paired test: per-query scores are kept for MRR@k only)")
    p = paired_p_value(a, b)
    adjusted = min(1.0, p * searched)
    test = (f"p = {p:.3f}" if searched == 1 else
            f"p = {p:.3f}, {adjusted:.3f} for being the best of {searched} trials (Bonferroni)")
    if adjusted < NOISE_P:
        return chosen(best, p, f"trial {best.number} beats the recipe as written (trial {base.number}) by "
                               f"{delta:+.4f} on validation, beyond noise ({test})", adjusted)
    return chosen(base, p, f"trial {best.number} leads the recipe as written (trial {base.number}) by {delta:+.4f} "
                           f"on validation, within noise ({test}): the recipe's own values are kept", adjusted)


def write_outputs(sweep: Sweep, study: Any) -> Choice:
    """trials.csv, sweep.md, the two plots, and the chosen recipe (:func:`choose`)."""
    from optuna.trial import TrialState

    rows = trials_table(study)
    choice = choose(sweep, study) if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None
    for row in rows:  # on a grid, the point with the recipe's own values is the baseline
        row["baseline"] = row["baseline"] or (choice is not None and row["number"] == choice.baseline)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (sweep.folder / "trials.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    if choice is None:
        raise UserError(f"sweep '{study.study_name}': no trial finished ({len(rows)} pruned or failed; see "
                        f"{sweep.folder / 'trials.csv'} for their messages). Fix the cause and run the sweep again, "
                        "with more --trials.")
    plots = write_plots(sweep, study)
    best_recipe = write_best_recipe(sweep, choice.params, choice.note)
    sweep.folder.joinpath("sweep.md").write_text(sweep_markdown(sweep, study, rows, plots, best_recipe, choice),
                                                 encoding="utf-8")
    return choice


def write_plots(sweep: Sweep, study: Any) -> dict[str, str]:
    """Optuna's importance and parallel-coordinate plots (matplotlib); why not, when one cannot be made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as views

    made: dict[str, str] = {}
    for name, draw in (("importance.png", views.plot_param_importances),
                       ("parallel-coordinate.png", views.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():  # both are "experimental" in Optuna's matplotlib backend
                warnings.simplefilter("ignore")
                axes = draw(study)
            figure = getattr(axes, "figure", None) or plt.gcf()
            figure.savefig(sweep.folder / name, dpi=110, bbox_inches="tight")
            plt.close("all")
            made[name] = "written"
        except Exception as exc:  # too few finished trials, or a space with one value
            made[name] = f"not drawn: {exc}"
    return made


def write_best_recipe(sweep: Sweep, params: dict[str, Any], why: str = "") -> Path:
    """The recipe with the chosen trial's values, beside the original (its relative paths hold
    there). A file of that name that this command did not write is never replaced."""
    import tomli_w

    path = sweep.recipe.path
    target = path.with_name(f"{path.stem}.sweep-best.toml")
    if target.exists() and not target.read_text(encoding="utf-8").startswith(BEST_MARK):
        raise UserError(f"{target}: exists and was not written by mrl-run sweep; move it away (nothing was "
                        "overwritten). The best values are in the sweep's sweep.md.")
    raw = read_toml(path)
    for assignment in [*sweep.recipe.overrides, *assignments(params)]:
        apply_override(raw, assignment)
    raw.pop("sweep", None)
    header = (f"{BEST_MARK} from {path.name}: trial values chosen on the validation split\n"
              f"# ({', '.join(assignments(params)) or 'the recipe as written'}); the sweep's final run scored it on "
              "the evaluation set.\n" + (f"# {why}.\n" if why else ""))
    target.write_text(header + tomli_w.dumps(raw), encoding="utf-8")
    return target


def sweep_markdown(sweep: Sweep, study: Any, rows: list[dict[str, Any]], plots: dict[str, str], best: Path,
                   choice: Choice) -> str:
    s = sweep.settings
    dims = ", ".join(map(str, s.dims)) if s.dims else "every width"
    lines = [f"# Sweep '{study.study_name}'", "",
             f"Objective: validation {s.metric} of column `{s.column}` at {dims} (weights "
             f"{s.weights or 'equal'}), maximised by {s.sampler} sampling with {s.pruner} pruning; storage "
             f"`{sweep.storage_url}`. No trial scored the evaluation set.", "",
             f"Best: trial {study.best_trial.number}, validation {study.best_value:.4f}, "
             f"{', '.join(assignments(trial_values(sweep, study.best_trial))) or 'the recipe as written'}.", "",
             f"Chosen: trial {choice.trial.number}: {choice.note}. Its recipe: `{best}`.", ""]
    header = [c for c in dict.fromkeys(k for row in rows for k in row) if c != "folder"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{v:.4f}" if isinstance(v, float) and c == "value" else str(v if v is not None else "")
                 for c, v in ((c, row.get(c)) for c in header)]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    lines.append("")
    for name, state in plots.items():
        lines.append(f"![{name}]({name})" if state == "written" else f"- {name}: {state}")
    return "\n".join(lines) + "\n"
