"""The report's sections for the ``[[task]]`` evaluations beyond retrieval (issue #39): per task,
its main metric per width for each model of the run, with its 95% interval, the share of the
model's own full-width score each width keeps, each trained model's difference from the base
model (``*`` significant in a paired bootstrap test, ``≈`` not), and the smallest width keeping
95% and 99% of it (with the interval of what it keeps). Measured on the task's own data; no
choice of the run rests on them (the report says so).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..evidence.results import BASE, KEEP_SHARES, RunResults, TaskResult, share_label
from ..evidence.stats import ALPHA
from .blocks import Section, Table

NAMES = {"spearman": "Spearman", "pearson": "Pearson", "accuracy": "accuracy", "f1": "macro-F1",
         "v_measure": "V-measure", "main_score": "main score",
         "mrr": "MRR", "recall": "Recall", "ndcg": "nDCG"}


TASKS_PLOT = "tasks.png"
"""One panel per task: its main metric against width for each model, with the intervals."""


def task_sections(results: RunResults) -> list[Section]:
    sections = [task_section(results, key, task) for key, task in results.tasks.items()]
    if sections:  # the plot of every task, under the first task's table
        sections[0] = replace(sections[0], image=("each task's main metric per width", TASKS_PLOT))
    return sections


def plot_tasks(results: RunResults, path: Path) -> bool:
    """Each task's main metric against width (log 2 scale) per model, with its 95% interval
    where the task gave replicates; ``False`` (no file) for a run without tasks."""
    if not results.tasks:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results.tasks)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 1, 4.2), constrained_layout=True, squeeze=False)
    dims = sorted(results.dims)
    for ax, task in zip(axes[0], results.tasks.values()):
        for m in task.scores:
            values = [task.scores[m][d][task.metric] for d in dims]
            found = task.intervals.get(m, {})
            if all(d in found for d in dims):
                low = [v - found[d][0] for v, d in zip(values, dims)]
                high = [found[d][1] - v for v, d in zip(values, dims)]
                ax.errorbar(dims, values, yerr=[low, high], marker="o", capsize=3, label=_label(results, m))
            else:
                ax.plot(dims, values, marker="o", label=_label(results, m))
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set_xlabel("dimensions")
        ax.set_ylabel(NAMES.get(task.metric, task.metric))
        ax.set_title(task.label, fontsize="small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle(f"{results.name}: beyond retrieval, per width (95% intervals)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _label(results: RunResults, model: str) -> str:
    column = results.models.get(model) or results.validation.get(model)
    return column.label if column is not None else model


def task_section(results: RunResults, key: str, task: TaskResult) -> Section:
    metric, full = task.metric, results.full_dim
    name = NAMES.get(metric, metric)
    models = list(task.scores)
    rows = []
    for d in sorted(results.dims, reverse=True):
        cells = [str(d)]
        for m in models:
            value, top = task.scores[m][d][metric], task.scores[m][full][metric]
            cell = f"{value:.4f}"
            if d in task.intervals.get(m, {}):
                low, high = task.intervals[m][d]
                cell += f" [{low:.3f}, {high:.3f}]"
            if top:
                cell += f" ({value / top:.1%})"
            if d in task.versus_base.get(m, {}):
                versus = task.versus_base[m][d]
                cell += f" {versus.delta:+.3f} {'*' if versus.p < ALPHA else '≈'}"
            cells.append(cell)
        rows.append(cells)
    lines = []
    if task.intervals:
        lines.append("Each value with its 95% bootstrap interval over the task's items and (the share of the model's "
                     f"own {full}-dim score it keeps)" + ("; trained models' difference from the base model at the "
                                                          "same width, * significant in a paired bootstrap test "
                                                          "(p < 0.05), ≈ not" if task.versus_base else "") + ".")
    if task.validation:
        lines.append(f"The widths below are chosen on the task's validation part ({task.params.get('validation')} of "
                     "its items, drawn at random) with a margin: a width keeps a share only when a paired bootstrap "
                     "test over those items finds it above the share of the full width (p < 0.05); the table and "
                     "what each chosen width keeps are the rest, held out.")
    for m in models:
        top = task.scores[m][full][metric]
        kept = []
        for share in sorted(KEEP_SHARES, reverse=True):
            width = task.smallest_keeping(m, share)
            said = f"{width or 'no width'} keeps ≥ {share_label(share)}"
            if width and width != full and top:
                held = f"{task.scores[m][width][metric] / top:.1%}"
                if width in task.kept.get(m, {}):
                    low, high = task.kept[m][width]
                    held += f" [{low:.1%}, {high:.1%}]"
                on = task.validation.get(m)
                said += (f" on validation ({on[width] / on[full]:.1%}; held out {held})" if on and on[full]
                         else f" ({held})")
            choice = task.chosen.get(m, {}).get(share_label(share))
            if choice is not None and choice.p is not None:
                said += (f" ({choice.by_mean} keeps it on average on validation, within noise, p = {choice.p:.2f}: "
                         "the wider width is chosen)")
            kept.append(said)
        others = sorted({k for by in task.scores[m].values() for k in by} - {metric})
        extra = (f"; also {', '.join(NAMES.get(k, k) for k in others)} in results.json (tasks.{key})" if others
                 else "")
        lines.append(f"{_label(results, m)}: {full}-dim {name} {top:.4f}; {', '.join(kept)}{extra}.")
    params = ", ".join(f"{k} = {v}" for k, v in task.params.items() if k != "name")
    own = task.plugin and not task.plugin.startswith("mrl_plugins.")
    by = f" (plugin '{task.plugin}')" if own else ""
    lines.append(f"Task `{task.name}`{by}: {params}. Scored on the task's own data, every width from embeddings "
                 "encoded once (truncated, re-normalised); no choice of the run rests on it.")
    return Section(f"task:{key}", f"{task.label}: {name} per dimension",
                   console_title=f"{task.label}: {name} per dimension (value and retention vs. the same model's "
                                 f"{full}-dim score)",
                   table=Table(["dim", *(_label(results, m) + (" vs base" if m != BASE and m in task.versus_base
                                                               else "") for m in models)], rows), lines=lines)
