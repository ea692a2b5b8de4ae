"""The run report: a table per metric (dimension × model), what each dimension keeps, a plot.

The console table, ``report.md`` and ``metrics.png`` are all built from ``results.json`` through
:func:`table`, so they cannot disagree with it or with each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

KEEP = (0.95, 0.99)


def metric_names(results: dict[str, Any]) -> list[tuple[str, str]]:
    k = results.get("k", 10)
    return [(f"mrr@{k}", f"MRR@{k}"), (f"recall@{k}", f"Recall@{k}"), (f"ndcg@{k}", f"nDCG@{k}")]


def storage(dim: int, vectors: int = 1_000_000) -> str:
    """float32 storage of ``vectors`` embeddings of ``dim`` dimensions."""
    size = dim * 4 * vectors
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def retention(metrics: dict[str, dict[str, float]], dim: int, full: int, key: str) -> float | None:
    top = metrics[str(full)][key]
    return metrics[str(dim)][key] / top if top else None


def smallest_dim_keeping(metrics: dict[str, dict[str, float]], dims: list[int], key: str, share: float) -> int | None:
    """The smallest dimension whose ``key`` is at least ``share`` of the full-dimension score."""
    full = metrics[str(dims[0])][key]
    keeping = [d for d in dims if full and metrics[str(d)][key] >= share * full]
    return min(keeping) if keeping else None


def table(results: dict[str, Any], key: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows for one metric: dim, storage, then ``value (retention)`` per model."""
    dims, columns = results["dims"], list(results["models"].values())
    header = ["dim", "float32 / 1M vectors", *(c["label"] for c in columns)]
    rows = []
    for d in dims:
        cells = [str(d), storage(d)]
        for c in columns:
            kept = retention(c["metrics"], d, dims[0], key)
            value = c["metrics"][str(d)][key]
            cells.append(f"{value:.4f} ({kept:.1%})" if kept is not None else f"{value:.4f}")
        rows.append(cells)
    return header, rows


def smallest_keeping(results: dict[str, Any], key: str) -> tuple[list[str], list[list[str]]]:
    """Per model: the smallest dimension keeping ≥ 95% and ≥ 99% of its own full-dimension score."""
    dims = results["dims"]
    header = ["model", *(f"smallest dim ≥ {share:.0%}" for share in KEEP), f"full-dim {key}"]
    rows = []
    for c in results["models"].values():
        kept = (smallest_dim_keeping(c["metrics"], dims, key, share) for share in KEEP)
        rows.append([c["label"], *(str(d) if d else "-" for d in kept), f"{c['metrics'][str(dims[0])][key]:.4f}"])
    return header, rows


def _plain(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return [fmt(header), *(fmt(r) for r in rows)]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def format_table(results: dict[str, Any]) -> str:
    """The console version of the report's tables."""
    full = results["dims"][0]
    lines = []
    for key, title in metric_names(results):
        lines += [f"{title}  (value and retention vs. the same model's {full}-dim score)", *_plain(*table(results, key)), ""]
    key, title = metric_names(results)[0]
    lines += [f"Smallest dimension keeping {title}", *_plain(*smallest_keeping(results, key))]
    return "\n".join(lines) + "\n"


def report_markdown(results: dict[str, Any]) -> str:
    data, model = results["data"], results["model"]
    lines = [
        f"# {results['name']}: retrieval quality per embedding dimension",
        "",
        f"Base model `{model['name']}` ({model['full_dim']} dims), data source `{data['source']}`: "
        f"{data['train_rows']} training rows ({data['row_format']}), {data['eval_queries']} held-out queries "
        f"against {data['corpus']} documents. Truncated vectors are re-normalised; retention is the share of "
        "the same model's own full-dimension score. PCA comparisons are fitted on training-side documents "
        "unless their label says otherwise.",
        "",
        "![metrics per dimension](metrics.png)",
        "",
    ]
    for key, title in metric_names(results):
        lines += [f"## {title}", "", *markdown_table(*table(results, key)), ""]
    key, title = metric_names(results)[0]
    lines += [f"## Smallest dimension keeping {title}", "", *markdown_table(*smallest_keeping(results, key)), ""]
    return "\n".join(lines)


def plot_metrics(results: dict[str, Any], path: Path) -> None:
    """metric versus dimension, one line per model or method, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = sorted(results["dims"])
    names = metric_names(results)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.2), constrained_layout=True)
    for ax, (key, title) in zip(axes, names):
        for c in results["models"].values():
            ax.plot(dims, [c["metrics"][str(d)][key] for d in dims], marker="o", label=c["label"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.set_xlabel("embedding dimensions")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[-1].legend(loc="lower right", fontsize="small")
    fig.suptitle(f"{results['name']}: {results['model']['name']} on {results['data']['source']}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
