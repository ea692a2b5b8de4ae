"""mrl-msmarco on small files in the Hub schema (query, positive, negative), via datasets streaming."""

from __future__ import annotations

import json

import datasets
import pytest

from mrl_msmarco import MSMarcoSource
from mrl_plugins.data.split import find_leaks
from mrl_plugins.data.types import DataRequest
from mrl_plugins.errors import UserError
from mrl_plugins.plugins import load_registry


def triplet_rows(queries: int = 60, per_query: int = 3) -> list[dict]:
    return [
        {"query": f"what is topic {q}", "positive": f"topic {q} is a passage about {q}",
         "negative": f"hard negative {q}-{n}"}
        for q in range(queries)
        for n in range(per_query)
    ]


@pytest.fixture
def parquet_file(tmp_path):
    path = tmp_path / "triplets.parquet"
    datasets.Dataset.from_list(triplet_rows()).to_parquet(str(path))
    return path


def source(**params) -> MSMarcoSource:
    return MSMarcoSource(MSMarcoSource.Params(**params))


def test_eval_set_and_training_share_no_text(parquet_file, tmp_path):
    for buffer in (0, 50):  # stream order, and shuffled so evaluation rows interleave with training rows
        bundle = source(data_files=parquet_file.name, train_triplets=50, eval_queries=10, shuffle_buffer=buffer).load(
            DataRequest("triplets", seed=0, recipe_dir=tmp_path)
        )
        assert bundle.train.column_names == ["anchor", "positive", "negative"]
        assert len(bundle.train) == 50 and len(bundle.eval.queries) == 10
        assert all(len(docs) == 1 for docs in bundle.eval.relevant.values())
        texts = [t for c in bundle.train.column_names for t in bundle.train[c]]
        assert find_leaks(texts, bundle.eval) == (0, 0)
        assert not set(texts) & set(bundle.eval.corpus.values())
        if buffer == 0:
            assert len(bundle.eval.corpus) == 10 * 4  # each query's positive and its 3 negatives


def test_streams_and_stops_after_the_requested_rows(parquet_file, tmp_path, monkeypatch):
    calls = []
    real = datasets.load_dataset

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    bundle = source(data_files=parquet_file.name, train_triplets=20, eval_queries=5, shuffle_buffer=0).load(
        DataRequest("triplets", seed=0, recipe_dir=tmp_path)
    )
    assert calls and all(c.get("streaming") is True for c in calls)
    # 5 queries x 3 rows for evaluation, then 20 training rows: nothing more was read
    assert bundle.summary["streamed_rows"] == 15 + 20 < len(triplet_rows())


def test_pairs_for_a_pairs_loss(parquet_file, tmp_path):
    bundle = source(data_files=parquet_file.name, train_triplets=10, eval_queries=5).load(
        DataRequest("pairs", seed=0, recipe_dir=tmp_path)
    )
    assert bundle.train.column_names == ["anchor", "positive"]


def test_column_mapping_and_missing_columns(tmp_path):
    rows = [{"q": r["query"], "pos": r["positive"], "neg": r["negative"]} for r in triplet_rows(20)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match=r"missing columns 'query', 'positive', 'negative'; it has 'q', 'pos', 'neg'"):
        source(data_files="t.jsonl", train_triplets=5, eval_queries=2).load(DataRequest("triplets", 0, tmp_path))
    bundle = source(data_files="t.jsonl", columns={"query": "q", "positive": "pos", "negative": "neg"},
                    train_triplets=5, eval_queries=2).load(DataRequest("triplets", 0, tmp_path))
    assert len(bundle.train) == 5


def test_short_stream_is_a_stated_clamp(parquet_file, tmp_path, caplog):
    bundle = source(data_files=parquet_file.name, train_triplets=10_000, eval_queries=5).load(
        DataRequest("triplets", seed=0, recipe_dir=tmp_path)
    )
    assert bundle.summary["train_triplets"] == len(bundle.train) < 10_000
    assert "stream ended" in caplog.text


def test_unreachable_hub_says_so_and_suggests_local_files(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'sentence-transformers/msmarco-msmarco-distilbert-base-v3' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as info:
        source().load(DataRequest("triplets", seed=0, recipe_dir=tmp_path))
    message = str(info.value)
    assert "from the Hugging Face Hub" in message and "data_files" in message and "triplet-hard" in message


def test_registers_through_its_entry_point():
    registry = load_registry()
    assert registry.get("data", "msmarco") is MSMarcoSource
    assert registry.owner("data", "msmarco") == "mrl-msmarco"


def test_keeps_the_data_source_contract(parquet_file, tmp_path):
    """mrl-plugins' conformance checks (every row format, no leak, seeded, a publishable summary)."""
    from mrl_plugins.testkit.conformance import assert_data_source_conforms

    assert_data_source_conforms(source(data_files=parquet_file.name, train_triplets=50, eval_queries=10),
                                recipe_dir=tmp_path)
    assert source(data_files=parquet_file.name).card_metadata() == {}  # local files: no Hub dataset to name
    assert source().card_metadata() == {"datasets": ["sentence-transformers/msmarco-msmarco-distilbert-base-v3"]}
