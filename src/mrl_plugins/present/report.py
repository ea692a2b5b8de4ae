"""The run report: a table per metric (dimension × model), what each dimension keeps, what
each search configuration costs, and plots.

The console tables, ``report.md``, ``metrics.png``, ``costs.png`` and ``scaling.png`` are all built from one
:class:`~mrl_plugins.results.RunResults`, so they cannot disagree with ``results.json`` or with
each other. The per-metric tables and ``metrics.png`` show the run's models and the quality
comparisons (PCA, …); search configurations (``funnel``, ``quantize``) are in the
quality-versus-cost table and ``costs.png`` instead, next to each model's plain truncation,
with their memory and query time: one funnel alone adds a column per shortlist size, which
would make the per-metric tables too wide to read.
"""

from __future__ import annotations

from pathlib import Path

from ..evaluation.metrics import METRICS
from ..evidence.decisions import operating_points, pareto_front
from ..evidence.results import PRIMARY, RunResults
from ..evidence.rundir import METRICS_PLOT
from .render import console, markdown
from .scaling import SCALING_PLOT, plot_scaling
from .sections import report_sections, title
from .tasks import TASKS_PLOT, plot_tasks


def shown(results: RunResults) -> RunResults:
    """What a report shows in its tables: the evaluation columns; for a sweep's trial, which
    scored only its validation split, those (its first section says so)."""
    if results.trial is None or results.models:
        return results
    return results.model_copy(update={"models": dict(results.validation)})


def format_table(results: RunResults) -> str:
    """The console version of the report: every section, as the console renders it."""
    return console(report_sections(shown(results)))


def report_markdown(results: RunResults) -> str:
    data, model = results.data, results.model
    lines = [
        f"# {results.name}: retrieval quality per embedding dimension",
        "",
        f"Base model `{model.name}` ({model.full_dim} dims), data source `{data.source}`: "
        f"{data.train_rows} training rows ({data.row_format}), {data.eval_queries} held-out queries "
        f"against {data.corpus} documents. Truncated vectors are re-normalised; retention is the share of "
        "the same model's own full-dimension score. PCA comparisons are fitted on training-side documents "
        "unless their label says otherwise.",
        "",
        f"![metrics per dimension]({METRICS_PLOT})",
        "",
    ]
    lines += markdown(report_sections(results))
    return "\n".join(lines)


def plot_metrics(results: RunResults, path: Path) -> None:
    """metric versus dimension, one line per model or method, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = sorted(results.dims)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4.2), constrained_layout=True)
    for ax, metric in zip(axes, METRICS):
        for key, m in results.quality_columns().items():
            ax.plot(dims, [results.value(key, d, metric) for d in dims], marker="o", label=m.label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.set_xlabel("embedding dimensions")
        ax.set_title(title(results, metric))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[-1].legend(loc="lower right", fontsize="small")
    fig.suptitle(f"{results.name}: {results.model.name} on {results.data.source}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_costs(results: RunResults, path: Path) -> None:
    """MRR@k against memory per vector (log scale), one line per search configuration; the
    points on the Pareto front ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = operating_points(results)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    for label in dict.fromkeys(r.label for r in rows):
        points = sorted((r.index_bytes, r.value, r.dim) for r in rows if r.label == label)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    front = pareto_front(results)
    if front:
        ax.scatter([p.index_bytes for p in front], [p.value for p in front], s=160, facecolors="none",
                   edgecolors="black", linewidths=1.2, label="Pareto front (quality, recall, memory, time)", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("bytes per vector held in memory (log scale)")
    ax.set_ylabel(f"{PRIMARY.title}@{results.k}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="x-small", loc="lower right")
    ax.set_title(f"{results.name}: quality versus memory, one point per dimension")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(folder: Path, results: RunResults) -> None:
    """``report.md`` and ``metrics.png`` (and ``costs.png`` when search costs were measured)."""
    import os

    from ..evidence.rundir import RunDir

    run, results = RunDir(folder), shown(results)
    temporary = lambda final: final.with_name(f".{final.stem}.tmp{final.suffix}")  # noqa: E731
    staged = {run.report_file: temporary(run.report_file)}
    try:
        text = report_markdown(results)  # everything rendered before any file of the run is replaced
        staged[run.report_file].write_text(text, encoding="utf-8")
        staged[run.metrics_plot] = temporary(run.metrics_plot)
        plot_metrics(results, staged[run.metrics_plot])
        if results.search_columns():
            staged[run.costs_plot] = temporary(run.costs_plot)
            plot_costs(results, staged[run.costs_plot])
        scaling = run.path / SCALING_PLOT
        staged[scaling] = temporary(scaling)
        if not plot_scaling(results, staged[scaling]):
            del staged[scaling]
        tasks = run.path / TASKS_PLOT
        staged[tasks] = temporary(tasks)
        if not plot_tasks(results, staged[tasks]):
            del staged[tasks]
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    for final, tmp in staged.items():
        os.replace(tmp, final)
