"""What a sweep writes beside its trials: ``trials.csv``, ``sweep.md``, Optuna's plots and the
best trial's recipe.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..recipe.schema import apply_override, read_toml
from .study import Sweep, assignments, decoded

BEST_MARK = "# written by mrl-run sweep"


# -- what the sweep writes -----------------------------------------------------------------------
def trials_table(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
            else None
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     **{f"params.{k}": v for k, v in t.params.items()},
                     "seconds": round(seconds, 1) if seconds is not None else None,
                     "folder": t.user_attrs.get("folder", ""), "error": t.user_attrs.get("error", "")})
    return rows


def write_outputs(sweep: Sweep, study: Any) -> dict[str, Any]:
    """trials.csv, sweep.md, the two plots, and the best recipe; returns the best trial's params."""
    rows = trials_table(study)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (sweep.folder / "trials.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserError(f"sweep '{study.study_name}': no trial finished ({len(rows)} pruned or failed; see "
                        f"{sweep.folder / 'trials.csv'} for their messages). Fix the cause and run the sweep again, "
                        "with more --trials.")
    plots = write_plots(sweep, study)
    best = decoded(study.best_trial.params, sweep.settings.space)
    best_recipe = write_best_recipe(sweep, best)
    sweep.folder.joinpath("sweep.md").write_text(sweep_markdown(sweep, study, rows, plots, best_recipe),
                                                 encoding="utf-8")
    return best


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


def write_best_recipe(sweep: Sweep, params: dict[str, Any]) -> Path:
    """The recipe with the best trial's values, beside the original (its relative paths hold there).
    A file of that name that this command did not write is never replaced."""
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
              f"# ({', '.join(assignments(params))}); the sweep's final run scored it on the evaluation set.\n")
    target.write_text(header + tomli_w.dumps(raw), encoding="utf-8")
    return target


def sweep_markdown(sweep: Sweep, study: Any, rows: list[dict[str, Any]], plots: dict[str, str], best: Path) -> str:
    s = sweep.settings
    dims = ", ".join(map(str, s.dims)) if s.dims else "every width"
    lines = [f"# Sweep '{study.study_name}'", "",
             f"Objective: validation {s.metric} of column `{s.column}` at {dims} (weights "
             f"{s.weights or 'equal'}), maximised by {s.sampler} sampling with {s.pruner} pruning; storage "
             f"`{sweep.storage_url}`. No trial scored the evaluation set.", "",
             f"Best: trial {study.best_trial.number}, validation {study.best_value:.4f}, "
             f"{', '.join(assignments(decoded(study.best_params, s.space)))}. Its recipe: `{best}`.", ""]
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
