"""The validation split: the set every choice of a run is made on, never the evaluation set.

A run *chooses* (the recommended width, what to serve, which column to publish, the adaptor's
stopping epoch and where it is used) and then *reports* those choices on the held-out evaluation
set. Choosing on the evaluation set itself flatters every choice by the luck of those queries;
on unseen data the chosen setting then loses. So each run carves a validation set here, after
the data source has split off its evaluation set:

* Queries come first from the source's **spare** rows (read, but beyond what it trains on:
  choosing then costs training nothing, and the trained models are those of a run without a
  validation split), then from training rows, at most ``from_training`` of them, which leave
  training. Every row whose query or relevant document is a validation text leaves training too.
* The corpus is the validation queries' documents, then distractors: spare documents first,
  then documents of the remaining training rows (those stay in training; a distractor that was
  trained on is no leak, only a document that is not the answer).
* Nothing in it occurs in the evaluation set (compared as :func:`~mrl_plugins.data.normalise_text`).

The recipe's ``[validation]`` table sizes it; ``queries = 0`` turns it off, and every choice is
then made on the evaluation set, which the report says in so many words.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .data import ROW_COLUMNS, DataBundle, IRSet, RowFormat, normalise_text, rows_to_dataset
from .errors import UserError

logger = logging.getLogger("mrl_plugins")

#: Fewer validation queries than this cannot tell widths apart: the run refuses.
MIN_QUERIES = 10


@dataclass(frozen=True)
class ValidationSize:
    """What ``[validation]`` asks for."""

    queries: int = 200
    corpus: int = 1000
    from_training: float = 0.2
    positive_threshold: float = 0.5


@dataclass(frozen=True)
class Carved:
    """The bundle with its validation set (and fewer training rows when some were taken), and
    where the validation queries came from."""

    bundle: DataBundle
    from_spare: int
    from_training: int
    training_rows_removed: int


def _columns(fmt: RowFormat) -> tuple[str, tuple[str, ...]]:
    cols = ROW_COLUMNS[fmt]
    return cols[0], tuple(c for c in cols[1:] if c != "score")


def carve_validation(bundle: DataBundle, size: ValidationSize, *, seed: int, where: str = "[validation]") -> Carved:
    """Carve the validation set of :attr:`DataBundle.validation` (see the module's docstring)."""
    fmt = bundle.row_format
    query_col, doc_cols = _columns(fmt)

    def relevant(row: dict[str, Any]) -> bool:
        return fmt != RowFormat.SCORED_PAIRS or float(row["score"]) > size.positive_threshold

    train_rows: list[dict[str, Any]] = bundle.train.to_list()
    eval_texts = {normalise_text(t) for t in (*bundle.eval.queries.values(), *bundle.eval.corpus.values())}
    train_texts = {normalise_text(r[c]) for r in train_rows for c in (query_col, *doc_cols) if r.get(c)}
    rng = random.Random(seed)

    def candidates(rows: list[dict[str, Any]], forbidden: set[str]) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            grouped[row[query_col]].append(row)
        found = {}
        for query in sorted(grouped):
            rows_q = grouped[query]
            texts = {normalise_text(query)} | {normalise_text(r[doc_cols[0]]) for r in rows_q if relevant(r)}
            if any(relevant(r) for r in rows_q) and not texts & (eval_texts | forbidden):
                found[query] = rows_q
        return found

    spare = candidates(bundle.spare, train_texts)
    spare_order = list(spare)
    rng.shuffle(spare_order)
    chosen = {q: spare[q] for q in spare_order[: size.queries]}
    from_spare = len(chosen)
    removed = 0
    if len(chosen) < size.queries:
        budget = int(size.from_training * len(train_rows))
        taken_texts = {normalise_text(t) for q, rows in chosen.items() for t in (q, *(r[doc_cols[0]] for r in rows))}
        own = candidates(train_rows, taken_texts)
        order = list(own)
        rng.shuffle(order)
        for query in order:
            if len(chosen) >= size.queries or removed + len(own[query]) > budget:
                break
            chosen[query] = own[query]
            removed += len(own[query])
    from_training = len(chosen) - from_spare
    if len(chosen) < MIN_QUERIES:
        raise UserError(
            f"{where} queries = {size.queries}: the data leaves only {len(chosen)} queries to validate on "
            f"({len(bundle.spare)} spare rows, and at most from_training = {size.from_training} of the "
            f"{len(train_rows)} training rows); a run needs at least {MIN_QUERIES} to choose anything. Give the "
            "data source more rows (or a larger from_training), or set [validation] queries = 0 to make every "
            "choice on the evaluation set (the report then says so)."
        )
    if len(chosen) < size.queries:
        logger.warning("the validation set has %d queries (%s asks for %d): the data has no more to spare; its "
                       "choices are noisier", len(chosen), where, size.queries)

    doc_ids: dict[str, str] = {}
    seen_docs: set[str] = set()

    def doc_id(text: str) -> str | None:
        norm = normalise_text(text)
        if text not in doc_ids and norm in seen_docs:
            return None  # the same document written another way: one copy in the corpus
        seen_docs.add(norm)
        return doc_ids.setdefault(text, f"v{len(doc_ids)}")

    queries: dict[str, str] = {}
    relevance: dict[str, set[str]] = {}
    for i, (query, rows) in enumerate(chosen.items()):
        queries[f"vq{i}"] = query
        for row in rows:
            # a hard negative that is an evaluation text stays out too (the relevant ones were checked above)
            ids = {col: doc_id(row[col]) for col in doc_cols
                   if row.get(col) and (col == doc_cols[0] or normalise_text(row[col]) not in eval_texts)}
            first = ids.get(doc_cols[0])
            if relevant(row) and first is not None:
                relevance.setdefault(f"vq{i}", set()).add(first)
    held = {normalise_text(t) for t in (*queries.values(), *doc_ids)}
    remaining = [r for r in train_rows if not any(isinstance(r.get(c), str) and normalise_text(r[c]) in held
                                                  for c in (query_col, *doc_cols))]
    pool = [r[c] for r in (*bundle.spare, *remaining) for c in doc_cols if r.get(c)]
    spare_docs = sorted({r[c] for r in bundle.spare if r[query_col] not in chosen for c in doc_cols if r.get(c)})
    train_docs = sorted(set(pool) - set(spare_docs))
    rng.shuffle(spare_docs)
    rng.shuffle(train_docs)
    for text in (*spare_docs, *train_docs):
        if len(doc_ids) >= size.corpus:
            break
        if normalise_text(text) not in eval_texts:
            doc_id(text)
    validation = IRSet(queries, {i: t for t, i in doc_ids.items()}, relevance)
    if not remaining:
        raise UserError(f"{where}: no training rows are left after taking {from_training} validation queries from "
                        "them; lower [validation] from_training or queries, or give the data source more rows.")
    new = DataBundle(
        rows_to_dataset(remaining, fmt) if len(remaining) != len(train_rows) else bundle.train,
        bundle.eval, fmt, bundle.summary, spare=[], validation=validation,
    )
    return Carved(new, from_spare, from_training, len(train_rows) - len(remaining))
