"""The conformance kit (``mrl_plugins.conformance``, issue #21): every built-in component passes
its kind's contract, and deliberately broken components fail it with the invariant they break,
among them the two bugs a third-party usearch backend had (raw int8 inner products as scores, a
crash on a single query)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.components import Comparison, DataSource, IndexBackend, Objective, Params, ShortlistIndex
from mrl_plugins.data.types import DataBundle, DataRequest, IRSet, rows_to_dataset
from mrl_plugins.testkit.conformance import (
    ConformanceError,
    assert_comparison_conforms,
    assert_data_source_conforms,
    assert_index_backend_conforms,
    assert_objective_conforms,
    unit_vectors,
)
from mrl_plugins.testkit.contexts import ArrayComparisonContext
from mrl_plugins.testkit.recipes import toy_pairs, write_jsonl

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "debian-sample-Translation-en.xz"


@pytest.mark.parametrize("name, params", [
    ("flat", {}), ("hnsw", {}), ("hnsw", {"storage": "int8"}), ("ivf", {}), ("ivf", {"pq": 4}), ("int8", {}),
    ("binary", {}),
])
def test_every_built_in_index_backend_conforms(name, params, tmp_path):
    assert_index_backend_conforms(name, params, folder=tmp_path)


# -- a numpy backend, correct, and broken the two ways a real plugin was ---------------------------
class NumpyIndex(ShortlistIndex):
    def __init__(self, dim: int, codes: bool = False, squeeze: bool = False):
        self.dim, self.codes, self.squeeze = dim, codes, squeeze
        self.x = np.zeros((0, dim), np.float32)

    def add(self, vectors):
        stored = np.round(vectors * 127) if self.codes else vectors  # int8 codes kept as their raw values
        self.x = np.vstack([self.x, stored.astype(np.float32)])

    def search(self, queries, k):
        q = np.round(queries * 127) if self.codes else queries
        scores = q @ self.x.T
        order = np.argsort(-scores, axis=1)[:, :k]
        top = np.take_along_axis(scores, order, axis=1)
        if order.shape[1] < k:
            pad = k - order.shape[1]
            order = np.hstack([order, -np.ones((len(q), pad), np.int64)])
            top = np.hstack([top, np.full((len(q), pad), -np.inf, np.float32)])
        if self.squeeze:  # as a library that returns 1-D arrays for a single query
            return top.squeeze(), order.squeeze()
        return top.astype(np.float32), order.astype(np.int64)

    def save(self, path):
        np.save(path.with_suffix(".npy"), self.x)
        path.write_bytes(b"")

    def bytes_per_vector(self):
        return 4.0 * self.dim

    def __len__(self):
        return len(self.x)


def numpy_backend(name: str, **flags) -> type[IndexBackend]:
    class Backend(IndexBackend):
        def create(self, dim):
            return NumpyIndex(dim, **flags)

        def load(self, path, dim):
            index = NumpyIndex(dim, **flags)
            index.x = np.load(path.with_suffix(".npy"))
            return index

    Backend.name = name
    return Backend


def test_a_correct_plugin_backend_conforms(tmp_path):
    assert_index_backend_conforms(numpy_backend("numpy")(), folder=tmp_path, exact=True)


def test_raw_int8_inner_products_as_scores_break_the_contract(tmp_path):
    with pytest.raises(ConformanceError) as caught:
        assert_index_backend_conforms(numpy_backend("raw-int8", codes=True)(), folder=tmp_path)
    text = str(caught.value)
    assert "index backend 'raw-int8' breaks the contract" in text
    assert "scores of unit vectors outside [-1, 1]" in text and "cosine similarities" in text
    assert "not near 1 (cosine)" in text


def test_a_crash_on_a_single_query_breaks_the_contract(tmp_path):
    with pytest.raises(ConformanceError) as caught:
        assert_index_backend_conforms(numpy_backend("squeezes", squeeze=True)(), folder=tmp_path)
    problems = caught.value.problems
    assert any(p.startswith("search(one query): scores (10,) and ids (10,), expected (1, 10)") for p in problems), \
        problems
    assert not any(p.startswith("search(24 queries") for p in problems)  # a batch is fine: only the one query


def test_a_distance_that_is_lower_for_closer_breaks_the_contract(tmp_path):
    class Distance(NumpyIndex):
        def search(self, queries, k):
            scores, ids = super().search(queries, k)
            return 2 - 2 * scores, ids  # squared L2 of unit vectors, ascending

    class Backend(numpy_backend("l2")):
        def create(self, dim):
            return Distance(dim)

    with pytest.raises(ConformanceError, match="not best first"):
        assert_index_backend_conforms(Backend(), folder=tmp_path)


# -- data sources ----------------------------------------------------------------------------------
def test_the_built_in_data_sources_conform(tmp_path):
    from mrl_plugins import testkit as testing

    assert testing.assert_data_source_conforms is assert_data_source_conforms  # the kit re-exports them
    write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(160))
    assert_data_source_conforms("local", {"path": "pairs.jsonl", "eval_queries": 30}, recipe_dir=tmp_path)
    assert_data_source_conforms("debian", {"path": str(SAMPLE), "train_pairs": 200, "eval_queries": 50,
                                           "corpus_size": 300})


class LeakyParams(Params):
    leak: bool = True
    absolute: bool = True
    seeded: bool = True


class Leaky(DataSource[LeakyParams]):
    """A source that leaks, publishes a machine path and ignores its seed."""

    name = "leaky"
    Params = LeakyParams
    produces = ("pairs",)
    calls = 0

    def load(self, request: DataRequest) -> DataBundle:
        rows = toy_pairs(60)
        Leaky.calls += 1
        if not self.params.seeded:
            rows = rows[Leaky.calls:]
        train = rows[10:] + (rows[:2] if self.params.leak else [])
        held = rows[:10]
        ir = IRSet({f"q{i}": r["anchor"] for i, r in enumerate(held)},
                   {f"d{i}": r["positive"] for i, r in enumerate(held)},
                   {f"q{i}": {f"d{i}"} for i in range(len(held))})
        summary = {"read": "/home/someone/data/pairs.jsonl" if self.params.absolute else "pairs.jsonl"}
        return DataBundle(rows_to_dataset(train, "pairs"), ir, "pairs", summary)


def test_a_source_that_leaks_names_a_path_and_ignores_its_seed_fails_each_way():
    assert_data_source_conforms(Leaky(LeakyParams(leak=False, absolute=False)))
    with pytest.raises(ConformanceError) as caught:
        assert_data_source_conforms(Leaky(LeakyParams(seeded=False)))
    text = str(caught.value)
    assert "2 evaluation queries and 2 relevant documents also occur among the training texts (a leak)" in text
    assert "names absolute paths (/home/someone/data/pairs.jsonl)" in text
    assert "different rows for the same seed" in text


# -- comparisons and objectives -----------------------------------------------------------------------
def array_context(tmp_path):
    corpus = unit_vectors(80, 32, seed=3)
    queries = unit_vectors(20, 32, seed=4)
    return ArrayComparisonContext(queries, corpus, [{i} for i in range(20)], [32, 16, 8],
                                  fit_vectors=corpus, texts=[f"doc {i}" for i in range(80)], folder=tmp_path)


def test_the_pca_comparison_conforms(tmp_path):
    assert_comparison_conforms("pca", array_context(tmp_path))


class Overflow(Comparison):
    """Returns a share above one, and different numbers each call."""

    name = "overflow"
    calls = 0

    def run(self, ctx):
        Overflow.calls += 1
        return {d: {"mrr@10": 1.5, "recall@10": 0.5, "ndcg@10": 0.1 * Overflow.calls} for d in ctx.dims}


def test_a_comparison_returning_shares_above_one_and_changing_fails(tmp_path):
    with pytest.raises(ConformanceError) as caught:
        assert_comparison_conforms(Overflow(), array_context(tmp_path))
    text = str(caught.value)
    assert "metrics outside [0, 1]: {'mrr@10': 1.5}" in text and "twice gives different numbers" in text


def test_the_built_in_objectives_conform():
    for name in ("matryoshka", "matryoshka-2d", "prefix-distill", "binary-matryoshka"):
        assert_objective_conforms(name)


class Detached(Objective):
    """A loss that never reaches the model."""

    name = "detached"

    def build(self, model, loss, ctx):
        import torch

        class Zero(torch.nn.Module):
            def forward(self, features, labels):
                return torch.zeros((), requires_grad=True)

        return Zero()


def test_an_objective_whose_loss_never_reaches_the_model_fails():
    with pytest.raises(ConformanceError, match="does not reach the model's weights"):
        assert_objective_conforms(Detached())
