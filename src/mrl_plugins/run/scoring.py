"""Scoring on rank 0: every model of the run and every comparison, at every dimension.

Each model's evaluation set is encoded once (:class:`Embeddings`); each dimension then costs a
slice, a re-normalisation and a search. Comparisons see the run through
:class:`RunComparisonContext` and may read only the models they declared in ``reads()``, which
validation has already checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..component_errors import plugin_call
from ..components import Column, ComparisonContext, IndexBackend, TextSide
from ..errors import PluginError, UserError
from ..evaluation.encode import EncodedIRSet, encode_ir_set, encode_texts, index_ir_set
from ..evaluation.metrics import METRICS, Metrics, SearchCost
from ..evaluation.retrieval import score_dims, scores_of
from ..evidence.results import (
    BASE,
    MRL,
    PRIMARY,
    ChoiceCheck,
    ModelResult,
    PairedTest,
    RunResults,
    column_key,
    round_metrics,
)
from ..models import load_model
from ..recipe.load import ComparisonSpec
from .context import RunContext

logger = logging.getLogger("mrl_plugins")

Split = Literal["eval", "validation"]  # the held-out evaluation set ([eval]) and the validation split


class Embeddings:
    """Full-dimension embeddings of one split (``"eval"`` or ``"validation"``) per model,
    each model encoded once per run and split; with the per-query scores of that split's columns."""

    def __init__(self, ctx: RunContext, split: Split = "eval"):
        self.ctx, self.split = ctx, split
        ir_set = ctx.bundle.eval if split == "eval" else ctx.bundle.validation
        assert ir_set is not None, "the run has no validation split"
        self.ir_set = ir_set
        self.external = ctx.recipe.external_models()
        self.cache: dict[str, EncodedIRSet] = {}
        self.progress = logger.getEffectiveLevel() <= logging.INFO
        self.relevant = index_ir_set(ir_set)[2]
        self.per_query: dict[str, dict[int, dict[str, Any]]] = (ctx.per_query if split == "eval"
                                                                 else ctx.validation_per_query)
        """Column key → each query's scores: the evaluation split's feed intervals and paired tests,
        the validation split's the margins choices are made with."""

    def stage(self, key: str) -> str:
        """A stage's key in the run's timings: ``compare:pca(base)``, or on the validation split
        ``validate:pca(base)``."""
        return key if self.split == "eval" else f"validate:{key.split(':', 1)[-1]}"

    def model(self, name: str) -> Any:
        """A loaded model of the run (by key), or another model (loaded on first use)."""
        loaded = self.ctx.loaded
        if name not in loaded:
            if name not in self.external:
                raise KeyError(f"model '{name}' is neither a loaded model of the run nor one the recipe names")
            s = self.ctx.settings
            loaded[name] = load_model(self.external[name], device=self.ctx.device,
                                      max_seq_length=s.model.max_seq_length)
        return loaded[name]

    def encoded(self, name: str) -> EncodedIRSet:
        if name not in self.cache:
            bs = self.ctx.settings.eval.batch_size
            self.cache[name] = encode_ir_set(self.model(name), self.ir_set, batch_size=bs,
                                             progress=self.progress)
        return self.cache[name]

    def encode(self, name: str, texts: Sequence[str], role: str = "document",
               batch_size: int | None = None) -> np.ndarray:
        """Embeddings of other texts (what comparisons fit on, what tasks score), encoded once per
        run: the validation and evaluation passes of a comparison fit on the same training texts.
        ``batch_size``: the encoder's (default ``[eval] batch_size``; padding moves the last digits)."""
        bs = batch_size or self.ctx.settings.eval.batch_size
        digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
        plain = (role, bs) == ("document", self.ctx.settings.eval.batch_size)  # the comparisons' key, as before
        key = (name, digest if plain else f"{digest}/{role}/{bs}")
        if key not in self.ctx.encoded_texts:
            self.ctx.encoded_texts[key] = encode_texts(self.model(name), list(texts), role=role, batch_size=bs,
                                                       progress=self.progress)
        return self.ctx.encoded_texts[key].copy()  # a comparison may change its copy in place

    def score(self, queries: np.ndarray, corpus: np.ndarray) -> dict[int, Metrics]:
        e = self.ctx.settings.eval
        return score_dims(queries, corpus, self.relevant, self.ctx.dims, k=e.k, corpus_chunk=e.corpus_chunk_size)

    def metrics(self, name: str) -> dict[int, Metrics]:
        enc = self.encoded(name)
        return self.score(enc.queries, enc.corpus)


class RunComparisonContext(ComparisonContext):
    """What one comparison sees of the run: the models it declared, the training texts, the scorer."""

    def __init__(self, emb: Embeddings, spec: ComparisonSpec):
        self.dims, self.eval_set, self.k, self.split = emb.ctx.dims, emb.ir_set, emb.ctx.settings.eval.k, emb.split
        self.exact_index = emb.ctx.recipe.registry.exact_index()
        self._emb, self._spec = emb, spec
        self._allowed = {ref.name for ref in spec.reads}

    def _check(self, model: str) -> str:
        if model not in self._allowed:
            raise PluginError(
                f"comparison '{self._spec.name}' (plugin '{self._spec.plugin}') asked for model '{model}', which its "
                f"reads() does not declare ({', '.join(sorted(self._allowed)) or 'none'}); the plugin must declare it."
            )
        return model

    def embeddings(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        enc = self._emb.encoded(self._check(model))
        return enc.queries, enc.corpus

    def encode(self, model: str, texts: Sequence[str]) -> np.ndarray:
        return self._emb.encode(self._check(model), texts)

    def train_texts(self, side: TextSide = "documents") -> list[str]:
        return self._emb.ctx.bundle.training_texts(side)

    def unlabelled(self, model: str, limit: int) -> np.ndarray | None:
        texts = self._emb.ctx.bundle.unseen_documents(limit)
        return self.encode(model, texts) if texts else None

    def score(self, queries: np.ndarray, corpus: np.ndarray) -> dict[int, Metrics]:
        return self._emb.score(queries, corpus)

    def score_ranked(self, ranked: Mapping[int, np.ndarray]) -> dict[int, Metrics]:
        return scores_of(dict(ranked), self._emb.relevant, self.k)

    def model(self, name: str) -> Any:
        return self._emb.model(self._check(name))

    @property
    def folder(self) -> Path:
        return self._emb.ctx.staging.run.comparison(self._spec.key)

    def output_dir(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def train_pairs(self) -> list[tuple[str, str]]:
        return self._emb.ctx.bundle.training_pairs()

    def index_backend(self, name: str, params: Mapping[str, Any] | None = None) -> IndexBackend:
        try:  # validation checked the recipe's; this is a plugin asking for others
            return self._emb.ctx.recipe.registry.build("index", name, params)
        except UserError as exc:
            raise UserError(f"comparison '{self._spec.name}': {exc}") from None


def truncation_costs(ctx: RunContext, emb: Embeddings) -> dict[int, SearchCost]:
    """What searching truncated vectors costs at each dimension: exact float32 search (flat),
    timed side by side. It depends on shapes only, so one measurement serves every model."""
    from ..search.index import FunnelIndex
    from ..search.timing import measure, search_cost

    enc = emb.encoded(BASE)
    registry = ctx.recipe.registry
    flat = registry.build("index", registry.exact_index())
    what = f"timing exact search of truncated vectors at {len(ctx.dims)} dims ({emb.split})"
    with ctx.stage(emb.stage("search_costs"), what):
        indexes = {}
        for d in ctx.dims:
            indexes[d] = FunnelIndex(ctx.full_dim, d, flat)
            indexes[d].add(enc.corpus)
        k = ctx.settings.eval.k
        timings = measure({d: _searcher(i, k) for d, i in indexes.items()}, enc.queries)
    full = timings[ctx.full_dim]
    return {d: search_cost(timings[d], full, index_bytes=indexes[d].index_bytes()) for d in ctx.dims}


def _searcher(index: Any, k: int) -> Callable[[np.ndarray], Any]:
    return lambda queries: index.search(queries, k)


def model_result(emb: Embeddings, key: str, metrics: dict[int, Metrics]) -> ModelResult:
    models = emb.ctx.recipe.models
    kind = "seed" if models[key].role == "seed" else "model"
    return ModelResult(key=key, label=models[key].label, kind=kind, reads=[key],
                       metrics=round_metrics(metrics), no_intervals=keep_per_query(emb, key, Column("", metrics)))


NO_PER_QUERY = ("its plugin returned means without per-query scores (score through ctx.score or ctx.score_ranked, "
                "or pass Column(per_query=...); see docs/plugin-guide.md)")


def keep_per_query(emb: Embeddings, key: str, column: Column) -> str | None:
    """Keep a column's per-query scores for its intervals and tests: those it passed
    (``Column.per_query``), else those its metrics came with from the run's scorers. Returns
    why it gets none, when it gets none."""
    per_query = column.per_query or getattr(column.metrics, "per_query", None)
    if not per_query:
        return NO_PER_QUERY
    ctx = emb.ctx
    queries = len(emb.ir_set.queries)
    wanted = {m.key(ctx.settings.eval.k) for m in METRICS}
    for d in ctx.dims:
        by_metric = per_query.get(d, {})
        if not wanted <= set(by_metric) or any(np.shape(by_metric[m]) != (queries,) for m in wanted):
            return (f"its per-query scores do not hold one {', '.join(sorted(wanted))} per evaluation query "
                    f"({queries}) at dimension {d}")
    emb.per_query[key] = {d: {m: np.asarray(v, dtype=np.float64) for m, v in per_query[d].items()} for d in ctx.dims}
    return None


def attach_statistics(ctx: RunContext, columns: list[ModelResult]) -> None:
    """95% bootstrap intervals for every column, and paired p-values against the MRL column."""
    from ..evidence.stats import bootstrap_interval, paired_p_value

    with ctx.stage("statistics", "bootstrap intervals and paired tests over the evaluation queries"):
        reference, keys = ctx.per_query.get(MRL), [m.key(ctx.settings.eval.k) for m in METRICS]
        for column in columns:
            per_query = ctx.per_query.get(column.key)
            if not per_query:
                continue
            column.intervals = {d: {m: _rounded(bootstrap_interval(pq[m], seed=ctx.settings.seed)) for m in keys}
                                for d, pq in per_query.items()}
            if reference is not None:
                column.p_vs_mrl = {d: {m: round(paired_p_value(pq[m], reference[d][m], seed=ctx.settings.seed), 6)
                                       for m in keys} for d, pq in per_query.items()}


def recommendation_tests(ctx: RunContext, results: RunResults) -> list[PairedTest]:
    """At each width: the column recommended on validation (:func:`~mrl_plugins.evidence.decisions.best_column`)
    against plain MRL and against the strongest other post-hoc column, paired over the evaluation queries."""
    from ..evidence.decisions import best_column, plain_mrl, strongest_alternative
    from ..evidence.stats import paired_p_value

    key, found = PRIMARY.key(ctx.settings.eval.k), []
    for d in results.dims:
        column = best_column(results, d)
        alternative = strongest_alternative(results, d, column)
        roles = (("plain MRL", plain_mrl(results)), ("strongest alternative", alternative))
        for role, against in roles:
            if against is None or against == column or column not in ctx.per_query or against not in ctx.per_query:
                continue
            mine, theirs = ctx.per_query[column][d][key], ctx.per_query[against][d][key]
            found.append(PairedTest(dim=d, column=column, against=against, role=role,
                                    delta=round(float(np.mean(mine) - np.mean(theirs)), 6),
                                    p=round(paired_p_value(mine, theirs, seed=ctx.settings.seed), 6)))
    return found


def choice_checks(ctx: RunContext, results: RunResults) -> list[ChoiceCheck]:
    """Did the choices hold? (:func:`mrl_plugins.evidence.agreement.choice_checks` over the
    held-out queries' scores)."""
    from ..evidence.agreement import choice_checks as checks

    key = PRIMARY.key(ctx.settings.eval.k)
    scores = {column: {d: np.asarray(by[key], dtype=np.float64) for d, by in dims.items()}
              for column, dims in ctx.per_query.items()}
    return checks(results, scores, seed=ctx.settings.seed)


def _rounded(interval: tuple[float, float]) -> tuple[float, float]:
    return round(interval[0], 6), round(interval[1], 6)


def evaluate_model(ctx: RunContext, emb: Embeddings, key: str) -> ModelResult:
    what = "the base model" if key == BASE else f"'{key}' ({ctx.recipe.models[key].label})"
    doing = "evaluating" if emb.split == "eval" else "validating"
    with ctx.stage(emb.stage(f"evaluate:{key}"), f"{doing} {what} at {len(ctx.dims)} dims {ctx.dims}"):
        return model_result(emb, key, emb.metrics(key))



def run_comparison(ctx: RunContext, emb: Embeddings, spec: ComparisonSpec, number: int = 0) -> list[ModelResult]:
    """The comparison's column, or its columns (a funnel gives one per shortlist size). Each is
    kept in the staging folder as it finishes, so a resumed run does not compute it again."""
    kept = ctx.staging.compared(number, emb.split)
    # a comparison may choose on validation what its evaluation pass uses (the adaptor's stopping
    # epoch): its validation columns are reused only when its evaluation columns were kept too
    if ctx.resume and (emb.split == "eval" or ctx.staging.compared(number).is_file()):
        reused = load_compared(emb, kept, spec)
        if reused is not None:
            logger.info("          %s was computed before the interruption; reusing it", spec.label)
            return reused
    results = compute_comparison(ctx, emb, spec)
    save_compared(emb, kept, spec, results)
    return results


def save_compared(emb: Embeddings, path: Path, spec: ComparisonSpec, results: list[ModelResult]) -> None:
    per_query = {r.key: {str(d): {m: np.asarray(v).tolist() for m, v in by.items()} for d,
                         by in emb.per_query[r.key].items()}
                 for r in results if r.key in emb.per_query}
    payload = {"spec": spec.as_table(), "columns": [r.model_dump(mode="json") for r in results], "per_query": per_query}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def load_compared(emb: Embeddings, path: Path, spec: ComparisonSpec) -> list[ModelResult] | None:
    """The columns an interrupted run kept for this comparison, if it had the same parameters."""
    try:
        payload = json.loads(path.read_text())
        same = {k: v for k, v in json.loads(json.dumps(spec.as_table())).items() if k != "label"}
        if {k: v for k, v in payload["spec"].items() if k != "label"} != same:
            return None  # computed with other parameters (a new label alone changes nothing measured)
        results = [ModelResult.model_validate(c) for c in payload["columns"]]
        for key, by_dim in payload["per_query"].items():
            emb.per_query[key] = {int(d): {m: np.asarray(v, dtype=np.float32) for m, v in by.items()} for d,
                                  by in by_dim.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not there, or cut short: compute it again
    return results


def check_returned(spec: ComparisonSpec, out: Any, dims: Sequence[int], k: int, *, control: bool = False) -> None:
    """Refuse, where the plugin hands it over, a return value that breaks the contract: metrics
    per dimension of the run (every metric, finite, in [0, 1]), or a list of such columns."""
    from ..evaluation.metrics import METRICS, SearchCost, overlap_key

    bounded = {m.key(k) for m in METRICS} | {overlap_key(k)}
    who = f"{spec.where}: comparison '{spec.name}' (plugin '{spec.plugin}')"
    contract = ("it must return {dimension: {metric: value}} for the run's dimensions, or a list of Column "
                "(see docs/plugin-guide.md, 'Component reference'); the plugin does not follow the contract")

    def metrics_problem(metrics: Any) -> str | None:
        if not isinstance(metrics, Mapping):
            return f"returned {type(metrics).__name__} where metrics per dimension belong"
        if set(metrics) != set(dims):
            return f"returned metrics for dimensions {sorted(metrics, key=str)}, the run's are {list(dims)}"
        for d in dims:
            values = metrics[d]
            if not isinstance(values, Mapping):
                return f"returned {type(values).__name__} for dimension {d}, not a dict of metrics"
            missing = [m.key(k) for m in METRICS if m.key(k) not in values]
            if missing:
                return f"returned no {', '.join(missing)} at dimension {d}"
            for name, value in values.items():
                if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                    return f"returned {name} = {value!r} at dimension {d}, not a number"
                # retrieval metrics and overlap are shares; a plugin's own extras need only be finite
                shares = name in bounded
                if not np.isfinite(value) or (shares and not 0.0 <= float(value) <= 1.0):
                    bounds = " in [0, 1]" if shares else ""
                    return f"returned {name} = {value} at dimension {d}, not a finite number{bounds}"
        return None

    columns = out if isinstance(out, list) and not control else [Column("", out)]
    if not columns:
        raise PluginError(f"{who} returned an empty list of columns; {contract}.")
    for column in columns:
        if not isinstance(column, Column):
            raise PluginError(f"{who} returned a list holding {type(column).__name__}, not Column; {contract}.")
        problem = metrics_problem(column.metrics)
        if problem is None and column.costs is not None:
            costs = column.costs
            if not isinstance(costs, Mapping) or not all(isinstance(c, SearchCost) for c in costs.values()):
                problem = "returned costs that are not {dimension: SearchCost}"
        if problem:
            where = f" (column '{column.name}')" if column.name else ""
            raise PluginError(f"{who}{where} {problem}; {contract}.")


def compute_comparison(ctx: RunContext, emb: Embeddings, spec: ComparisonSpec) -> list[ModelResult]:
    cctx = RunComparisonContext(emb, spec)
    what = f"comparison {spec.label}" + ("" if emb.split == "eval" else " (validation)")
    with ctx.stage(emb.stage(f"compare:{spec.key}"), what):
        out = plugin_call(spec, "run", cctx)
    check_returned(spec, out, ctx.dims, ctx.settings.eval.k, control=spec.key in ctx.recipe.models)
    saved = cctx.folder / "model"
    saved_model = ctx.staging.run.relative(saved) if (saved / "modules.json").is_file() else None
    if spec.key in ctx.recipe.models:  # a control: its column is the model it added
        return [model_result(emb, spec.key, out)]
    columns = out if isinstance(out, list) else [Column("", out)]
    reads, identity = [r.name for r in spec.reads], spec.component.identity()
    params = spec.component.params.model_dump(mode="json")
    params.pop("model", None)
    results: list[ModelResult] = []
    for column in columns:
        own = column.params or ({"column": column.name} if column.name else {})
        key = column_key(spec.name, reads, {**identity, **own}) if len(columns) > 1 or own else spec.key
        if any(r.key == key for r in results):
            raise PluginError(f"{spec.where}: comparison '{spec.name}' (plugin '{spec.plugin}') returned two columns "
                              f"with the same parameters ({key}); each Column needs its own params.")
        label = f"{spec.label} {column.name}" if column.name else spec.label
        results.append(ModelResult(
            key=key, label=label, kind="comparison", component=spec.name, reads=reads,
            params={**params, **own}, metrics=round_metrics(column.metrics), costs=column.costs,
            saved_model=saved_model if not results else None, no_intervals=keep_per_query(emb, key, column),
            facts=dict(column.facts),
        ))
    if emb.split == "eval" and ctx.recipe.tasks and results:  # the [[task]] stage scores this column too
        transform = plugin_call(spec, "task_transform", cctx)
        if transform is not None and spec.reads:
            ctx.task_columns[results[0].key] = (spec.reads[0].name, transform)
    return results
