"""The report's sections on what serving costs: CPU encoding speed of the exported engines, and
quality versus memory and query time of every search configuration (with the Pareto front and
the recommendation). Split from :mod:`.sections` (quality, uncertainty, choices, training), which
puts them in the report's order. Like it, this module only words what
:mod:`mrl_plugins.evidence.decisions` returns.
"""

from __future__ import annotations

from ..evaluation.metrics import ENCODE_SPEEDUP
from ..evidence.decisions import OperatingPoint, basis, cheapest, operating_points, pareto_front
from ..evidence.results import KEEP_SHARES, MRL, PRIMARY, RunResults, share_label
from ..evidence.rundir import COSTS_PLOT
from .blocks import Section, Table


def speed(results: RunResults) -> Section | None:
    """The columns that measured their CPU encoding speed (``encode_speedup``): per width, the share
    of the torch model's full-width score each keeps, its speed, and per engine the line a user acts
    on: the smallest width keeping ≥ 95% of the torch model's full-width score, and what it buys."""
    found = [m for m in results.models.values() if ENCODE_SPEEDUP in m.metrics[results.full_dim]]
    if not found:
        return None
    metric, full, k = PRIMARY, results.full_dim, results.k
    rows, lines = [], []
    for m in found:
        source = m.reads[0] if m.reads and m.reads[0] in results.models else MRL
        top = results.value(source, full, metric)
        ratio = m.metrics[full][ENCODE_SPEEDUP]
        kept = {d: m.metrics[d][metric.key(k)] / top if top else 0.0 for d in results.dims}
        rows.append([m.label, *(f"{kept[d]:.1%}" for d in results.dims), f"{ratio:.2f}×"])
        enough = [d for d in results.dims if kept[d] >= 0.95]
        if enough:
            d = min(enough)
            lines.append(f"{m.label} at {d} dimensions: {kept[d]:.1%} of {results.models[source].label}'s full-width "
                         f"{metric.title}@{k} at {ratio:.2f}× its CPU encoding speed.")
        else:
            lines.append(f"{m.label}: no width keeps 95% of {results.models[source].label}'s full-width "
                         f"{metric.title}@{k} ({kept[full]:.1%} at {full}); {ratio:.2f}× its CPU encoding speed.")
    header = ["engine", *(f"kept at {d}" for d in results.dims), "docs/s × torch fp32"]
    lines.append("Kept: the share of the torch float32 model's full-width score; speed: documents per second as a "
                 "ratio to torch float32, measured in this run on this machine (the same at every width: truncation "
                 "comes after the model). Both on the held-out evaluation set.")
    return Section("speed", "Encoding speed", lines=lines, table=Table(header, rows), bullets=True)


# -- quality versus cost -------------------------------------------------------------------------
COST_NOTE = (
    "Memory is what the shortlist index holds in RAM per vector; a funnel also reads the full vectors of its "
    "shortlist to rerank (rerank B/vector: float32, or int8 codes), which can stay on disk. Query times are ratios "
    "to exact full-dimension float32 search measured side by side in this run (lower is faster); kept is the share "
    "of the exact full-dimension score of the model searched, and recall vs exact the share of the exact "
    "full-width top k each configuration returns (the two can tell different stories: a shortlist can keep the "
    "score while returning other documents). Rows at the full width that are not exact search are the baselines "
    "without truncation (binary codes + int8 rescore, HNSW); ◆ marks the Pareto front, the configurations no other "
    "beats on quality, recall, memory and time at once. On a small corpus every search is fast and the ratios are "
    "dominated by fixed costs: measure at scale (benchmarks/bench_search.py) before trusting them."
)


def cost_table(results: RunResults) -> Table:
    k = results.k
    front = {(p.column, p.dim) for p in pareto_front(results)}
    header = ["method", "dim", f"MRR@{k}", "kept", f"nDCG@{k}", f"recall@{k} vs exact", "RAM B/vector",
              "rerank B/vector", "time × (1 query)", "p50 / p95 ms (1 query)", "time × (batch)", "front"]
    rows = [[r.label, str(r.dim), f"{r.value:.4f}", f"{r.kept:.1%}", f"{r.ndcg:.4f}",
             "-" if r.overlap is None else f"{r.overlap:.3f}", f"{r.index_bytes:,.0f}",
             f"{r.rerank_bytes:,.0f}" if r.rerank_bytes else "-", f"{r.ratio_single:.2f}", milliseconds(r),
             f"{r.ratio_batch:.2f}", "◆" if (r.column, r.dim) in front else ""]
            for r in operating_points(results)]
    return Table(header, rows)


def milliseconds(point: OperatingPoint) -> str:
    """``0.041 / 0.063``: the median and 95th percentile of one query at a time, as measured (the
    ratios are what compares across machines; these say what a user waits)."""
    if point.ms_single is None:
        return "-"
    return f"{point.ms_single:.3f} / " + ("-" if point.ms_single_p95 is None else f"{point.ms_single_p95:.3f}")


def front_sentence(results: RunResults) -> str | None:
    """Whether truncation is on the Pareto front of the set choices are made on, in one sentence;
    ``None`` when the run measured no search configuration."""
    on = basis(results)
    front = pareto_front(on)
    if not front:
        return None
    where = "on validation" if results.chosen_on == "validation" else "on the evaluation set"
    full = results.full_dim
    if not any(p.truncates(full) for p in front):
        best = max(front, key=lambda p: (p.kept, -p.index_bytes))
        return (f"No configuration that truncates is on the Pareto front {where}: for this model and data every "
                f"truncated setting measured is beaten on quality, recall, memory and time at once by a full-width "
                f"one (such as {best.label} at {full} dims), so truncation does not pay here.")
    truncated = sorted({f"{p.label} at {p.dim}" for p in front if p.truncates(full)})
    shown = "; ".join(truncated[:4]) + (f"; and {len(truncated) - 4} more" if len(truncated) > 4 else "")
    return (f"Truncation pays {where}: {len(truncated)} of the {len(front)} configurations on the Pareto front "
            f"(quality, recall, memory, time) search fewer than {full} dimensions ({shown}).")


def timing_sentence(results: RunResults) -> str | None:
    """Which BLAS libraries, kernels and threads the query times were measured on."""
    columns = results.search_columns().values()
    timing = next((m.facts["timing"] for m in columns if m.facts.get("timing")), None)
    engines = sorted({engine_words(m.facts["engine"]) for m in columns if isinstance(m.facts.get("engine"), dict)})
    words = "; ".join([*([timing] if timing else []), *engines])
    return f"Timed on: {words}." if words else None


def engine_words(facts: dict) -> str:
    """An engine's facts as a run recorded them (``facts.engine`` of its columns), in words:
    ``pgvector: pgvector 0.8.6, postgresql 18.6, server embedded, m 16, …``."""
    name = str(facts.get("name", "engine"))
    return f"{name}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in facts.items() if k != "name")


def describe(row: OperatingPoint, results: RunResults) -> str:
    """A configuration in one sentence, with what it keeps and what it costs."""
    exact_bytes = results.full_dim * 4
    rerank = (f"; the {row.rerank_bytes:,.0f}-byte vectors it reranks with are read for the shortlist only and "
              "can stay on disk" if row.rerank_bytes else "")
    recall = f", recall@{results.k} of the exact top {results.k} {row.overlap:.3f}" if row.overlap is not None else ""
    return (f"{row.label} at {row.dim} dims: {row.kept:.1%} of exact {PRIMARY.title}@{results.k} "
            f"({row.value:.4f}){recall}, {row.index_bytes:,.0f} bytes per vector in memory "
            f"({row.index_bytes / exact_bytes:.1%} of exact {results.full_dim}-dim float32{rerank}), "
            f"{row.ratio_single:.2f}× its query time one query at a time, {row.ratio_batch:.2f}× in a batch")


def recommendations(results: RunResults) -> list[str]:
    """Whether truncation is on the front; then one sentence per threshold: the cheapest
    configuration on the front by memory and by time (once if the same)."""
    lines = [line for line in (front_sentence(results),) if line]
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
    return lines + [line for line in (timing_sentence(results),) if line]


def quality_versus_cost(results: RunResults) -> Section | None:
    if not results.search_columns():
        return None
    return Section("costs", "Quality versus cost", console_title="Quality versus cost (search configurations; "
                   "see report.md)", note=COST_NOTE, image=("quality versus memory", COSTS_PLOT),
                   table=cost_table(results), lines=recommendations(results))
