"""Built-in search comparisons: what truncation buys at search time, measured in the run.

``funnel``: shortlist the N best documents with the first d dimensions in an index of any
backend, rerank them with the full vectors (float32, or int8 codes: ``store``). With
``baselines = true`` (the default) it also measures, at every width, the two settings a user
would pick *without* Matryoshka truncation, so that the run's Pareto front is computed over them
too: binary codes + an int8 rescore (sentence-transformers' recipe) and an HNSW graph. At the
full width they are the full-width baselines; below it, the combinations truncation makes possible
(binary codes of 192 dims: 24 bytes). ``quantize``: search int8 or binary codes of the
first d dimensions, with and without rescoring the candidates with the float vectors at d.
Each reports the run's metrics per dimension, ``overlap@k`` with the exact full-dimension top
k, memory per vector and query time as a ratio to exact full-dimension float32 search measured
in the same run (see :mod:`mrl_plugins.search.timing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ..components import Column, Comparison, ComparisonContext, IndexBackend, Params, SearchIndex, ValidationContext
from ..evaluation.encode import normalise
from ..evaluation.metrics import overlap_key
from ..evaluation.retrieval import overlap_at_k
from ..hookspecs import hookimpl
from ..indexes import SearchSetting
from ..search.folder import StoreDtype
from ..search.growth import Growth, ladder, needed, recall_at, shortlist_ranks
from ..search.index import FunnelIndex, funnel_index
from ..search.timing import blas_summary, measure, search_cost
from .comparisons import MODEL_HELP

Searches = dict[Any, Any]  # what is timed, by a key of the comparison's choosing


def check_backend(ctx: ValidationContext, name: str, params: dict[str, Any], *, key: str = "index",
                  params_key: str = "index_params") -> list[str]:
    """Problems with an index backend named in a recipe, as if it were a table of its own: an
    unknown name, each refused parameter by its key path (``index_params.m``) with what it takes,
    and the backend's own ``check()`` (its library missing, a server it cannot reach), each
    naming the plugin that provides the backend, not the comparison's."""
    if ctx.registry is None:
        return []
    from ..component_errors import ComponentParamsError, guarded_check

    try:
        backend = ctx.registry.build("index", name, params)
    except ComponentParamsError as exc:
        return ([f"{params_key}.{k} (index backend '{name}'): {what}" for k, what in exc.problems]
                or [f"{params_key}: {exc.detail}"])
    except ImportError as exc:
        return [f"{key}: index backend '{name}' cannot be built here: it needs the Python package "
                f"'{getattr(exc, 'name', None) or exc}', which is not installed. Install it, or choose another "
                "backend."]
    except Exception as exc:
        return [f"{key}: {exc}"]
    origin = backend.provided_by or {}
    return [f"{key} '{name}' (plugin '{origin.get('plugin', '?')}'): {problem}"
            for problem in guarded_check(backend, ctx, f"index backend '{name}'")]


class SearchParams(Params):
    model: str = Field("mrl", description=MODEL_HELP)
    timing_queries: int = Field(100, gt=0, description="Queries timed one at a time (the batch uses them all).")


def exact(ctx: ComparisonContext, queries: np.ndarray, corpus: np.ndarray) -> tuple[FunnelIndex, np.ndarray]:
    """Exact full-dimension float32 search, the reference of every ratio, and its top k."""
    full = queries.shape[1]
    index = FunnelIndex(full, full, ctx.index_backend(ctx.exact_index))
    index.add(corpus)
    return index, index.search(queries, ctx.k).ids


class FunnelParams(SearchParams):
    shortlist: list[int] = Field(default_factory=lambda: [50, 100, 200],
                                 description="Shortlist sizes to rerank, each ≥ k.")
    index: str = Field("flat",
                       description='Index backend of the shortlist: "flat", "hnsw", "ivf", "int8", "binary" or a '
                                   "plugin's.")
    index_params: dict[str, Any] = Field(default_factory=dict,
                                         description="The backend's parameters, e.g. { m = 32 } for hnsw.")
    rerank_dim: int | None = Field(None, gt=0, description="Rerank at this dimension (default: the full dimension).")
    store: StoreDtype = Field(
        "float32", description='The vectors reranked with: "float32", "float16", or "int8" codes (a quarter of the '
                               "bytes), where the index backend holds them.")
    baselines: bool = Field(True, description="Also measure binary codes + int8 rescore and an HNSW shortlist (at "
                                              "the largest shortlist, every width): the settings to beat, full width "
                                              "included.")
    grow_to: list[int] = Field(
        default_factory=lambda: [3000, 10000],
        description="On the validation split, also measure how each setting's shortlist holds the exact top k as the "
                    "corpus grows to these sizes (with unlabelled documents no part of the run saw, as far as the data "
                    "has them): the report's scaling table, and the shortlist each needs at [serving] corpus_size. "
                    "[] turns it off.")

    @field_validator("shortlist")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if not sizes or any(n < 1 for n in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError(f"must list distinct positive sizes, got {sizes}")
        return sorted(sizes)

    @field_validator("grow_to")
    @classmethod
    def _corpus_sizes(cls, sizes: list[int]) -> list[int]:
        if any(n < 1 for n in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError(f"must list distinct positive corpus sizes, got {sizes}")
        return sorted(sizes)


@dataclass(frozen=True)
class FunnelColumn:
    """One column of a funnel: its search setting (written at the full width, measured at every
    width of the run) and whether it is a baseline, which names what it differs in."""

    setting: SearchSetting
    baseline: bool = False

    def params(self, inherited: Mapping[str, Any]) -> dict[str, Any]:
        """The column's identity beside the comparison's: a baseline names what it differs in (its
        backend parameters too, when the comparison's would otherwise be taken for its own)."""
        s = self.setting
        if not self.baseline:
            return {"shortlist": s.shortlist}
        own = {"shortlist": s.shortlist, "index": s.index, "store": s.store}
        return {**own, "index_params": dict(s.index_params)} if dict(inherited) != dict(s.index_params) else own


BASELINES: tuple[tuple[str, StoreDtype], ...] = (("binary", "int8"), ("hnsw", "float32"))
"""What a user would serve without Matryoshka: binary codes with an int8 rescore, an HNSW graph."""


class Funnel(Comparison[FunnelParams]):
    """Shortlist at each dimension with an index, rerank with the full vectors; costs measured."""

    name = "funnel"
    Params = FunnelParams
    measured_with = frozenset({"timing_queries", "grow_to"})  # each column names its shortlist size

    def label(self, models: Mapping[str, str]) -> str:
        index = self.params.index
        return f"{models[self.params.model]} · funnel" + (f" ({index})" if index != FunnelParams().index else "")

    def columns(self, full_dim: int) -> list[FunnelColumn]:
        """One column per shortlist size, then the baselines (at the largest size, full-width rerank)."""
        p = self.params
        own = [FunnelColumn(SearchSetting(full_dim, p.index, p.index_params, n, p.rerank_dim, p.store))
               for n in p.shortlist]
        if not p.baselines:
            return own
        return own + [FunnelColumn(SearchSetting(full_dim, index, {}, p.shortlist[-1], None, store), baseline=True)
                      for index, store in BASELINES if (index, store) != (p.index, p.store)]

    def column_name(self, column: FunnelColumn) -> str:
        """``100``, or ``100 hnsw → 192``, ``200 binary, int8 rescore`` with another index, rerank
        dimension or store."""
        s = column.setting
        parts = [str(s.shortlist), *([str(s.index)] if column.baseline and s.index != "flat" else [])]
        name = " ".join([*parts, *([f"→ {s.rerank_dim}"] if s.rerank_dim and not column.baseline else [])])
        return name + (", int8 rescore" if s.store == "int8" else "")

    def check(self, ctx: ValidationContext) -> list[str]:
        p = self.params
        problems = check_backend(ctx, p.index, p.index_params)
        if not problems and ctx.registry is not None:
            stores = ctx.registry.build("index", p.index, p.index_params).stores
            if p.store not in stores:
                problems.append(f"store: '{p.index}' holds rerank vectors as {', '.join(sorted(stores))}, not "
                                f"{p.store}.")
        if p.shortlist[0] < ctx.k:
            problems.append(f"shortlist: {p.shortlist[0]} is smaller than k = {ctx.k}; a shortlist must hold the "
                            "top k.")
        if p.rerank_dim and ctx.full_dim and p.rerank_dim > ctx.full_dim:
            problems.append(f"rerank_dim: {p.rerank_dim} is larger than the model's dimension {ctx.full_dim}.")
        return problems

    def run(self, ctx: ComparisonContext) -> list[Column]:
        p = self.params
        queries, corpus = ctx.embeddings(p.model)
        reference, exact_ids = exact(ctx, queries, corpus)
        columns = self.columns(queries.shape[1])
        ranked: dict[FunnelColumn, dict[int, np.ndarray]] = {c: {} for c in columns}
        searches: Searches = {"exact": lambda q: reference.search(q, ctx.k)}
        indexes: dict[tuple[FunnelColumn, int], SearchIndex] = {}
        built = Built(corpus)
        try:
            for c in columns:
                for d in ctx.dims:
                    setting = c.setting.at(d)
                    index = indexes[c, d] = built.get(ctx, setting)
                    ranked[c][d] = index.search(queries, ctx.k, shortlist=setting.shortlist).ids
                    searches[c, d] = lambda q, index=index, n=setting.shortlist: index.search(q, ctx.k, shortlist=n)
            timings = measure(searches, queries, single=p.timing_queries)
            growth = (self.growth(ctx, columns, built, queries, exact_ids)
                      if ctx.split == "validation" and p.grow_to else {})
            return [
                Column(
                    self.column_name(c),
                    with_overlap(ctx.score_ranked(ranked[c]), ranked[c], exact_ids, ctx.k, queries, corpus),
                    {d: search_cost(timings[c, d], timings["exact"], index_bytes=indexes[c, d].index_bytes(),
                                    rerank_bytes=indexes[c, d].rerank_bytes()) for d in ctx.dims},
                    params=c.params(p.index_params),
                    facts={**column_facts(indexes[c, ctx.dims[-1]]),
                           **({"growth": {str(d): g.to_json() for d, g in growth[c].items()}} if c in growth else {})},
                )
                for c in columns
            ]
        finally:
            built.close()

    def growth(self, ctx: ComparisonContext, columns: list[FunnelColumn], built: Built, queries: np.ndarray,
               exact_ids: np.ndarray) -> dict[FunnelColumn, dict[int, Growth]]:
        """Each column at each width at growing corpus sizes (:mod:`mrl_plugins.search.growth`):
        the validation corpus, then grown with unlabelled documents no part of the run saw, as far
        as there are any (with none, the validation corpus alone: the report then scales in
        proportion)."""
        p, start = self.params, len(built.corpus)
        extra = ctx.unlabelled(p.model, max(p.grow_to) - start) if max(p.grow_to) > start else None
        if extra is None:
            extra = np.zeros((0, built.corpus.shape[1]), dtype=np.float32)
        sizes = ladder(start, p.grow_to, start + len(extra))  # the validation corpus alone, with nothing to grow by
        longest = max(GROWTH_LONGEST, 10 * p.shortlist[-1])
        per_size: list[dict[tuple[int, int], np.ndarray]] = []
        for n in sizes:
            grown = built if n == start else Built(np.concatenate([built.corpus, extra[: n - start]]))
            try:
                exact_n = exact_ids if n == start else exact(ctx, queries, grown.corpus)[1]
                at_size: dict[tuple[int, int], np.ndarray] = {}
                found: dict[int, np.ndarray] = {}  # one search per index: its shortlist sizes share it
                for i, c in enumerate(columns):
                    for d in ctx.dims:
                        index = grown.get(ctx, c.setting.at(d))
                        if id(index) not in found:
                            found[id(index)] = shortlist_ranks(index, queries, exact_n, min(n, longest))
                        at_size[i, d] = found[id(index)]
                per_size.append(at_size)
            finally:
                if grown is not built:
                    grown.close()
        result: dict[FunnelColumn, dict[int, Growth]] = {}
        for i, c in enumerate(columns):
            s = c.setting.shortlist or ctx.k
            for d in ctx.dims:
                ranks = {j: per_size[j][i, d] for j in range(len(sizes))}
                first = recall_at(ranks[0], s)
                result.setdefault(c, {})[d] = Growth(
                    s, sizes, [recall_at(ranks[j], s) for j in range(len(sizes))],
                    [needed(ranks[j], first, min(n, longest), ctx.k) for j, n in enumerate(sizes)], longest)
        return result


GROWTH_LONGEST = 2000
"""The longest shortlist the growth measurement searches (or ten times the comparison's longest):
a setting that needs more at a measured size says "more than" it."""


def column_facts(index: SearchIndex) -> dict[str, Any]:
    """The BLAS the process runs, and what the engine that held the index says of itself."""
    engine = index.facts()  # an engine's asks its server: once
    return {"timing": blas_summary(), **({"engine": engine} if engine else {})}


class Built:
    """The indexes one comparison builds, each once: the shortlist sizes of a setting search the
    same index (an engine's table is loaded and indexed once, not once per shortlist), all
    closed at the end (an engine drops its tables)."""

    def __init__(self, corpus: np.ndarray):
        self.corpus = corpus
        self.indexes: dict[tuple[Any, ...], SearchIndex] = {}

    def get(self, ctx: ComparisonContext, setting: SearchSetting) -> SearchIndex:
        """The index ``setting`` searches (its shortlist size aside: every size searches one index)."""
        s = setting
        key = (s.index, repr(sorted(s.index_params.items())), s.dim, s.rerank_dim, s.store)
        if key not in self.indexes:
            backend = ctx.index_backend(s.index or ctx.exact_index, dict(s.index_params))
            self.indexes[key] = build(backend, self.corpus, s.dim, s.rerank_dim, s.store)
        return self.indexes[key]

    def close(self) -> None:
        for index in self.indexes.values():
            index.close()


def build(backend: IndexBackend, corpus: np.ndarray, dim: int, rerank_dim: int | None,
          store: str = "float32") -> SearchIndex:
    index = funnel_index(backend, corpus.shape[1], dim, rerank_dim=rerank_dim, store_dtype=store)
    try:
        index.add(corpus)
    except BaseException:
        index.close()
        raise
    return index


def with_overlap(metrics: dict[int, dict[str, float]], ranked: dict[int, np.ndarray], exact_ids: np.ndarray,
                 k: int, queries: np.ndarray, corpus: np.ndarray) -> dict[int, dict[str, float]]:
    """Add overlap@k with the exact top k, up to ties at full width (``queries`` and ``corpus``:
    the full-width vectors searched), to each dimension's metrics (in place: per-query scores stay)."""
    unit_q, unit_c = normalise(queries), normalise(corpus)
    for d, m in metrics.items():
        m[overlap_key(k)] = overlap_at_k(ranked[d], exact_ids, k, queries=unit_q, corpus=unit_c)
    return metrics


Precision = Literal["int8", "binary"]


def _both() -> list[Precision]:
    return ["int8", "binary"]


class QuantizeParams(SearchParams):
    index: str = Field("flat", description="The index backend whose quantised forms are searched (its 'quantized' "
                                           'precisions: "flat" offers int8 and binary; a plugin engine its own).')
    index_params: dict[str, Any] = Field(default_factory=dict, description="Parameters added to each quantised "
                                                                         "backend's, e.g. { dsn = \"…\" }.")
    precisions: list[Precision] = Field(
        default_factory=_both, description='Which codes: "int8" (scalar quantiser), "binary" (sign bits).')
    rescore_multiplier: int = Field(4, ge=1,
                                    description="Rescoring reranks k × this many candidates with the float vectors.")


class Quantize(Comparison[QuantizeParams]):
    """int8 and binary codes at each dimension, with and without rescoring with float vectors."""

    name = "quantize"
    Params = QuantizeParams
    measured_with = frozenset({"timing_queries", "precisions"})  # each column names its precision

    def label(self, models: Mapping[str, str]) -> str:
        index = self.params.index
        return f"{models[self.params.model]} · quantize" + (f" ({index})" if index != QuantizeParams().index else "")

    def check(self, ctx: ValidationContext) -> list[str]:
        p = self.params
        if ctx.registry is None:
            return []
        problems = check_backend(ctx, p.index, {})
        if problems:
            return problems
        offered = ctx.registry.quantizations()
        for precision in p.precisions:
            if (p.index, precision) not in offered:
                problems.append(f"precisions: '{p.index}' offers no {precision} codes; it offers "
                                f"{', '.join(q for i, q in offered if i == p.index) or 'none'}.")
            else:
                target, params = offered[p.index, precision]
                problems += check_backend(ctx, target, {**params, **p.index_params})
        return problems

    def backend_of(self, ctx: ComparisonContext, precision: str) -> tuple[str, dict[str, Any]]:
        cls = type(ctx.index_backend(self.params.index, {}))
        target, params = cls.quantized[precision]
        return target, {**params, **self.params.index_params}

    def run(self, ctx: ComparisonContext) -> list[Column]:
        p = self.params
        queries, corpus = ctx.embeddings(p.model)
        reference, exact_ids = exact(ctx, queries, corpus)
        shortlist = ctx.k * p.rescore_multiplier
        ranked: dict[str, dict[int, np.ndarray]] = {}
        searches: Searches = {"exact": lambda q: reference.search(q, ctx.k)}
        costs: dict[str, dict[int, tuple[float, float]]] = {}
        params: dict[str, dict[str, Any]] = {}
        facts: dict[str, dict[str, Any]] = {}
        built = Built(corpus)
        own = p.index != QuantizeParams.model_fields["index"].default  # the label names it
        try:
            for precision in p.precisions:
                target, target_params = self.backend_of(ctx, precision)
                for d in ctx.dims:
                    # rescoring uses the float vectors of the same dimension: said in the label ("at same width")
                    index = built.get(ctx, SearchSetting(d, target, target_params, rerank_dim=d))
                    for name, n in ((precision, None), (f"{precision} + rescore at same width", shortlist)):
                        params[name] = {"precision": precision, "rescore": n is not None,
                                        **({"index": p.index} if own else {})}
                        ranked.setdefault(name, {})[d] = index.search(queries, ctx.k, shortlist=n).ids
                        searches[f"{name}/{d}"] = lambda q, index=index, n=n: index.search(q, ctx.k, shortlist=n)
                        costs.setdefault(name, {})[d] = (index.index_bytes(), index.rerank_bytes() if n else 0.0)
                        facts[name] = column_facts(index)
            timings = measure(searches, queries, single=p.timing_queries)
            return [
                Column(
                    name,
                    with_overlap(ctx.score_ranked(ranked[name]), ranked[name], exact_ids, ctx.k, queries, corpus),
                    {d: search_cost(timings[f"{name}/{d}"], timings["exact"], index_bytes=ib, rerank_bytes=rb)
                     for d, (ib, rb) in costs[name].items()},
                    params=params[name], facts=facts[name],
                )
                for name in ranked
            ]
        finally:
            built.close()


@hookimpl
def register_comparisons(register):
    register(Funnel)
    register(Quantize)
