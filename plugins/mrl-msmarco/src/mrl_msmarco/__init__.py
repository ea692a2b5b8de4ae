"""Data source ``msmarco``: MS MARCO (query, positive, hard negative) triplets, streamed.

Rows are streamed with ``datasets.load_dataset(..., streaming=True)`` and reading stops as soon
as the evaluation set and the requested training triplets are collected: nothing is downloaded
whole. The first ``eval_queries`` distinct queries of the (shuffled) stream form the evaluation
set: each query's positive is its relevant passage, and the corpus is every positive and
negative read for those queries. Rows that contain an evaluation passage are not trained on,
and an evaluation query's passage that was already trained on stays out of the corpus.
"""

from __future__ import annotations

import logging

from pydantic import Field

from mrl_plugins import hookimpl
from mrl_plugins.components import DataSource, Params
from mrl_plugins.data import DataBundle, DataRequest, IRSet, open_dataset, require_columns, rows_to_dataset

logger = logging.getLogger(__name__)

COLUMNS = ("query", "positive", "negative")


class MSMarcoParams(Params):
    dataset: str = Field("sentence-transformers/msmarco-msmarco-distilbert-base-v3", description="Hub dataset id.")
    subset: str = Field("triplet-hard", description="Dataset configuration (subset).")
    split: str = Field("train")
    data_files: str | None = Field(None, description="Local .parquet/.jsonl in the same schema, instead of the Hub.")
    columns: dict[str, str] = Field(default_factory=dict, description="Map query/positive/negative to other names.")
    train_triplets: int = Field(10_000, gt=0, description="Training triplets to collect.")
    eval_queries: int = Field(500, gt=0, description="Distinct queries held out for evaluation.")
    seed: int | None = Field(None, description="Shuffle seed (default: the recipe's seed).")
    shuffle_buffer: int = Field(10_000, ge=0, description="Streaming shuffle buffer; 0 keeps the stream order.")


class MSMarcoSource(DataSource[MSMarcoParams]):
    """MS MARCO hard-negative triplets, streamed; evaluation queries held out from training."""

    name = "msmarco"
    Params = MSMarcoParams
    produces = ("triplets", "pairs")

    def card_metadata(self):
        """The Hub dataset the rows came from (none for local files in its schema)."""
        return {} if self.params.data_files else {"datasets": [self.params.dataset]}

    def stream(self, request: DataRequest):
        p = self.params
        ds = open_dataset(
            p.dataset, subset=p.subset, split=p.split, data_files=p.data_files, base_dir=request.recipe_dir,
            streaming=True, local_hint='data_files = "msmarco-triplets.parquet" (columns query, positive, negative)',
        )
        if p.shuffle_buffer:
            ds = ds.shuffle(seed=p.seed if p.seed is not None else request.seed, buffer_size=p.shuffle_buffer)
        return ds

    def load(self, request: DataRequest) -> DataBundle:
        p = self.params
        names = {c: p.columns.get(c, c) for c in COLUMNS}
        queries: dict[str, str] = {}  # text -> qid
        corpus: dict[str, str] = {}  # text -> did
        relevant: dict[str, set[str]] = {}
        train: list[dict] = []
        train_texts: set[str] = set()
        streamed = skipped = 0
        for row in self.stream(request):
            if streamed == 0:
                require_columns(list(row), list(names.values()), f"{p.data_files or p.dataset}")
            streamed += 1
            q, pos, neg = (row[names[c]] for c in COLUMNS)
            if len(queries) < p.eval_queries or q in queries:
                # an evaluation row: its passages join the corpus unless already trained on
                qid = queries.setdefault(q, f"q{len(queries)}")
                for text in (pos, neg):
                    if text not in train_texts:
                        corpus.setdefault(text, f"d{len(corpus)}")
                if pos in corpus:
                    relevant.setdefault(qid, set()).add(corpus[pos])
                continue
            if pos in corpus or neg in corpus:
                skipped += 1
                continue
            train.append({"anchor": q, "positive": pos, "negative": neg})
            train_texts.update((q, pos, neg))
            if len(train) >= p.train_triplets:
                break
        if len(train) < p.train_triplets:
            logger.warning("msmarco: the stream ended after %d training triplets (%d requested); using %d",
                           len(train), p.train_triplets, len(train))
        eval_set = IRSet({qid: q for q, qid in queries.items()}, {did: t for t, did in corpus.items()}, relevant)
        summary = {"streamed_rows": streamed, "skipped_for_leakage": skipped,
                   "train_triplets_requested": p.train_triplets, "train_triplets": len(train)}
        if request.row_format == "pairs":
            train = [{"anchor": r["anchor"], "positive": r["positive"]} for r in train]
        return DataBundle(rows_to_dataset(train, request.row_format), eval_set, request.row_format, summary)


@hookimpl
def register_data_sources(register):
    register(MSMarcoSource)
