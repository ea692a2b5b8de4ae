"""Metrics against hand-computed values; encode once whatever the number of dimensions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mrl_plugins.data.types import IRSet
from mrl_plugins.evaluation.retrieval import evaluate, ranking_metrics, score_dims, top_k
from mrl_plugins.testkit.recipes import toy_pairs


def test_ranking_metrics_by_hand():
    # ranking 3, 1, 0, 2; relevant {1, 2}; k = 3 → hit at rank 2 only
    m = ranking_metrics(np.array([[3, 1, 0, 2]]), [{1, 2}], k=3)
    assert m["mrr@3"] == pytest.approx(0.5)
    assert m["recall@3"] == pytest.approx(0.5)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_two_query_example_by_hand():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    corpus = np.array([[1, 0.1], [0.9, -0.5], [0.1, 1], [-1, 0.2]], dtype=np.float32)
    # q0 ranks d0, d1, d2, d3 (relevant d1 at rank 2); q1 ranks d2, d3, d0, d1 (relevant d2, d3)
    m = score_dims(queries, corpus, [{1}, {2, 3}], [2], k=10)[2]
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["recall@10"] == pytest.approx(1.0)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0) / 2)


def test_truncated_vectors_are_renormalised():
    # at 3 dims d1 wins (cos .8 vs .6); cut to 2 dims and re-normalised, d0 points exactly at q0
    queries = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    corpus = np.array([[0.6, 0.0, -0.8], [0.8, 0.6, 0.0]], dtype=np.float32)
    m = score_dims(queries, corpus, [{0}], [3, 2], k=10)
    assert m[3]["mrr@10"] == pytest.approx(0.5)
    assert m[2]["mrr@10"] == pytest.approx(1.0)


def test_chunked_search_equals_unchunked():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    c = rng.normal(size=(50, 16)).astype(np.float32)
    assert np.array_equal(top_k(q, c, 10), top_k(q, c, 10, corpus_chunk=6, query_chunk=3))


class CountingModel:
    """Wraps a model and counts encode calls per role."""

    def __init__(self, model):
        self.model, self.calls = model, {"query": 0, "document": 0}

    def encode_query(self, texts, **kw):
        self.calls["query"] += 1
        return self.model.encode_query(texts, **kw)

    def encode_document(self, texts, **kw):
        self.calls["document"] += 1
        return self.model.encode_document(texts, **kw)


@pytest.fixture(scope="module")
def small_ir():
    rows = toy_pairs(40)
    return IRSet(
        queries={f"q{i}": r["anchor"] for i, r in enumerate(rows)},
        corpus={f"d{i}": r["positive"] for i, r in enumerate(rows)} | {f"n{i}": r["negative"] for i, r in enumerate(rows)},
        relevant={f"q{i}": {f"d{i}"} for i in range(len(rows))},
    )


def test_encode_once_whatever_the_number_of_dims(tiny_model_dir, small_ir):
    from sentence_transformers import SentenceTransformer

    model = CountingModel(SentenceTransformer(str(tiny_model_dir), device="cpu"))
    one = evaluate(model, small_ir, [32])
    assert model.calls == {"query": 1, "document": 1}
    model.calls = {"query": 0, "document": 0}
    many = evaluate(model, small_ir, [32, 16, 8, 4])
    assert model.calls == {"query": 1, "document": 1}
    assert many[32] == one[32]


def test_matches_sentence_transformers_evaluator(tiny_model_dir, small_ir):
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.evaluation import InformationRetrievalEvaluator

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    ours = evaluate(model, small_ir, [32, 8])
    for dim in (32, 8):
        ev = InformationRetrievalEvaluator(
            small_ir.queries, small_ir.corpus, small_ir.relevant, truncate_dim=dim, write_csv=False,
            mrr_at_k=[10], ndcg_at_k=[10], precision_recall_at_k=[10], accuracy_at_k=[10], map_at_k=[10],
        )
        theirs = ev(model)
        for metric in ("mrr@10", "recall@10", "ndcg@10"):
            assert ours[dim][metric] == pytest.approx(theirs[f"cosine_{metric}"], abs=1e-6)


def test_tiny_model_reads_its_words(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    assert "[UNK]" not in model.tokenizer.tokenize("Audio video package")
    a, b = model.encode(["audio video", "kernel editor"])
    assert not np.allclose(a, b, atol=1e-3)
