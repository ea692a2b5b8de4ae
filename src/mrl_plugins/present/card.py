"""The Matryoshka section of the model card: ``card.md.j2`` rendered with the run's numbers as
data (as sentence-transformers renders its own card from a template), its tables and sentences
being the report's section objects, so the card cannot word a number differently from
``report.md``."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from ..components import SearchSetting
from ..evaluation.metrics import METRICS
from ..evidence.decisions import (
    OperatingPoint,
    basis,
    example_width,
    recommended_widths,
    serving_decision,
    truncation_on_front,
)
from ..evidence.results import MRL, PRIMARY, RunResults, share_label
from .blocks import Section, Table
from .costs import describe, front_sentence, speed
from .render import markdown_table
from .sections import chosen_on, serving_rule

START, END = "<!-- mrl-plugins:start -->", "<!-- mrl-plugins:end -->"


def quality_section(results: RunResults, column: str) -> Section:
    """The card's table: the column's metrics, what it keeps, and the other quality columns."""
    k = results.k
    primary = PRIMARY.key(k)
    others = [o for o in results.quality_columns().values() if o.key != column]
    header = ["dim", *(f"{m.title}@{k}" for m in METRICS), f"{PRIMARY.title}@{k} kept",
              *(f"{o.label} {PRIMARY.title}@{k}" for o in others)]
    rows = []
    for d in results.dims:
        kept = results.retention(column, d)
        rows.append([str(d), *(f"{results.value(column, d, m):.4f}" for m in METRICS),
                     f"{kept:.1%}" if kept is not None else "n/a", *(f"{o.metrics[d][primary]:.4f}" for o in others)])
    return Section("card-quality", "Retrieval quality per dimension", table=Table(header, rows))


Snippets = Callable[[RunResults, OperatingPoint], list[dict[str, str]]]
"""The installed engines' own ways to serve a funnel choice (title, language, code, note), for the
run's results and the chosen point: the publisher asks the plugins
(:func:`mrl_plugins.publish.model.engine_snippets`); the card only lays them out."""


def serving_section(results: RunResults, snippets: Snippets | None = None) -> tuple[Section, dict[str, Any]] | None:
    """What to serve (the decision), worded, and what the card's funnel snippet needs."""
    decision = serving_decision(results)
    if decision is None:
        return None
    point = decision.point
    rule = serving_rule(decision, results.full_dim)
    line = f"Recommended ({rule}; {chosen_on(results)}): {describe(point, results)}."
    if point.is_exact(results.full_dim) and decision.slower:
        size = results.chosen_corpus
        line += (f" That is the answer at the {size:,} documents it was measured on; for a larger corpus, "
                 "`mrl-run index` measures the settings again on the corpus itself and chooses there.")
    front = front_sentence(results)
    if front and not truncation_on_front(basis(results)):
        line += " " + front
    section = Section("serving", "Serving", lines=[line], bullets=False)
    full = results.full_dim
    rerank_dim = int(point.setting.rerank_dim or full)
    rerank = "docs[shortlist] @ q" if rerank_dim == full else (
        f"(docs[shortlist, :{rerank_dim}] / np.linalg.norm(docs[shortlist, :{rerank_dim}], axis=1, keepdims=True)) "
        f"@ (q[:{rerank_dim}] / np.linalg.norm(q[:{rerank_dim}]))")
    index = point.setting.index
    flags = "".join([index_flags(point.setting), f" --rerank-dim {rerank_dim}" if rerank_dim != full else "",
                     f" --store {point.store}" if point.store != "float32" else ""])
    measured = (f"The run measured it with the `{index}` shortlist index"
                + (" and int8 rerank vectors" if point.store != "float32" else "") if index else "The run measured it")
    approximate = f"{measured}; the numpy above shortlists exactly"
    funnel = point.component == "funnel" and bool(point.shortlist)
    return section, {"lines": section.lines, "funnel": funnel,
                     "dim": point.dim, "shortlist": point.shortlist, "rerank": rerank, "rerank_dim": rerank_dim,
                     "flags": flags, "approximate": approximate,
                     "snippets": snippets(results, point) if funnel and snippets else []}


def index_flags(setting: SearchSetting) -> str:
    """``mrl-run index``'s flags for the setting's backend and its parameters (each a TOML value,
    quoted for the shell), e.g. `` --index annoy --index-param n_trees=50``: the index the card
    tells users to build is the one the run measured."""
    import json
    import shlex

    if not setting.index:
        return ""
    flags = f" --index {setting.index}"
    for key, value in sorted(setting.index_params.items()):
        literal = str(value).lower() if isinstance(value, bool) else (
            json.dumps(value) if isinstance(value, str) else str(value))
        flags += f" --index-param {shlex.quote(f'{key}={literal}')}"
    return flags


def checks_summary(results: RunResults) -> dict[str, Any] | None:
    """The card's one paragraph of "Did the choices hold?" (``results.checks``), or ``None``."""
    if not results.checks:
        return None
    failed = [f"{c.choice}: {c.chosen} ({c.delta:+.3f} against {c.alternative or 'the share'}, p = {c.p:.3f})"
              for c in results.checks if not c.holds and c.delta is not None and c.p is not None]
    return {"held": sum(c.holds for c in results.checks), "total": len(results.checks), "failed": failed}


def tasks_table(results: RunResults, column: str) -> str | None:
    """The ``[[task]]`` scores of the published column, one row per task (its main metric per
    width, retention in brackets), as a Markdown table; ``None`` without tasks or for a column the
    tasks did not score (a comparison's)."""
    from .tasks import NAMES

    dims = sorted(results.dims, reverse=True)

    def cell(value: float, top: float) -> str:
        return f"{value:.4f} ({value / top:.1%})" if top else f"{value:.4f}"

    body = [[t.label, NAMES.get(t.metric, t.metric),
             *(cell(t.scores[column][d][t.metric], t.scores[column][dims[0]][t.metric]) for d in dims)]
            for t in results.tasks.values() if column in t.scores]
    if not body:
        return None
    return "\n".join(markdown_table(Table(["task", "metric", *(f"{d} dims" for d in dims)], body)))


def card_section(results: RunResults, truncate_dim: int | None, repo_id: str | None, column: str = MRL,
                 exports: list[dict] | None = None, tei_mismatch: str | None = None,
                 snippets: Snippets | None = None) -> str:
    """The Matryoshka section, between markers so it can be replaced; its numbers are those of
    ``column``, the run's column this model is (MRL unless published with ``--model``);
    ``exports``: the graphs the repository carries (:func:`mrl_plugins.export.published.published_exports`);
    ``tei_mismatch``: why text-embeddings-inference would embed differently
    (:func:`mrl_plugins.export.serving_configs.tei_mismatch`); ``snippets``: the engines' serving
    snippets (:data:`Snippets`)."""
    import jinja2

    template = resources.files("mrl_plugins.present").joinpath("card.md.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(keep_trailing_newline=False, autoescape=False, undefined=jinja2.StrictUndefined)
    share, example = example_width(results, column)
    serving = serving_section(results, snippets) if column == MRL else None
    data = results.data
    encoding = speed(results) if column == MRL else None
    text = env.from_string(template).render(
        column_is_mrl=column == MRL, column_label=results.models[column].label, base_model=results.model.name,
        dims=results.dims, dims_descending=sorted(results.dims, reverse=True), full_dim=results.full_dim,
        truncate_dim=truncate_dim, metric_title=f"{PRIMARY.title}@{results.k}", metric_key=PRIMARY.key(results.k),
        recommended=[(share_label(s), d) for s, d in sorted(recommended_widths(results, column).items(), reverse=True)],
        eval_queries=data.eval_queries, corpus=data.corpus, source=data.source,
        quality_table="\n".join(markdown_table(quality_section(results, column).table or Table([], []))),
        name=repo_id or "path/to/this/model", example_dim=example, example_share=share_label(share),
        serving=serving[1] if serving else None, chosen_on=chosen_on(results), exports=exports or [],
        encoding_table="\n".join(markdown_table(encoding.table)) if encoding and encoding.table else None,
        encoding_lines=encoding.lines if encoding else [],
        tei_mismatch=tei_mismatch, onnx_export=next((e for e in exports or [] if e["format"] == "onnx"), None),
        checks=checks_summary(results), tasks=tasks_table(results, column),
    )
    return text.strip()
