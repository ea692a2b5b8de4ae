"""Conformance checks: the contract of each component kind, run against one component in a call.

A plugin author's own tests catch what they thought of; these catch what every plugin of a kind
must do, the invariants the core relies on without checking them at run time:

* :func:`assert_index_backend_conforms`: shapes and dtypes of a search, ids in range and
  unique, scores finite, best first and on the cosine scale (a unit vector's score with itself
  near 1, never the raw inner product of int8 codes), a vector found by itself, one query and
  no query at all, ``k`` larger than the index, adding nothing, save → load giving the same
  answers, and the whole funnel (:meth:`~mrl_plugins.components.IndexBackend.funnel`: add,
  rerank to the exact cosine, save, open) for engines too;
* :func:`assert_data_source_conforms`: declared row formats, the rows' columns, an evaluation
  set whose relevant ids resolve, no evaluation text among the training texts, the same bundle
  for the same seed, a ``summary`` that is JSON and names no absolute path (it is published);
* :func:`assert_comparison_conforms`: metrics for every dimension of the context, every metric
  in [0, 1], the same result twice;
* :func:`assert_objective_conforms`: a label, and a loss built for the run's dimensions that
  gives a finite scalar on a batch and a gradient in the model.

Each collects every broken invariant and raises one :class:`ConformanceError` listing them (a
subclass of ``AssertionError``, so pytest shows it as a failed test). The built-in components and
the bundled plugins run them in this repository's tests (``tests/test_conformance.py``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..components import Comparison, DataSource, Engine, IndexBackend, Objective
from ..errors import UserError

__all__ = [
    "ConformanceError", "assert_comparison_conforms", "assert_data_source_conforms",
    "assert_index_backend_conforms", "assert_objective_conforms", "unit_vectors",
]


class ConformanceError(AssertionError):
    """Every invariant a component broke, one per line."""

    def __init__(self, component: str, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(f"{component} breaks the contract ({len(problems)} problem(s)):\n"
                         + "\n".join(f"  - {p}" for p in problems))


class _Checks:
    """Collects problems; a check that raises is a problem too (named), never a stop."""

    def __init__(self, component: str):
        self.component, self.problems = component, []  # type: tuple[str, list[str]]

    def expect(self, ok: Any, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return bool(ok)

    def run(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # the component's own code raised: that is the finding
            self.problems.append(f"{what} raised {type(exc).__name__}: {exc}")
            return None

    def done(self) -> None:
        if self.problems:
            raise ConformanceError(self.component, self.problems)


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` random unit vectors (float32), the same for the same seed."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _built(component: Any, kind: str, params: Mapping[str, Any] | None) -> Any:
    """A component instance from an instance, a class or a registered name."""
    if isinstance(component, str):
        from .models import isolated_registry

        return isolated_registry(entry_points=True).build(kind, component, params)
    if isinstance(component, type):
        cls: Any = component
        return cls(cls.Params.model_validate(dict(params or {})))
    return component


# -- index backends --------------------------------------------------------------------------------
def _check_hits(c: _Checks, where: str, scores: Any, ids: Any, n_queries: int, k: int, count: int) -> bool:
    """Shapes, dtypes, id range and uniqueness, finite scores best first."""
    scores, ids = np.asarray(scores), np.asarray(ids)
    if not c.expect(scores.shape == (n_queries, k) and ids.shape == (n_queries, k),
                    f"{where}: scores {scores.shape} and ids {ids.shape}, expected ({n_queries}, {k}) each (a "
                    "single query is still a 2-D batch of one)"):
        return False
    c.expect(np.issubdtype(ids.dtype, np.integer), f"{where}: ids are {ids.dtype}, not integers")
    c.expect(np.issubdtype(scores.dtype, np.floating), f"{where}: scores are {scores.dtype}, not floats")
    if not np.issubdtype(ids.dtype, np.integer):
        return False
    c.expect(((ids >= -1) & (ids < count)).all(), f"{where}: ids outside [-1, {count}) (e.g. "
                                                  f"{ids[(ids < -1) | (ids >= count)][:3].tolist()})")
    for row in range(n_queries):
        found = ids[row][ids[row] >= 0]
        if not c.expect(len(set(found.tolist())) == len(found), f"{where}: query {row} returns the same id twice"):
            break
        valid = scores[row][ids[row] >= 0].astype(np.float64)
        if not c.expect(np.isfinite(valid).all(), f"{where}: query {row} has scores that are not finite"):
            break
        if not c.expect((np.diff(valid) <= 1e-5).all(),
                        f"{where}: query {row}'s scores are not best first (higher is closer): "
                        f"{np.round(valid[:5], 4).tolist()}"):
            break
        if not c.expect(len(valid) == 0 or (valid.max() <= 1.05 and valid.min() >= -1.05),
                        f"{where}: scores of unit vectors outside [-1, 1] (e.g. {float(valid.max()):.4g}): the "
                        "contract's scores are cosine similarities (decode a quantised index's scores, as the "
                        "built-in int8 and binary ones do)"):
            break
    return True


def assert_index_backend_conforms(backend: Any, params: Mapping[str, Any] | None = None, *, dim: int = 32,
                                  n: int = 300, folder: Path | None = None, exact: bool | None = None) -> None:
    """Run an index backend through its contract; raise :class:`ConformanceError` listing every
    invariant it breaks. ``backend`` is an instance, a class (built with ``params``) or a
    registered name. An :class:`~mrl_plugins.components.Engine` is checked through its funnel
    only (its ``create``/``load`` are not used); pass ``folder`` for where it saves (default: a
    temporary folder). ``exact`` (default: the class's ``exact``) asks for results equal to a
    brute-force inner product."""
    built: IndexBackend = _built(backend, "index", params)
    c = _Checks(f"index backend '{getattr(built, 'name', type(built).__name__)}'")
    exact = bool(getattr(built, "exact", False)) if exact is None else exact
    corpus, queries = unit_vectors(n, dim, seed=0), unit_vectors(24, dim, seed=1)
    own = tempfile.TemporaryDirectory(prefix="mrl-conformance-") if folder is None else None
    where = Path(own.name) if own is not None else Path(folder)  # type: ignore[arg-type]
    try:
        if not isinstance(built, Engine):
            _shortlist_checks(c, built, corpus, queries, where / "shortlist.index", exact)
        _funnel_checks(c, built, corpus, queries, where / "funnel", exact)
    finally:
        if own is not None:
            own.cleanup()
    c.done()


def _shortlist_checks(c: _Checks, backend: IndexBackend, corpus: np.ndarray, queries: np.ndarray, path: Path,
                      exact: bool) -> None:
    n, dim = corpus.shape
    index = c.run("create(dim)", lambda: backend.create(dim))
    if index is None:
        return
    c.run("train(first vectors)", lambda: index.train(corpus[:256]))
    c.run("add(an empty batch)", lambda: index.add(corpus[:0]))
    c.run("add() in two batches", lambda: (index.add(corpus[: n // 2]), index.add(corpus[n // 2:])))
    c.expect(c.run("len()", lambda: len(index)) == n, f"len() is {c.run('len()', lambda: len(index))} after adding "
                                                     f"{n} vectors")
    size = c.run("bytes_per_vector()", index.bytes_per_vector)
    c.expect(isinstance(size, (int, float)) and np.isfinite(size) and size > 0,
             f"bytes_per_vector() is {size!r}, not a positive number")
    k = 10
    out = c.run("search(24 queries, k=10)", lambda: index.search(queries, k))
    if out is not None and _check_hits(c, "search(24 queries, k=10)", out[0], out[1], len(queries), k, n):
        scores, ids = np.asarray(out[0]), np.asarray(out[1])
        truth = queries @ corpus.T
        best = np.argsort(-truth, axis=1)[:, :k]
        if exact:
            c.expect((ids == best).mean() >= 0.99, f"an exact backend returned {100 * (ids == best).mean():.0f}% of "
                                                   "the brute-force top 10")
            got = np.take_along_axis(truth, np.maximum(ids, 0), axis=1)
            c.expect(np.allclose(scores, got, atol=1e-4), "an exact backend's scores differ from the inner products")
    selves = corpus[:20]
    out = c.run("search(vectors of the index)", lambda: index.search(selves, k))
    if out is not None and _check_hits(c, "search(vectors of the index)", out[0], out[1], 20, k, n):
        scores, ids = np.asarray(out[0]), np.asarray(out[1])
        found = (ids[:, 0] == np.arange(20)).mean()
        c.expect(found >= 0.9, f"a vector of the index is its own best match for {100 * found:.0f}% of 20 (expected "
                               "≥ 90%): the scores do not rank by similarity (a distance, lower is closer?)")
        itself = float(np.median(scores[:, 0]))
        c.expect(0.8 <= itself <= 1.05, f"a unit vector's score with itself is {itself:.4g}, not near 1 (cosine)")
    out = c.run("search(one query)", lambda: index.search(queries[:1], k))
    if out is not None:
        _check_hits(c, "search(one query)", out[0], out[1], 1, k, n)
    out = c.run("search(no queries)", lambda: index.search(queries[:0], k))
    if out is not None:
        _check_hits(c, "search(no queries)", out[0], out[1], 0, k, n)
    small = c.run("create(dim) for 5 vectors", lambda: backend.create(dim))
    try:  # a backend may refuse so small an index with a UserError that says why (IVF-PQ's codebooks)
        if small is not None:
            small.train(corpus[:5])
            small.add(corpus[:5])
    except UserError:
        small = None
    except Exception as exc:
        c.expect(False, f"train/add of 5 vectors raised {type(exc).__name__}: {exc} (refuse a corpus too small with "
                        "a UserError that says why)")
        small = None
    out = None
    if small is not None:
        try:  # an index that trains lazily (IVF) refuses here, the same way
            out = small.search(queries[:3], 8)
        except UserError:
            small = None
        except Exception as exc:
            c.expect(False, f"search(k larger than the index) raised {type(exc).__name__}: {exc}")
            small = None
    if small is not None and out is not None and _check_hits(c, "search(k = 8 over 5 vectors)", out[0], out[1],
                                                             3, 8, 5):
        ids = np.asarray(out[1])
        c.expect((ids[:, 5:] == -1).all() and (ids[:, :5] >= 0).all(),
                 f"k = 8 over 5 vectors: expected 5 ids then -1 padding, got {ids[0].tolist()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if c.run("save(path)", lambda: index.save(path)) is None and path.exists():
        loaded = c.run("load(path, dim)", lambda: backend.load(path, dim))
        if loaded is not None:
            c.expect(c.run("len() after load", lambda: len(loaded)) == n, "len() after save → load differs")
            before = c.run("search before save", lambda: index.search(queries, k))
            after = c.run("search after load", lambda: loaded.search(queries, k))
            if before is not None and after is not None:
                same = (np.asarray(before[1]) == np.asarray(after[1])).mean()
                c.expect(same >= 0.99, f"save → load changes the answers ({100 * same:.0f}% of ids the same)")
    else:
        c.expect(path.exists(), "save(path) wrote no file at path")


def _funnel_checks(c: _Checks, backend: IndexBackend, corpus: np.ndarray, queries: np.ndarray, folder: Path,
                   exact: bool) -> None:
    from ..search.index import funnel_index, open_funnel

    n, full = corpus.shape
    short = max(8, full // 4)
    funnel = c.run("funnel(full_dim, shortlist_dim)", lambda: funnel_index(backend, full, short, replace=True))
    if funnel is None:
        return
    try:
        docs = [f"doc {i}" for i in range(n)]
        c.run("funnel.add() in two batches", lambda: (funnel.add(corpus[: n // 2], docs[: n // 2]),
                                                     funnel.add(corpus[n // 2:], docs[n // 2:])))
        c.expect(c.run("funnel.count", lambda: funnel.count) == n, "funnel.count differs from the vectors added")
        hits = c.run("funnel.search(k=10, shortlist=50)", lambda: funnel.search(queries, 10, shortlist=50))
        if hits is not None and _check_hits(c, "funnel.search(k=10, shortlist=50)", hits.scores, hits.ids,
                                            len(queries), 10, n):
            ids = np.asarray(hits.ids)
            cosine = np.take_along_axis(queries @ corpus.T, np.maximum(ids, 0), axis=1)
            c.expect(np.allclose(np.asarray(hits.scores)[ids >= 0], cosine[ids >= 0], atol=2e-3),
                     "a reranked funnel's scores are not the full-width cosine of query and document")
        one = c.run("funnel.search(one query)", lambda: funnel.search(queries[:1], 10, shortlist=50))
        if one is not None:
            _check_hits(c, "funnel.search(one query)", one.scores, one.ids, 1, 10, n)
        decoded = c.run("funnel.decoded()", funnel.decoded)
        if decoded is not None:
            c.expect(np.asarray(decoded).shape == (n, full), f"decoded() is {np.asarray(decoded).shape}, expected "
                                                             f"({n}, {full})")
        folder.mkdir(parents=True, exist_ok=True)
        saved = c.run("funnel.save(folder)", lambda: funnel.save(folder))
        if saved is not None:
            from ..search.folder import read_manifest

            manifest = c.run("the saved manifest.json", lambda: read_manifest(folder))
            if manifest is not None:
                reopened = c.run("open(folder, manifest)", lambda: open_funnel(backend, folder, manifest))
                if reopened is not None and hits is not None:
                    again = c.run("search after open", lambda: reopened.search(queries, 10, shortlist=50))
                    if again is not None:
                        same = (np.asarray(again.ids) == np.asarray(hits.ids)).mean()
                        c.expect(same >= 0.99, f"save → open changes the funnel's answers ({100 * same:.0f}% of "
                                               "ids the same)")
                    c.run("close() after open", reopened.close)
    finally:
        c.run("funnel.close()", funnel.close)


# -- data sources -----------------------------------------------------------------------------------
def assert_data_source_conforms(source: Any, params: Mapping[str, Any] | None = None, *,
                                recipe_dir: Path | str = ".", seed: int = 0) -> None:
    """Load a data source twice with ``seed`` (and once per declared row format) and check the
    bundle against the contract; raise :class:`ConformanceError` listing every broken invariant.
    ``recipe_dir`` is what relative paths in its parameters are relative to."""
    from ..data.split import find_leaks
    from ..data.types import DataBundle, DataRequest, IRSet, RowFormat

    built: DataSource[Any] = _built(source, "data", params)
    c = _Checks(f"data source '{getattr(built, 'name', type(built).__name__)}'")
    formats = c.run("formats()", built.formats) or ()
    c.expect(len(formats) > 0, "formats() is empty: a source produces at least one row format")
    for fmt in formats:
        c.expect(isinstance(fmt, RowFormat), f"formats() holds {fmt!r}, not a RowFormat")
    for fmt in formats:
        request = DataRequest(RowFormat(fmt), seed, Path(recipe_dir))
        bundle = c.run(f"load({fmt})", partial(built.load, request))
        if bundle is None:
            continue
        if not c.expect(isinstance(bundle, DataBundle), f"load({fmt}) returned {type(bundle).__name__}, not a "
                                                        "DataBundle"):
            continue
        c.expect(bundle.row_format == fmt, f"load({fmt}) returned {bundle.row_format} rows")
        c.expect(list(bundle.train.column_names) == list(RowFormat(fmt).columns),
                 f"load({fmt}): training columns {bundle.train.column_names}, expected {list(RowFormat(fmt).columns)}")
        c.expect(len(bundle.train) > 0, f"load({fmt}): no training rows")
        c.expect(isinstance(bundle.eval, IRSet) and len(bundle.eval.queries) > 0,
                 f"load({fmt}): an evaluation set without queries")
        texts = [t for col in bundle.train.column_names if col != "score" for t in bundle.train[col]]
        c.expect(all(isinstance(t, str) and t.strip() for t in texts), f"load({fmt}): empty or non-text training "
                                                                       "texts")
        leaked = find_leaks(bundle.training_texts(), bundle.eval)
        c.expect(not any(leaked), f"load({fmt}): {leaked[0]} evaluation queries and {leaked[1]} relevant documents "
                                  "also occur among the training texts (a leak)")
        if bundle.validation is not None:
            leaked = find_leaks(bundle.training_texts(), bundle.validation)
            c.expect(not any(leaked), f"load({fmt}): the validation set leaks ({leaked[0]} queries, {leaked[1]} "
                                      "documents among the training texts)")
        c.expect(_summary_problem(bundle.summary) is None, f"load({fmt}): summary {_summary_problem(bundle.summary)}")
        again = c.run(f"load({fmt}) again with the same seed", partial(built.load, request))
        if isinstance(again, DataBundle):
            c.expect(again.train.to_dict() == bundle.train.to_dict() and again.eval.queries == bundle.eval.queries
                     and again.eval.corpus == bundle.eval.corpus and again.eval.relevant == bundle.eval.relevant,
                     f"load({fmt}) gives different rows for the same seed: a run could not be repeated")
    c.done()


def _summary_problem(summary: Any) -> str | None:
    """Why a data source's ``summary`` cannot be published as it is, or ``None``."""
    from ..publish.model import absolute_paths

    try:
        json.dumps(summary)
    except (TypeError, ValueError) as exc:
        return f"is not JSON ({exc}); results.json and mrl.json hold it"
    found = absolute_paths(summary)
    if found:
        return (f"names absolute paths ({', '.join(found[:2])}); it is published in results.json and mrl.json: give "
                "paths relative to the recipe, or file names")
    return None


# -- comparisons and objectives ---------------------------------------------------------------------
def assert_comparison_conforms(comparison: Any, ctx: Any, params: Mapping[str, Any] | None = None) -> None:
    """Run a comparison twice on ``ctx`` (e.g. :class:`~mrl_plugins.testing.ArrayComparisonContext`)
    and check what it returns against the contract (what the run itself refuses, found in the
    plugin's own tests instead): every dimension of the context, every retrieval metric in [0, 1],
    the same numbers twice."""
    from ..components import Column
    from ..evaluation.metrics import METRICS

    built: Comparison[Any] = _built(comparison, "compare", params)
    c = _Checks(f"comparison '{getattr(built, 'name', type(built).__name__)}'")
    c.run("label()", lambda: built.label({"base": "base", "mrl": "MRL"}))
    first = c.run("run(ctx)", lambda: built.run(ctx))
    columns = first if isinstance(first, list) else [Column("", first)] if first is not None else []
    keys = {m.key(ctx.k) for m in METRICS}
    for column in columns:
        metrics = column.metrics if isinstance(column, Column) else column
        if not c.expect(isinstance(metrics, Mapping) and set(metrics) == set(ctx.dims),
                        f"run() returned metrics for {sorted(metrics) if isinstance(metrics, Mapping) else metrics!r}"
                        f", the context's dimensions are {list(ctx.dims)}"):
            continue
        for d, values in metrics.items():
            missing = keys - set(values)
            c.expect(not missing, f"dimension {d}: no {', '.join(sorted(missing))}")
            bad = {m: v for m, v in values.items() if m in keys and not (np.isfinite(v) and 0 <= v <= 1)}
            c.expect(not bad, f"dimension {d}: metrics outside [0, 1]: {bad}")
    second = c.run("run(ctx) again", lambda: built.run(ctx))
    if first is not None and second is not None:
        c.expect(_plain(first) == _plain(second), "run(ctx) twice gives different numbers: a comparison must be "
                                                  "deterministic (seed what it samples)")
    c.done()


def _plain(out: Any) -> Any:
    from ..components import Column

    if isinstance(out, list):
        return [_plain(x) for x in out]
    if isinstance(out, Column):
        return (out.name, _plain(out.params), _plain(out.metrics))
    if isinstance(out, Mapping):
        return {k: _plain(v) for k, v in out.items()}
    return round(float(out), 6) if isinstance(out, (float, np.floating)) else out


def assert_objective_conforms(objective: Any, params: Mapping[str, Any] | None = None, *,
                              model: Any = None, dims: Sequence[int] = (32, 16, 8)) -> None:
    """Build an objective around a base loss (MNR) of ``model`` (default: the test kit's tiny
    model, 32 dims) for ``dims`` and train one step's worth: a label for tables, a module whose
    value on a batch is a finite scalar that back-propagates into the model."""
    import torch

    from ..contexts import ObjectiveContext
    from ..models.compat import st_losses

    built: Objective[Any] = _built(objective, "objective", params)
    c = _Checks(f"objective '{getattr(built, 'name', type(built).__name__)}'")
    label = c.run("label()", built.label)
    c.expect(isinstance(label, str) and label.strip(), f"label() is {label!r}, not a name for tables")
    if model is None:
        from sentence_transformers import SentenceTransformer

        from .models import tiny_model

        with tempfile.TemporaryDirectory(prefix="mrl-conformance-") as tmp:
            model = SentenceTransformer(str(tiny_model(Path(tmp) / "tiny", dim=max(dims))), device="cpu")
    base = st_losses().MultipleNegativesRankingLoss(model)
    ctx = ObjectiveContext(list(dims), None, max(dims))
    loss = c.run("build(model, loss, ctx)", lambda: built.build(model, base, ctx))
    if loss is not None and c.expect(isinstance(loss, torch.nn.Module), f"build() returned {type(loss).__name__}, "
                                                                         "not a torch.nn.Module"):
        features = [model.tokenize(["package manager", "text editor"]), model.tokenize(["manager of packages",
                                                                                     "an editor for text"])]
        model.zero_grad()
        value = c.run("the loss on a batch", lambda: loss(features, None))
        if value is not None and c.expect(isinstance(value, torch.Tensor) and value.dim() == 0
                                          and bool(torch.isfinite(value)),
                                          f"the loss on a batch is {value!r}, not a finite scalar tensor"):
            c.run("backward()", value.backward)
            grads = [p.grad for p in model.parameters() if p.requires_grad]
            c.expect(any(g is not None and bool(g.abs().sum() > 0) for g in grads),
                     "the loss does not reach the model's weights (no gradient)")
    c.done()
