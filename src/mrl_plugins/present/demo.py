"""``mrl-run demo``: a local page where the dimension is a slider and the results move with it.

The page searches a finished run's evaluation corpus (saved with the run, with every model's
embeddings, so it opens in seconds), or an index built by ``mrl-run index``. For a query it shows
the top 10 at the chosen width and search setting beside the top 10 at full dimension, with
overlap@10, which documents moved or dropped, and each search's measured time. Evaluation
queries serve as examples, their relevant documents marked.

:class:`DemoData` and :class:`SideBySide` hold everything the page does and are tested without a
browser (each search goes through :class:`~mrl_plugins.search.searcher.Searcher`, as ``mrl-run
search`` does); :func:`build_app` only lays them out with Gradio (imported here, never by the rest of
the package, so the ``demo`` extra stays optional).
"""

from __future__ import annotations

import html
import math
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..evidence.results import BASE, MRL, PRIMARY, RunResults, share_label
from ..evidence.rundir import RunDir
from ..evidence.saved import load_evaluation
from ..search.searcher import Hit as SearchHit
from ..search.searcher import Searcher, TextList, Texts

TRUNCATE = "truncate"
K = 10


def search_settings(registry: Any) -> dict[str, str]:
    """What the page offers: plain truncation, and a funnel through every registered index
    backend (built-in or a plugin's), by name."""
    from ..components import Engine

    out = {TRUNCATE: "Truncated: exact search of the first d dims"}
    for name in registry.names("index"):
        if issubclass(registry.get("index", name), Engine):
            continue  # a database engine loads a table per click; the page searches in process
        out[name] = f"Funnel, {name}: shortlist of d dims in {name}, rerank at full"
    return out


@dataclass
class DemoModel:
    """One model on the page: its label, where it loads from, and its corpus vectors."""

    key: str
    label: str
    location: str
    corpus: np.ndarray
    queries: np.ndarray | None = None
    """Embeddings of the evaluation queries, when the corpus is the run's evaluation corpus."""
    encoder: Any = None

    def encode(self, text: str) -> np.ndarray:
        if self.encoder is None:
            from ..models import ResolvedModel, load_model, resolve_model

            resolved = (resolve_model(self.location) if self.key == BASE
                        else ResolvedModel(self.key, self.location, "local path"))
            self.encoder = load_model(resolved, device="cpu")
        from ..evaluation.encode import encode_texts

        return encode_texts(self.encoder, [text], role="query")[0]


@dataclass
class DemoData:
    """What the page searches: texts, each model's vectors, examples, and the run's evidence."""

    run_dir: Path
    results: RunResults
    documents: int
    """How many documents the page searches."""
    texts: Texts | None
    """Where their texts are read (the run's evaluation corpus in memory, or an index's text store)."""
    models: dict[str, DemoModel]
    examples: dict[str, tuple[int, set[int]]] = field(default_factory=dict)
    """evaluation query text → (its row, its relevant corpus rows)."""

    @property
    def dims(self) -> list[int]:
        return self.results.dims

    @classmethod
    def from_run(cls, run_dir: Path, index_dir: Path | None = None) -> DemoData:
        run = RunDir.open(run_dir)
        results = run.results()
        labels = {key: m.label for key, m in results.models.items() if m.kind == "model"}
        locations = {BASE: results.model.name, **{key: str(path) for key, path in run.trained_models().items()}}
        if index_dir is not None:
            return cls._from_index(run_dir, results, labels, locations, index_dir)
        saved = load_evaluation(run_dir)
        models = {
            key: DemoModel(key, labels[key], locations[key], saved.embeddings[key][1], saved.embeddings[key][0])
            for key in labels if key in saved.embeddings and key in locations
        }
        relevant = saved.relevant_rows
        examples = {saved.ir.queries[q]: (i, relevant[i]) for i, q in enumerate(saved.query_ids)}
        texts = TextList(saved.corpus_ids, [saved.ir.corpus[d] for d in saved.corpus_ids])
        return cls(run_dir, results, len(saved.corpus_ids), texts, models, examples)

    @classmethod
    def _from_index(cls, run_dir: Path, results: RunResults, labels: dict, locations: dict,
                    index_dir: Path) -> DemoData:
        from ..embed.stamp import ModelStamp
        from ..search.build import open_index

        corpus = open_index(index_dir)
        stamp = corpus.index.model
        if stamp is None:
            raise UserError(f"{index_dir} does not record its model; rebuild it with 'mrl-run index'.")
        saved = _saved_probes(run_dir)
        match = next((key for key, probe in saved.items() if ModelStamp("", probe).matches(stamp)), None)
        if match is None:
            raise UserError(
                f"{index_dir} was built with '{stamp.name}', which is none of the run's models "
                f"({', '.join(labels)}); build it from the run: 'mrl-run index {run_dir} CORPUS -o {index_dir}'."
            )
        vectors = corpus.index.decoded()  # float32 (an int8 store decoded, an engine's read from its table)
        model = DemoModel(match, labels.get(match, match), locations.get(match, stamp.name), vectors)
        return cls(run_dir, results, len(vectors), corpus.texts, {match: model}, {})

    # -- the evidence shown beside the search -------------------------------------------------------
    def recommendation(self) -> str:
        from ..evidence.decisions import recommended_widths
        from .costs import quality_versus_cost
        from .render import markdown_lines
        from .sections import chosen_on

        rec = sorted(recommended_widths(self.results, MRL).items(), reverse=True) if MRL in self.results.models else []
        metric = f"{PRIMARY.title}@{self.results.k}"
        kept = [f"≥ {share_label(s)}" + (f" of its full-dimension {metric}" if i == 0 else "") + f" from **{d}** dims"
                for i, (s, d) in enumerate(rec)]
        lines = [f"MRL keeps {', '.join(kept)} ({chosen_on(self.results)})."] if kept else []
        costs = quality_versus_cost(self.results)  # the report's own section, its first two sentences
        if costs is not None:
            lines += [line for line in markdown_lines(costs) if line.startswith("- ")][:2]
        return "\n".join(lines)

    def plots(self) -> list[Path]:
        return RunDir(self.run_dir).plots()


def _saved_probes(run_dir: Path) -> dict[str, tuple[float, ...]]:
    """Each saved run model's stamp (its embedding of the index probe sentence)."""
    from ..embed.stamp import ModelStamp
    from ..models import ResolvedModel, load_model

    out = {}
    for key, folder in RunDir(run_dir).trained_models().items():
        model = load_model(ResolvedModel(key, str(folder), "local path"), device="cpu")
        out[key] = ModelStamp.of(model, key).probe
    return out


@dataclass
class Hit:
    row: int
    doc_id: str
    text: str
    score: float
    relevant: bool
    full_rank: int | None = None
    """This document's rank at full dimension (1-based), or None if not in its top 10."""
    chosen_rank: int | None = None
    """In the full column: this document's rank in the chosen column, or None if dropped."""


@dataclass
class SearchView:
    """What one search shows: both columns, their agreement and their times."""

    chosen: list[Hit]
    full: list[Hit]
    overlap: int
    dropped: int
    moved: int
    ms_chosen: float
    ms_full: float
    example: bool


class SideBySide:
    """One query searched twice on the demo corpus, at the chosen width and setting and at full
    width, through a :class:`~mrl_plugins.search.searcher.Searcher` each (built once per model,
    dimension and setting)."""

    def __init__(self, data: DemoData):
        from ..plugins import load_registry

        self.data, self.registry = data, load_registry()
        self.settings = search_settings(self.registry)
        self.searchers: dict[tuple[str, int, str], Searcher] = {}

    def searcher(self, model: str, dim: int, setting: str) -> Searcher:
        from ..search.index import funnel_index
        from ..search.searcher import Searcher

        key = (model, dim, setting)
        if key not in self.searchers:
            vectors = self.data.models[model].corpus
            backend = self.registry.exact_index() if setting == TRUNCATE else setting
            index = funnel_index(self.registry.build("index", backend), vectors.shape[1], dim)
            index.add(vectors)
            index.search(vectors[:1], K, shortlist=None if setting == TRUNCATE else K)  # warm up: first calls are slow
            self.searchers[key] = Searcher(index, self.data.texts)
        return self.searchers[key]

    def query_vector(self, model: str, text: str) -> tuple[np.ndarray, set[int] | None]:
        m = self.data.models[model]
        example = self.data.examples.get(text)
        if example is not None and m.queries is not None:
            return m.queries[example[0]], example[1]
        return m.encode(text), (example[1] if example else None)

    def search(self, model: str, text: str, dim: int, setting: str = TRUNCATE, shortlist: int = 100) -> SearchView:
        if model not in self.data.models:
            raise UserError(f"unknown model '{model}'; the page offers {', '.join(self.data.models)}.")
        if setting not in self.settings:
            raise UserError(f"unknown search setting '{setting}'; one of {', '.join(self.settings)}.")
        full_dim = self.data.models[model].corpus.shape[1]
        dim = int(min(max(int(dim), 1), full_dim))
        q, relevant = self.query_vector(model, text)
        chosen_search, full_search = self.searcher(model, dim, setting), self.searcher(model, full_dim, TRUNCATE)
        n = 0 if setting == TRUNCATE else max(int(shortlist), K)
        t0 = time.perf_counter()
        chosen = chosen_search.search_vectors(q[None, :], K, shortlist=n)[0]
        t1 = time.perf_counter()
        full = full_search.search_vectors(q[None, :], K, shortlist=0)[0]
        t2 = time.perf_counter()
        chosen_rows, full_rows = [h.row for h in chosen], [h.row for h in full]
        relevant = relevant or set()
        full_pos = {r: i + 1 for i, r in enumerate(full_rows)}
        chosen_pos = {r: i + 1 for i, r in enumerate(chosen_rows)}

        def hits(found: list[SearchHit], other: dict[int, int], is_chosen: bool) -> list[Hit]:
            return [Hit(h.row, h.id, h.text, h.score, h.row in relevant,
                        full_rank=other.get(h.row) if is_chosen else None,
                        chosen_rank=None if is_chosen else other.get(h.row)) for h in found]

        shared = set(chosen_rows) & set(full_rows)
        return SearchView(
            chosen=hits(chosen, full_pos, True),
            full=hits(full, chosen_pos, False),
            overlap=len(shared),
            dropped=len(set(full_rows) - shared),
            moved=sum(1 for r in shared if full_pos[r] != chosen_pos[r]),
            ms_chosen=(t1 - t0) * 1e3, ms_full=(t2 - t1) * 1e3, example=bool(relevant),
        )

    def random_example(self, seed: int | None = None) -> str:
        if not self.data.examples:
            raise UserError("this corpus has no evaluation queries to pick an example from.")
        return random.Random(seed).choice(sorted(self.data.examples))


# -- rendering ----------------------------------------------------------------------------------
def render_hits(hits: list[Hit], title: str, element: str, chosen: bool) -> str:
    rows = []
    for rank, h in enumerate(hits, 1):
        if chosen:
            note = "new" if h.full_rank is None else ("=" if h.full_rank == rank else f"{h.full_rank - rank:+d}")
            note_title = ("not in the full-dimension top 10" if h.full_rank is None
                          else f"rank {h.full_rank} at full dimension (+: moved up, -: moved down)")
        else:
            note = "dropped" if h.chosen_rank is None else ""
            note_title = "not in the chosen top 10" if h.chosen_rank is None else ""
        mark = '<span class="mrl-relevant" title="relevant (from the evaluation set)">✓</span>' if h.relevant else ""
        text = html.escape(h.text if len(h.text) <= 160 else h.text[:157] + "…")
        rows.append(
            f'<tr data-row="{h.row}" data-relevant="{int(h.relevant)}"><td>{rank}</td><td>{mark}</td>'
            f"<td>{text}</td><td>{h.score:.3f}</td><td title=\"{note_title}\">{note}</td></tr>"
        )
    return (f'<div id="{element}-table"><h4>{html.escape(title)}</h4><table class="mrl-hits">'
            "<tr><th>#</th><th></th><th>document</th><th>cosine</th><th></th></tr>" + "".join(rows) + "</table></div>")


def render_summary(view: SearchView, dim: int, full_dim: int) -> str:
    relevant = ""
    if view.example:
        found = [i + 1 for i, h in enumerate(view.chosen) if h.relevant]
        relevant = (f" · the relevant document is at rank {found[0]} at {dim} dims" if found
                    else f" · the relevant document is not in the top 10 at {dim} dims")
    return (f'<div id="summary-text"><b>overlap@10: <span id="overlap-value">{view.overlap}/10</span></b> with full '
            f"dimension · {view.moved} moved · {view.dropped} dropped{relevant}<br>"
            f"query time: {view.ms_chosen:.2f} ms at {dim} dims, {view.ms_full:.2f} ms at {full_dim} (exact); "
            "measured on this machine, one query, so only indicative</div>")


def snap(dims: list[int]) -> int:
    """The slider's step: the greatest common divisor of the run's dimensions."""
    return math.gcd(*dims)


# -- the page -----------------------------------------------------------------------------------
def build_app(data: DemoData) -> Any:
    import gradio as gr

    searcher = SideBySide(data)
    dims, full_dim = data.dims, data.dims[0]
    default_model = MRL if MRL in data.models else next(iter(data.models))
    choices = [(m.label, key) for key, m in data.models.items()]

    def update(query: str, model: str, dim: float, setting: str, shortlist: float):
        if not query or not query.strip():
            return "", "", '<div id="summary-text">Type a query, or try an example.</div>'
        try:
            view = searcher.search(model, query.strip(), int(dim), setting, int(shortlist))
        except UserError as exc:
            return "", "", f'<div id="summary-text">{html.escape(str(exc))}</div>'
        label = searcher.settings[setting].split(":")[0]
        return (
            render_hits(view.chosen, f"{data.models[model].label} at {int(dim)} dims ({label})", "chosen", True),
            render_hits(view.full, f"{data.models[model].label} at {full_dim} dims (exact)", "full", False),
            render_summary(view, int(dim), full_dim),
        )

    with gr.Blocks(title=f"mrl-plugins demo: {data.results.name}", analytics_enabled=False) as app:
        gr.Markdown(f"# {html.escape(data.results.name)}: search at every width\n"
                    f"`{data.results.model.name}`, {data.documents:,} documents. Move the slider and watch the left "
                    "column change while the right one, at full dimension, stays.")
        with gr.Row():
            query = gr.Textbox(label="Query", placeholder="e.g. fast text editor for the terminal", elem_id="query",
                               scale=4)
            example = gr.Button("Try an example", elem_id="example", scale=1, interactive=bool(data.examples))
        with gr.Row():
            model = gr.Dropdown(choices=choices, value=default_model, label="Model", elem_id="model")
            setting = gr.Radio(choices=[(v, k) for k, v in searcher.settings.items()], value=TRUNCATE, label="Search",
                               elem_id="setting")
        with gr.Row():
            dim = gr.Slider(minimum=min(dims), maximum=full_dim, value=full_dim, step=snap(dims),
                            label=f"Dimensions (trained: {', '.join(map(str, dims))})", elem_id="dim")
            shortlist = gr.Slider(minimum=K, maximum=500, value=100, step=10, label="Shortlist (every funnel)",
                                  elem_id="shortlist")
        summary = gr.HTML('<div id="summary-text">Type a query, or try an example.</div>', elem_id="summary")
        with gr.Row():
            chosen = gr.HTML(elem_id="chosen")
            full = gr.HTML(elem_id="full")
        with gr.Accordion("What the run measured", open=True):
            gr.Markdown(data.recommendation() or "")
            with gr.Row():
                for plot in data.plots():
                    gr.Image(str(plot), show_label=False, interactive=False)
        inputs, outputs = [query, model, dim, setting, shortlist], [chosen, full, summary]
        query.submit(update, inputs, outputs)
        for control in (model, setting, dim, shortlist):
            control.change(update, inputs, outputs)
        example.click(lambda: searcher.random_example(), None, query).then(update, inputs, outputs)
    return app


CSS = ".mrl-hits td{padding:2px 6px;vertical-align:top} .mrl-relevant{color:#0a7d22;font-weight:bold}"


def theme() -> Any:
    """Gradio's default look with the system's fonts: the page loads nothing from the internet."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def check_port(host: str, port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); the port is in use or not "
                            "allowed. Pick another with --port.") from None


def serve(run_dir: Path, *, index: Path | None, host: str, port: int) -> None:
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline machine
    check_port(host, port)
    RunDir.open(run_dir)
    data = DemoData.from_run(run_dir, index)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the demo needs Gradio: pip install 'mrl-plugins[demo]' (setup.sh installs it).") from None
    app = build_app(data)
    print(f"mrl-run demo: serving {run_dir} on http://{host}:{port} (Ctrl-C stops it)", flush=True)
    app.launch(server_name=host, server_port=port, quiet=True, css=CSS, theme=theme(), ssr_mode=False,
               allowed_paths=[str(p) for p in data.plots()])
