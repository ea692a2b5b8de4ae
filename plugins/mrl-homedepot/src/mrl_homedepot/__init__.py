"""Data source ``homedepot``: Home Depot product search with human relevance judgements.

Real customer search terms paired with products, each pair rated 1 (irrelevant) to 3 (highly
relevant) by several people and averaged. A pair is a positive when its relevance is above
``threshold`` (2.5 by default, so 2.5 itself is not). Two layouts are read through ``datasets``:

* the Hub dataset ``bstds/home_depot`` (or local parquet/jsonl in its schema): ``query``,
  ``entity_id``, ``name``, ``description``, ``relevance``;
* the original Kaggle files, ``kaggle_dir`` holding ``train.csv`` (``search_term``,
  ``product_uid``, ``product_title``, ``relevance``; Latin-1) and ``product_descriptions.csv``.

The split is by query *and* by product: test queries are drawn at random, every product they
were judged against becomes a test product, and a training row must share neither. The
evaluation searches the test queries (those with at least one positive) in all test products.

Evaluation task ``homedepot-similarity``: the same held-out pairs (every test query with every
product it was judged against), scored as semantic similarity: Spearman (and Pearson) of the
cosine of query and product against the people's relevance, at every width. The graded
relevance the retrieval evaluation only thresholds is what CoSENT trains on and what a
similarity evaluation judges.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any, Literal

from pydantic import Field

from mrl_plugins import hookimpl
from mrl_plugins.components import DataSource, Params, Task, TaskContext, TaskScores, ValidationContext
from mrl_plugins.data import (
    DataBundle,
    DataRequest,
    IRSet,
    RowFormat,
    open_dataset,
    read_table,
    require_columns,
    rows_to_dataset,
)
from mrl_plugins.errors import UserError

logger = logging.getLogger(__name__)

HUB_COLUMNS = {"query": "query", "product_id": "entity_id", "title": "name", "description": "description",
               "relevance": "relevance"}
KAGGLE_COLUMNS = {"query": "search_term", "product_id": "product_uid", "title": "product_title",
                  "description": "product_description", "relevance": "relevance"}


class HomeDepotParams(Params):
    dataset: str = Field("bstds/home_depot", description="Hub dataset id.")
    split: str = Field("train")
    data_files: str | None = Field(None, description="Local .parquet/.jsonl in the Hub schema, instead of the Hub.")
    kaggle_dir: str | None = Field(None, description="Folder with Kaggle's train.csv and product_descriptions.csv.")
    encoding: str = Field("latin-1", description="Encoding of the Kaggle CSV files.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Override column names: query, product_id, title, description, relevance."
    )
    sample_size: int | None = Field(25_000, gt=0, description="Rows drawn before splitting (None: all).")
    threshold: float = Field(2.5, description="A pair is positive when relevance > threshold.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of queries held out for evaluation.")
    seed: int | None = Field(None, description="Sampling and split seed (default: the recipe's seed).")
    product_text: Literal["title", "description", "both"] = Field(
        "description", description="What a product's text is.")


class HomeDepotSource(DataSource[HomeDepotParams]):
    """Home Depot search: (query, product) positives for MNR, relevance-scored pairs for CoSENT."""

    name = "homedepot"
    Params = HomeDepotParams
    produces = ("pairs", "scored-pairs")

    def card_metadata(self):
        """The Hub dataset the rows came from (none for the Kaggle files or local files)."""
        p = self.params
        return {} if p.data_files or p.kaggle_dir else {"datasets": [p.dataset]}

    def check(self, ctx: ValidationContext) -> list[str]:
        p = self.params
        problems = []
        if p.kaggle_dir and p.data_files:
            problems.append("kaggle_dir: give either kaggle_dir or data_files, not both.")
        if p.kaggle_dir:
            for name in ("train.csv", "product_descriptions.csv"):
                if not (ctx.recipe_dir / p.kaggle_dir / name).is_file():
                    problems.append(f"kaggle_dir: '{p.kaggle_dir}' has no {name}.")
        unknown = set(p.columns) - set(HUB_COLUMNS)
        if unknown:
            problems.append(f"columns: unknown {', '.join(sorted(unknown))}; known: {', '.join(HUB_COLUMNS)}.")
        return problems

    # -- reading -------------------------------------------------------------------------
    def _records(self, request: DataRequest) -> tuple[list[dict[str, Any]], str]:
        p = self.params
        if p.kaggle_dir:
            base = request.recipe_dir / p.kaggle_dir
            train = read_table(base / "train.csv", encoding=p.encoding)
            desc = read_table(base / "product_descriptions.csv", encoding=p.encoding)
            names = {**KAGGLE_COLUMNS, **p.columns}
            require_columns(desc.column_names, [names["product_id"], names["description"]],
                            str(base / "product_descriptions.csv"))
            descriptions = dict(zip(desc[names["product_id"]], desc[names["description"]]))
            need = [names[c] for c in ("query", "product_id", "title", "relevance")]
            require_columns(train.column_names, need, str(base / "train.csv"))
            table, where = train, str(base / "train.csv")
        else:
            table = open_dataset(
                p.dataset, split=p.split, data_files=p.data_files, base_dir=request.recipe_dir,
                local_hint='data_files = "home_depot.parquet" (Hub schema) or kaggle_dir = "path/to/kaggle/files"',
            )
            names = {**HUB_COLUMNS, **p.columns}
            need = [names[c] for c in ("query", "product_id", "relevance")]
            need += [names[c] for c in ("title", "description") if p.product_text in (c, "both")]
            where = p.data_files or p.dataset
            require_columns(table.column_names, need, where)
            descriptions = None
        n = len(table)
        cols = {key: list(table[names[key]]) if names[key] in table.column_names else [None] * n for key in names}
        if descriptions is not None:  # Kaggle: descriptions live in their own file, joined by product id
            cols["description"] = [descriptions.get(pid) for pid in cols["product_id"]]
        records = [
            {"query": q, "product_id": str(pid), "relevance": rel, "title": title, "description": desc}
            for q, pid, rel, title, desc in zip(
                cols["query"], cols["product_id"], cols["relevance"], cols["title"], cols["description"]
            )
        ]
        return records, where

    def _text(self, r: dict[str, Any]) -> str | None:
        kind = self.params.product_text
        if kind == "both":
            parts = [t for t in (r["title"], r["description"]) if t]
            return ". ".join(parts) if parts else None
        return r[kind]

    # -- the split -----------------------------------------------------------------------
    def split(self, request: DataRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], str]:
        """Training rows, test rows (every pair of a test query: ``query``, ``product_id``,
        ``text``, ``relevance``), summary facts and where the rows came from: the split
        :meth:`load` evaluates on, and the ``homedepot-similarity`` task scores."""
        p = self.params
        seed = p.seed if p.seed is not None else request.seed
        records, where = self._records(request)
        valid, bad_relevance, no_text = [], 0, 0
        for r in records:
            rel = r["relevance"]
            try:
                rel = float(rel)
            except (TypeError, ValueError):
                rel = math.nan
            if not 1.0 <= rel <= 3.0:  # NaN fails too
                bad_relevance += 1
                continue
            text = self._text(r)
            if not r["query"] or not text:
                no_text += 1
                continue
            valid.append({**r, "relevance": rel, "text": text})
        if bad_relevance:
            logger.warning("homedepot: skipped %d rows with a missing relevance or one outside 1–3", bad_relevance)
        rng = random.Random(seed)
        sample_size = p.sample_size
        if sample_size is not None and sample_size > len(valid):
            logger.warning("homedepot: sample_size %d is larger than the %d usable rows of %s; using all of them",
                           sample_size, len(valid), where)
            sample_size = None
        sampled = valid if sample_size is None else rng.sample(valid, sample_size)

        queries = sorted({r["query"] for r in sampled})
        rng.shuffle(queries)
        test_queries = set(queries[: max(1, round(len(queries) * p.test_fraction))])
        test_rows = [r for r in sampled if r["query"] in test_queries]
        test_products = {r["product_id"] for r in test_rows}
        test_texts = {r["text"] for r in test_rows}
        train_rows = [
            r for r in sampled
            if r["query"] not in test_queries and r["product_id"] not in test_products and r["text"] not in test_texts
        ]

        summary = {
            "rows": len(records), "skipped_bad_relevance": bad_relevance, "skipped_no_text": no_text,
            "sampled": len(sampled), "test_queries": len(test_queries), "test_products": len(test_products),
            "dropped_for_split": len(sampled) - len(train_rows) - len(test_rows),
        }
        return train_rows, test_rows, summary, where

    def load(self, request: DataRequest) -> DataBundle:
        p = self.params
        train_rows, test_rows, summary, where = self.split(request)
        test_queries = {r["query"] for r in test_rows}
        corpus = {pid: r["text"] for r in test_rows for pid in [r["product_id"]]}
        relevant: dict[str, set[str]] = {}
        qids = {q: f"q{i}" for i, q in enumerate(sorted(test_queries))}
        for r in test_rows:
            if r["relevance"] > p.threshold:
                relevant.setdefault(qids[r["query"]], set()).add(r["product_id"])
        if not relevant:
            raise UserError(
                f"{where}: no test query has a pair with relevance > {p.threshold}, so the evaluation set is empty. "
                "Lower [data] threshold, raise test_fraction or sample_size."
            )
        eval_set = IRSet({qid: q for q, qid in qids.items()}, corpus, relevant)

        if request.row_format == "scored-pairs":
            train = [{"sentence1": r["query"], "sentence2": r["text"],
                      "score": (r["relevance"] - 1.0) / 2.0} for r in train_rows]
        else:
            train = [{"anchor": r["query"], "positive": r["text"]} for r in train_rows if r["relevance"] > p.threshold]
        return DataBundle(rows_to_dataset(train, request.row_format), eval_set, request.row_format, summary)


class HomeDepotSimilarityParams(HomeDepotParams):
    max_pairs: int | None = Field(5000, gt=0, description="Score at most this many held-out pairs (a seeded "
                                                            "sample; None: all of them).")
    batch_size: int = Field(16, gt=0, description="Encoding batch size (16, as sentence-transformers' "
                                                  "EmbeddingSimilarityEvaluator).")


class HomeDepotSimilarity(Task[HomeDepotSimilarityParams]):
    """Home Depot relevance as similarity: Spearman of query–product cosine against the people's grades, held out."""

    name = "homedepot-similarity"
    title = "Home Depot relevance"
    metric = "spearman"
    Params = HomeDepotSimilarityParams

    def __init__(self, params: HomeDepotSimilarityParams | None = None):
        super().__init__(params)
        self._pairs: dict[tuple[int, str], list[dict[str, Any]]] = {}

    def source(self) -> HomeDepotSource:
        """The data source with this task's reading and split parameters: the same held-out pairs
        as a ``[data] name = "homedepot"`` with the same parameters evaluates on."""
        fields = HomeDepotParams.model_fields
        return HomeDepotSource(HomeDepotParams(**{k: v for k, v in self.params.model_dump().items() if k in fields}))

    def check(self, ctx: ValidationContext) -> list[str]:
        return self.source().check(ctx)

    def pairs(self, ctx: TaskContext) -> list[dict[str, Any]]:
        """The held-out pairs scored, read and split once (every model of the run scores the same)."""
        key = (ctx.seed, str(ctx.recipe_dir))
        if key not in self._pairs:
            request = DataRequest(RowFormat.SCORED_PAIRS, seed=ctx.seed, recipe_dir=ctx.recipe_dir)
            _, test_rows, _, _ = self.source().split(request)
            limit = self.params.max_pairs
            if limit is not None and len(test_rows) > limit:
                seed = self.params.seed if self.params.seed is not None else ctx.seed
                test_rows = random.Random(seed).sample(test_rows, limit)
            self._pairs[key] = test_rows
        return self._pairs[key]

    def score(self, ctx: TaskContext, model: str) -> TaskScores:
        from mrl_plugins.evaluation.tasks import similarity

        rows = self.pairs(ctx)
        bs = self.params.batch_size
        queries = ctx.encode(model, [r["query"] for r in rows], role="query", batch_size=bs)
        products = ctx.encode(model, [r["text"] for r in rows], role="document", batch_size=bs)
        return similarity(queries, products, [r["relevance"] for r in rows], ctx.dims,
                          resamples=ctx.resamples(len(rows)))


@hookimpl
def register_data_sources(register):
    register(HomeDepotSource)


@hookimpl
def register_tasks(register):
    register(HomeDepotSimilarity)
