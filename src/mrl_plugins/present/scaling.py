"""The report's section on how the funnel's settings scale with the corpus (issue #37, item 2):
recall of the exact top k at each corpus size the ``funnel`` comparison measured on validation,
the shortlist that keeps each setting's recall there, and, at the recipe's ``[serving]
corpus_size``, the shortlist extrapolated to it (:mod:`mrl_plugins.search.growth`, marked as
extrapolated). Like :mod:`.costs`, it only words what the evidence holds.
"""

from __future__ import annotations

from pathlib import Path

from ..evidence.decisions import serving_decision
from ..evidence.results import RunResults
from ..search.growth import Growth
from .blocks import Section, Table

SCALING_PLOT = "scaling.png"

NOTE = (
    "Measured on the validation queries, with the validation corpus grown by unlabelled documents that no part of "
    "the run saw (recall of the exact full-width top k needs no labels). Recall: the share of the exact top k that "
    "the setting's shortlist holds at each size (what its full-width rerank can return). Shortlist for the same "
    "recall: the shortest that holds what the setting held on the validation corpus, at each size; at the declared "
    "corpus size it is extrapolated by a power law fitted to those (in proportion to the corpus when one size was "
    "measured), an estimate, not a measurement. Graph indexes (HNSW, IVF) are ranked by their own approximate search."
)


def growth_of(results: RunResults) -> list[tuple[str, str, int, Growth]]:
    """(column key, label, width, growth) of every validation column that measured its growth."""
    found = []
    for key, column in results.validation.items():
        for dim, data in sorted((column.facts.get("growth") or {}).items(), key=lambda kv: -int(kv[0])):
            found.append((key, column.label, int(dim), Growth.from_json(data)))
    return found


def _shortlist(value: int | None, longest: int) -> str:
    return f"> {longest:,}" if value is None else f"{value:,}"


def scaling_section(results: RunResults) -> Section | None:
    rows = growth_of(results)
    if not rows:
        return None
    sizes = rows[0][3].sizes
    rows = [r for r in rows if r[3].sizes == sizes]
    target, k = results.serving_corpus_size, results.k
    header = ["setting", "dim", *(f"recall@{k} at {n:,}" for n in sizes),
              *(f"shortlist for it at {n:,}" for n in sizes[1:]), "exponent",
              *([f"shortlist at {target:,} (extrapolated)"] if target else [])]
    table = Table(header, [
        [label, str(d), *(f"{r:.3f}" for r in g.recall), *(_shortlist(s, g.longest) for s in g.needed[1:]),
         "-" if g.exponent is None else f"{g.exponent:.2f}", *([f"{g.at(target):,}"] if target else [])]
        for _, label, d, g in rows
    ])
    lines = [f"Corpus sizes measured: {', '.join(f'{n:,}' for n in sizes)} documents (the validation corpus, then "
             f"grown with {sizes[-1] - sizes[0]:,} unlabelled documents)." if len(sizes) > 1 else
             f"Corpus size measured: {sizes[0]:,} documents, the validation corpus alone: the data has no unlabelled "
             "documents to grow it with, so shortlists are scaled in proportion to the corpus (an assumption, not a "
             "measurement)."]
    decision = serving_decision(results)
    point = decision.point if decision else None
    chosen = next((g for key, _, d, g in rows if point and key == point.column and d == point.dim), None)
    if point is not None and chosen is not None:
        held = ", ".join(f"{r:.3f} at {n:,}" for n, r in zip(sizes, chosen.recall))
        at = (f"; at the declared {target:,} documents it needs a shortlist of about {chosen.at(target):,} "
              f"(extrapolated{'' if chosen.exponent is None else f', exponent {chosen.exponent:.2f}'})"
              if target else "; declare [serving] corpus_size to have it scaled to your corpus")
        lines.append(f"The setting to serve, {point.label} at {point.dim} dims, holds of the exact top {k} with its "
                     f"shortlist of {chosen.shortlist}: {held}{at}.")
    elif point is not None:
        lines.append(f"The setting to serve, {point.label} at {point.dim} dims, has no shortlist: its cost grows with "
                     "the corpus (a scan), its quality does not depend on it."
                     + (f" At {target:,} documents, measure it: `mrl-run index` tunes on the corpus it indexes."
                        if target else ""))
    return Section("scaling", "How the settings scale with the corpus", note=NOTE,
                   image=("recall against corpus size", SCALING_PLOT), table=table, lines=lines)


def plot_scaling(results: RunResults, path: Path) -> bool:
    """Recall of the exact top k against corpus size (log scale), one line per setting and width;
    ``False`` (no file) when no growth was measured."""
    rows = growth_of(results)
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    for _, label, d, g in rows:
        ax.plot(g.sizes, g.recall, marker="o", label=f"{label} at {d}")
    ax.set_xscale("log")
    ax.set_xlabel("documents in the corpus (log scale)")
    ax.set_ylabel(f"recall@{results.k} of the exact top {results.k}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="xx-small", loc="lower left", ncol=2)
    ax.set_title(f"{results.name}: how each shortlist holds the exact top {results.k} as the corpus grows")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
