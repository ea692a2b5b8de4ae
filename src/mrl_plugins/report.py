"""The run report: a table per metric (dimension × model), what each dimension keeps, what
each search configuration costs, and plots.

The console tables, ``report.md``, ``metrics.png`` and ``costs.png`` are all built from one
:class:`~mrl_plugins.results.RunResults`, so they cannot disagree with ``results.json`` or with
each other. The per-metric tables and ``metrics.png`` show the run's models and the quality
comparisons (PCA, …); search configurations (``funnel``, ``quantize``) are in the
quality-versus-cost table and ``costs.png`` instead, next to each model's plain truncation,
with their memory and query time: one funnel alone adds a column per shortlist size, which
would make the per-metric tables too wide to read.
"""

from __future__ import annotations

from pathlib import Path

from .evidence.decisions import OperatingPoint, cheapest, operating_points
from .evidence.results import KEEP_SHARES, METRICS, PRIMARY, Metric, RunResults, share_label
from .run_models import MRL


def storage(dim: int, vectors: int = 1_000_000) -> str:
    """float32 storage of ``vectors`` embeddings of ``dim`` dimensions."""
    size = dim * 4 * vectors
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def table(results: RunResults, metric: Metric) -> tuple[list[str], list[list[str]]]:
    """Header and rows for one metric: dim, storage, then ``value (retention)`` per column."""
    columns = results.quality_columns()
    header = ["dim", "float32 / 1M vectors", *(m.label for m in columns.values())]
    rows = []
    for d in results.dims:
        cells = [str(d), storage(d)]
        for key in columns:
            value, kept = results.value(key, d, metric), results.retention(key, d, metric)
            cells.append(f"{value:.4f} ({kept:.1%})" if kept is not None else f"{value:.4f}")
        rows.append(cells)
    return header, rows


def smallest_keeping(results: RunResults, metric: Metric = PRIMARY) -> tuple[list[str], list[list[str]]]:
    """Per column: the smallest dimension keeping each share of its own full-dimension score."""
    shares = sorted(KEEP_SHARES)
    header = ["model", *(f"smallest dim ≥ {share_label(s)}" for s in shares), f"full-dim {metric.key(results.k)}"]
    rows = []
    for key, m in results.quality_columns().items():
        kept = (results.smallest_dim_keeping(key, s, metric) for s in shares)
        rows.append([m.label, *(str(d) if d else "-" for d in kept),
                     f"{results.value(key, results.full_dim, metric):.4f}"])
    return header, rows


def _plain(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return [fmt(header), *(fmt(r) for r in rows)]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def title(results: RunResults, metric: Metric) -> str:
    return f"{metric.title}@{results.k}"


# -- quality versus cost ----------------------------------------------------------------------
def cost_table(results: RunResults) -> tuple[list[str], list[list[str]]]:
    k = results.k
    header = ["method", "dim", f"MRR@{k}", "kept", f"nDCG@{k}", f"overlap@{k}", "RAM B/vector", "rerank B/vector",
              "time × (1 query)", "time × (batch)"]
    rows = [[r.label, str(r.dim), f"{r.value:.4f}", f"{r.kept:.1%}", f"{r.ndcg:.4f}",
             "-" if r.overlap is None else f"{r.overlap:.3f}", f"{r.index_bytes:,.0f}",
             f"{r.rerank_bytes:,.0f}" if r.rerank_bytes else "-", f"{r.ratio_single:.2f}", f"{r.ratio_batch:.2f}"]
            for r in operating_points(results)]
    return header, rows


def describe(row: OperatingPoint, results: RunResults) -> str:
    """A configuration in one sentence, with what it keeps and what it costs."""
    exact_bytes = results.full_dim * 4
    rerank = (f"; the {row.rerank_bytes:,.0f}-byte vectors it reranks with are read for the shortlist only and "
              "can stay on disk" if row.rerank_bytes else "")
    return (f"{row.label} at {row.dim} dims: {row.kept:.1%} of exact {PRIMARY.title}@{results.k} "
            f"({row.value:.4f}), {row.index_bytes:,.0f} bytes per vector in memory "
            f"({row.index_bytes / exact_bytes:.1%} of exact {results.full_dim}-dim float32{rerank}), "
            f"{row.ratio_single:.2f}× its query time one query at a time, {row.ratio_batch:.2f}× in a batch")


def recommendations(results: RunResults) -> list[str]:
    """One line per threshold: the cheapest configuration by memory and by time (once if the same)."""
    lines = []
    for share in sorted(KEEP_SHARES, reverse=True):
        by_memory, by_time = cheapest(results, share, "memory"), cheapest(results, share, "time")
        if by_memory is None or by_time is None:
            lines.append(f"Cheapest keeping ≥ {share_label(share)}: none of the configurations measured.")
        elif by_memory == by_time:
            lines.append(f"Cheapest keeping ≥ {share_label(share)} by memory and by time: "
                         f"{describe(by_memory, results)}.")
        else:
            lines.append(f"Cheapest keeping ≥ {share_label(share)} by memory: {describe(by_memory, results)}.")
            lines.append(f"Cheapest keeping ≥ {share_label(share)} by time: {describe(by_time, results)}.")
    return lines


COST_NOTE = (
    "Memory is what the shortlist index holds in RAM per vector; a funnel also reads the full vectors of its "
    "shortlist to rerank (rerank B/vector), which can stay on disk. Query times are ratios to exact "
    "full-dimension float32 search measured side by side in this run (lower is faster); kept is the share of "
    "the exact full-dimension score of the model searched. On a small corpus every search is fast and the "
    "ratios are dominated by fixed costs: measure at scale (benchmarks/bench_search.py) before trusting them."
)


# -- uncertainty ------------------------------------------------------------------------------
def uncertainty_table(results: RunResults, metric: Metric = PRIMARY) -> tuple[list[str], list[list[str]]] | None:
    """Per column and dimension: the value, its 95% interval, and its difference from MRL, marked
    ``*`` when the paired test finds it significant (p < 0.05) and ``≈`` when it does not."""
    from .stats import ALPHA

    columns = {k: m for k, m in results.models.items() if m.intervals}
    if not columns:
        return None
    header = ["column", *(f"{d} dims" for d in results.dims)]
    rows = []
    for key, m in columns.items():
        cells = [m.label]
        for d in results.dims:
            interval = results.interval(key, d, metric)
            assert interval is not None  # the columns of this table have intervals
            low, high = interval
            cell = f"{results.value(key, d, metric):.3f} [{low:.3f}, {high:.3f}]"
            p = results.p_value(key, d, metric)
            if key != MRL and p is not None and MRL in results.models:
                delta = results.value(key, d, metric) - results.value(MRL, d, metric)
                cell += f" {delta:+.3f} {'*' if p < ALPHA else '≈'}"
            cells.append(cell)
        rows.append(cells)
    return header, rows


def without_intervals(results: RunResults) -> str | None:
    """A line naming the columns the uncertainty table leaves out: a comparison plugin that returned
    its own means, without per-query scores, cannot be given intervals or tests."""
    if not any(m.intervals for m in results.models.values()):
        return None
    why: dict[str, list[str]] = {}
    for m in results.models.values():
        if not m.intervals:
            why.setdefault(m.no_intervals or "computed without per-query scores (a comparison that returns its own "
                           "means rather than scoring through the run's scorer)", []).append(m.label)
    if not why:
        return None
    return " ".join(f"No intervals or tests for {', '.join(labels)}: {reason}." for reason, labels in why.items())


UNCERTAINTY_NOTE = (
    "95% bootstrap intervals over the evaluation queries; after each interval, the difference from the MRL "
    "model at that width, marked * when a paired sign-flip test over the same queries finds it significant "
    "(p < 0.05) and ≈ when it does not. Every number is one training run: see the seeds table, when there is "
    "one, for how much another seed moves them."
)


def seeds_table(results: RunResults, metric: Metric = PRIMARY) -> tuple[list[str], list[list[str]]] | None:
    from .stats import mean_sd

    runs = results.seed_columns()
    if not runs:
        return None
    header = ["dim", f"mean ± sd over {len(runs)} seeds", *(m.label for m in runs)]
    rows = []
    for d in results.dims:
        values = [m.metrics[d][metric.key(results.k)] for m in runs]
        mean, sd = mean_sd(values)
        rows.append([str(d), f"{mean:.4f} ± {sd:.4f}", *(f"{v:.4f}" for v in values)])
    return header, rows


def saved_models(results: RunResults) -> list[tuple[str, str]]:
    """(label, path in the output folder) of each model a comparison saved (the adaptor's)."""
    return [(column.label, column.saved_model) for column in results.models.values() if column.saved_model]


SAVED_NOTE = "Models saved by comparisons (publish one with `mrl-run publish OUTPUT_DIR --model PATH`):"


def speed_lines(results: RunResults) -> list[str]:
    """One line with the columns that measured their CPU encoding speed (``encode_speedup``)."""
    from .evidence.results import ENCODE_SPEEDUP

    found = [(m.label, m.metrics[results.full_dim][ENCODE_SPEEDUP]) for m in results.models.values()
             if ENCODE_SPEEDUP in m.metrics[results.full_dim]]
    if not found:
        return []
    parts = ", ".join(f"{label} {ratio:.2f}×" for label, ratio in found)
    return [f"CPU encoding speed, documents per second as a ratio to torch float32 measured in this run: {parts} "
            "(the same at every width: truncation comes after the model)."]


def format_table(results: RunResults) -> str:
    """The console version of the report's tables."""
    lines = []
    for metric in METRICS:
        lines += [f"{title(results, metric)}  (value and retention vs. the same model's {results.full_dim}-dim score)",
                  *_plain(*table(results, metric)), ""]
    lines += [f"Smallest dimension keeping {title(results, PRIMARY)}", *_plain(*smallest_keeping(results))]
    lines += ["", *speed_lines(results)] if speed_lines(results) else []
    if results.search_columns():
        lines += ["", "Quality versus cost (search configurations; see report.md)", *_plain(*cost_table(results)),
                  "", *recommendations(results)]
    uncertainty = uncertainty_table(results)
    if uncertainty:
        lines += ["", f"{title(results, PRIMARY)} with 95% intervals; vs MRL: * significant, ≈ not (paired test)",
                  *_plain(*uncertainty), *filter(None, [without_intervals(results)])]
    seeds = seeds_table(results)
    if seeds:
        lines += ["", f"{title(results, PRIMARY)} of MRL across training seeds", *_plain(*seeds)]
    if saved_models(results):
        lines += ["", SAVED_NOTE.replace("`", ""), *(f"  {label}: {path}" for label, path in saved_models(results))]
    return "\n".join(lines) + "\n"


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
        "![metrics per dimension](metrics.png)",
        "",
    ]
    for metric in METRICS:
        lines += [f"## {title(results, metric)}", "", *markdown_table(*table(results, metric)), ""]
    lines += [f"## Smallest dimension keeping {title(results, PRIMARY)}", "",
              *markdown_table(*smallest_keeping(results)), ""]
    if speed_lines(results):
        lines += ["## Encoding speed", "", *speed_lines(results), ""]
    if results.search_columns():
        lines += ["## Quality versus cost", "", COST_NOTE, "", "![quality versus memory](costs.png)", "",
                  *markdown_table(*cost_table(results)), "", *(f"- {r}" for r in recommendations(results)), ""]
    uncertainty = uncertainty_table(results)
    if uncertainty:
        lines += [f"## Which differences are real ({title(results, PRIMARY)})", "", UNCERTAINTY_NOTE, "",
                  *markdown_table(*uncertainty), ""]
        missing = without_intervals(results)
        if missing:
            lines += [missing, ""]
    seeds = seeds_table(results)
    if seeds:
        lines += [f"## Across training seeds ({title(results, PRIMARY)} of MRL)", "", *markdown_table(*seeds), ""]
    if saved_models(results):
        lines += ["## Saved models", "", SAVED_NOTE, "",
                  *(f"- {label}: `{path}`" for label, path in saved_models(results)), ""]
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
    """MRR@k against memory per vector (log scale), one line per search configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = operating_points(results)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    for label in dict.fromkeys(r.label for r in rows):
        points = sorted((r.index_bytes, r.value, r.dim) for r in rows if r.label == label)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
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

    from .evidence.rundir import RunDir

    run = RunDir(folder)
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
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    for final, tmp in staged.items():
        os.replace(tmp, final)
