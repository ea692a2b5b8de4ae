"""The run report: a table per metric (dimension × model), what each dimension keeps, a plot.

The console table, ``report.md`` and ``metrics.png`` are all built from one
:class:`~mrl_plugins.results.RunResults` through :func:`table`, so they cannot disagree with
``results.json`` or with each other.
"""

from __future__ import annotations

from pathlib import Path

from .results import KEEP_SHARES, METRICS, PRIMARY, Metric, RunResults, share_label


def storage(dim: int, vectors: int = 1_000_000) -> str:
    """float32 storage of ``vectors`` embeddings of ``dim`` dimensions."""
    size = dim * 4 * vectors
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def table(results: RunResults, metric: Metric) -> tuple[list[str], list[list[str]]]:
    """Header and rows for one metric: dim, storage, then ``value (retention)`` per column."""
    header = ["dim", "float32 / 1M vectors", *(m.label for m in results.models.values())]
    rows = []
    for d in results.dims:
        cells = [str(d), storage(d)]
        for key in results.models:
            value, kept = results.value(key, d, metric), results.retention(key, d, metric)
            cells.append(f"{value:.4f} ({kept:.1%})" if kept is not None else f"{value:.4f}")
        rows.append(cells)
    return header, rows


def smallest_keeping(results: RunResults, metric: Metric = PRIMARY) -> tuple[list[str], list[list[str]]]:
    """Per column: the smallest dimension keeping each share of its own full-dimension score."""
    shares = sorted(KEEP_SHARES)
    header = ["model", *(f"smallest dim ≥ {share_label(s)}" for s in shares), f"full-dim {metric.key(results.k)}"]
    rows = []
    for key, m in results.models.items():
        kept = (results.smallest_dim_keeping(key, s, metric) for s in shares)
        rows.append([m.label, *(str(d) if d else "-" for d in kept), f"{results.value(key, results.full_dim, metric):.4f}"])
    return header, rows


def _plain(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return [fmt(header), *(fmt(r) for r in rows)]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def title(results: RunResults, metric: Metric) -> str:
    return f"{metric.title}@{results.k}"


def format_table(results: RunResults) -> str:
    """The console version of the report's tables."""
    lines = []
    for metric in METRICS:
        lines += [f"{title(results, metric)}  (value and retention vs. the same model's {results.full_dim}-dim score)",
                  *_plain(*table(results, metric)), ""]
    lines += [f"Smallest dimension keeping {title(results, PRIMARY)}", *_plain(*smallest_keeping(results))]
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
    lines += [f"## Smallest dimension keeping {title(results, PRIMARY)}", "", *markdown_table(*smallest_keeping(results)), ""]
    return "\n".join(lines)


def plot_metrics(results: RunResults, path: Path) -> None:
    """metric versus dimension, one line per model or method, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = sorted(results.dims)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4.2), constrained_layout=True)
    for ax, metric in zip(axes, METRICS):
        for key, m in results.models.items():
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


def write_report(folder: Path, results: RunResults) -> None:
    """``report.md`` and ``metrics.png`` in ``folder``."""
    (folder / "report.md").write_text(report_markdown(results), encoding="utf-8")
    plot_metrics(results, folder / "metrics.png")
