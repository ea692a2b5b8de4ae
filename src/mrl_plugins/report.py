"""The results table: each metric by dimension and model, with retention versus full dimension."""

from __future__ import annotations

from typing import Any


def retention(metrics: dict[str, dict[str, float]], dim: int, full: int, key: str) -> float | None:
    top = metrics[str(full)][key]
    return metrics[str(dim)][key] / top if top else None


def format_table(results: dict[str, Any]) -> str:
    """Plain-text table: a block per metric, rows = dimensions, columns = models and comparisons.

    Each cell is ``value (retention)``, retention being the share of the same model's own
    full-dimension score that the truncated vectors keep.
    """
    dims: list[int] = results["dims"]
    full = dims[0]
    k = results.get("k", 10)
    columns = list(results["models"].values())
    width = max(16, *(len(c["label"]) + 2 for c in columns))
    lines = []
    for metric in (f"mrr@{k}", f"recall@{k}", f"ndcg@{k}"):
        title = metric.replace("mrr", "MRR").replace("recall", "Recall").replace("ndcg", "nDCG")
        lines.append(f"{title}  (value and retention vs. the model's own {full}-dim score)")
        lines.append(f"{'dim':>6} " + "".join(f"{c['label']:>{width}}" for c in columns))
        for d in dims:
            cells = []
            for c in columns:
                value = c["metrics"][str(d)][metric]
                kept = retention(c["metrics"], d, full, metric)
                cells.append(f"{value:.4f} ({kept:6.1%})" if kept is not None else f"{value:.4f}")
            lines.append(f"{d:>6} " + "".join(f"{cell:>{width}}" for cell in cells))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
