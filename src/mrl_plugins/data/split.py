"""The one split that keeps what a run measures out of what it fits: held-out queries, their
documents and distractors, and the training rows that touch none of them.

The evaluation split (:func:`split_by_query`, run by data sources) and the validation split
(:func:`carve_validation`, run by the runner on what a source returns) hold out queries the same
way (:class:`HeldOut`): rows grouped by query, candidates drawn by a seeded shuffle, one
document id per text, distractors topped up to the corpus size, and every training row that
touches a held-out text (compared as :func:`~mrl_plugins.data.types.normalise_text`) left out.

The validation split is the set every choice of a run is made on, never the evaluation set: a
run *chooses* (the recommended width, what to serve, which column to publish, the adaptor's
stopping epoch and where it is used) and *reports* those choices held out. Its queries come
first from the source's **spare** rows (read, but beyond what it trains on), then from training
rows, at most ``from_training`` of them, which leave training; its corpus is their documents,
then distractors that no fitted part of the run sees: spare documents first, then (only when
the queries came from training) documents of training rows held out for them, which leave
training too; it is smaller than asked rather than topped up with a training document, and
nothing in it occurs in the evaluation set. Post-hoc components that fit on the training side
may also choose by cross-validation over it (:func:`pair_folds`). ``[validation] queries = 0`` turns
it off, and every choice is then made on the evaluation set, which the report says.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from .types import ROW_COLUMNS, DataBundle, IRSet, RowFormat, T, normalise_text, rows_to_dataset

logger = logging.getLogger("mrl_plugins")


@dataclass
class HeldOut:
    """Queries held out of rows, with their documents: the one algorithm behind the evaluation
    split (:func:`split_by_query`) and the validation split (:func:`carve_validation`).

    Rows are grouped by query (:meth:`group`); the candidates are the queries with a relevant row
    whose query and relevant documents are neither ``exclude``-d nor forbidden (:meth:`candidates`),
    drawn by a seeded shuffle (:func:`draw`); each held query brings its documents, one id per text
    (:meth:`hold`); distractors top the corpus up to its size (:meth:`top_up`); and a training row
    that touches a held text, compared as :func:`~.types.normalise_text`, leaves training
    (:meth:`left_out`). Two choices differ between the splits and are parameters here, not copies:
    ``dedupe`` (one document per normalised text) and ``exclude`` (texts that never join: the
    evaluation set's, for the validation split); and whether distractors leave training is the
    order in which a split calls :meth:`top_up` and :meth:`left_out`."""

    query_col: str
    doc_cols: tuple[str, ...]
    is_relevant: Callable[[dict[str, Any]], bool]
    prefix: tuple[str, str] = ("q", "d")
    """Id prefixes of queries and documents (``q0``, ``d0``; the validation split's ``vq0``, ``v0``)."""
    dedupe: bool = False
    exclude: frozenset[str] = frozenset()
    queries: dict[str, str] = field(default_factory=dict)
    relevant: dict[str, set[str]] = field(default_factory=dict)
    documents: dict[str, str] = field(default_factory=dict)
    """Document text → id, in the order they joined."""
    _seen: set[str] = field(default_factory=set)

    @staticmethod
    def group(rows: Iterable[dict[str, Any]], query_col: str) -> dict[str, list[dict[str, Any]]]:
        """Rows by their query, in first-seen order."""
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            grouped[row[query_col]].append(row)
        return grouped

    def candidates(self, grouped: dict[str, list[dict[str, Any]]], forbidden: Iterable[str] = ()) -> list[str]:
        """The queries that can be held out, sorted: with a relevant row, and neither the query nor
        a relevant document among the excluded or ``forbidden`` (normalised) texts."""
        blocked = self.exclude | set(forbidden)
        found = []
        for query in sorted(grouped):
            rows = grouped[query]
            texts = {normalise_text(query)} | {normalise_text(r[self.doc_cols[0]]) for r in rows if self.is_relevant(r)}
            if any(self.is_relevant(r) for r in rows) and not texts & blocked:
                found.append(query)
        return found

    def document(self, text: str) -> str | None:
        """The id of a document (new ones join); ``None`` for the same text written another way
        when ``dedupe`` keeps one copy."""
        if self.dedupe:
            norm = normalise_text(text)
            if text not in self.documents and norm in self._seen:
                return None
            self._seen.add(norm)
        return self.documents.setdefault(text, f"{self.prefix[1]}{len(self.documents)}")

    def hold(self, query: str, rows: Sequence[dict[str, Any]]) -> None:
        """Hold out ``query``: its documents join the corpus (an excluded one only as the row's
        first, which :meth:`candidates` checked), its relevant ones are its answers."""
        qid = f"{self.prefix[0]}{len(self.queries)}"
        self.queries[qid] = query
        first = self.doc_cols[0]
        for row in rows:
            ids = {col: self.document(row[col]) for col in self.doc_cols
                   if row.get(col) and (col == first or normalise_text(row[col]) not in self.exclude)}
            if self.is_relevant(row) and ids.get(first) is not None:
                self.relevant.setdefault(qid, set()).add(ids[first])  # type: ignore[arg-type]

    def top_up(self, distractors: Iterable[str], size: int) -> None:
        """Distractors, in order, until the corpus holds ``size`` documents (excluded ones skipped)."""
        for text in distractors:
            if len(self.documents) >= size:
                break
            if normalise_text(text) not in self.exclude:
                self.document(text)

    def texts(self) -> set[str]:
        """Every held query and document, normalised."""
        return {normalise_text(t) for t in (*self.queries.values(), *self.documents)}

    def left_out(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows that touch no held text (what stays in training)."""
        held = self.texts()
        return [r for r in rows if not _touches(r, held, (self.query_col, *self.doc_cols))]

    def ir_set(self) -> IRSet:
        return IRSet(dict(self.queries), {i: t for t, i in self.documents.items()}, self.relevant)


def draw(candidates: Sequence[str], rng: random.Random, n: int, *, cost: Callable[[str], int] | None = None,
         budget: int | None = None) -> list[str]:
    """A seeded draw of at most ``n`` candidates; with a ``budget``, stopping before the candidates'
    ``cost`` (training rows they take) would pass it."""
    order = list(candidates)
    rng.shuffle(order)
    if budget is None or cost is None:
        return order[:n]
    taken: list[str] = []
    spent = 0
    for query in order:
        if len(taken) >= n or spent + cost(query) > budget:
            break
        taken.append(query)
        spent += cost(query)
    return taken


def draw_families(candidates: Sequence[str], family_of: Callable[[str], str], rng: random.Random, n: int, *,
                  cost: Callable[[str], int] | None = None, budget: int | None = None) -> tuple[list[str], set[str]]:
    """Whole families drawn at random (seeded) until ``n`` queries are held (the last family cut
    to fit), or their ``cost`` would pass ``budget``: the queries and the families held."""
    members: dict[str, list[str]] = defaultdict(list)
    for q in candidates:
        members[family_of(q)].append(q)  # a query's family: its first row's
    held: list[str] = []
    families: set[str] = set()
    spent = 0
    for name in draw(sorted(members), rng, len(members)):
        price = sum(cost(q) for q in members[name]) if cost is not None else 0
        if len(held) >= n or (budget is not None and spent + price > budget):
            break
        families.add(name)
        held.extend(members[name])
        spent += price
    return held[:n], families


@dataclass
class Split:
    """Training rows and evaluation set produced by :func:`split_by_query`."""

    train_rows: list[dict[str, Any]]
    eval: IRSet
    dropped_for_leakage: int
    dropped_for_family: int = 0
    """Rows left out of training because their family (``groups``) is held out."""


def split_by_query(
    rows: Sequence[dict[str, Any]],
    *,
    eval_queries: int,
    seed: int,
    corpus_size: int = 0,
    query_col: str = "anchor",
    doc_cols: Sequence[str] = ("positive", "negative"),
    is_relevant: Callable[[dict[str, Any]], bool] | None = None,
    groups: Callable[[dict[str, Any]], str] | None = None,
) -> Split:
    """Hold out ``eval_queries`` distinct queries, then drop every training row that touches them.

    A row is dropped from training when its query is an evaluation query or any of its texts is
    in the evaluation corpus, so neither evaluation queries nor their documents are trained on.
    The corpus is every document of the held-out queries plus distractor documents taken from
    other rows until it holds ``corpus_size`` texts (those rows leave training too).
    ``is_relevant(row)`` says whether a held-out row's first document is relevant (default:
    always, as for pairs); a missing or empty text is no document.

    ``groups(row)`` names a row's family (the module of a function, the brand of a product):
    then whole families are held out, drawn at random until ``eval_queries`` queries are held,
    and every row of a held family leaves training (counted in ``dropped_for_family``), so no
    sibling of an evaluation item is trained on. Without it the split is by query (:class:`HeldOut`).
    """
    held_out = HeldOut(query_col, tuple(doc_cols), is_relevant or (lambda row: True))
    by_query = HeldOut.group(rows, query_col)
    candidates = held_out.candidates(by_query)
    rng = random.Random(seed)
    held_families: set[str] = set()
    if groups is None:
        held = draw(candidates, rng, eval_queries)
    else:
        held, held_families = draw_families(candidates, lambda q: groups(by_query[q][0]), rng, eval_queries)
    if not held:
        raise UserError("the evaluation set is empty: no query has a relevant document to hold out.")
    for query in held:
        held_out.hold(query, by_query[query])

    held_set = set(held)
    remaining = [r for r in rows if r[query_col] not in held_set]
    family_rows = 0
    if groups is not None:
        before = len(remaining)
        remaining = [r for r in remaining if groups(r) not in held_families]
        family_rows = before - len(remaining)
    if corpus_size > len(held_out.documents):
        distractors = sorted({r[c] for r in remaining for c in doc_cols if r.get(c)} - held_out.documents.keys())
        rng.shuffle(distractors)
        held_out.top_up(distractors, corpus_size)
    train_rows = held_out.left_out(remaining)  # after the top-up: a distractor's row leaves training too
    return Split(train_rows, held_out.ir_set(), len(remaining) - len(train_rows), family_rows)


def _touches(row: dict[str, Any], texts: set[str], cols: Iterable[str]) -> bool:
    return any(isinstance(row.get(c), str) and normalise_text(row[c]) in texts for c in cols)


def find_leaks(train_texts: Iterable[str], eval_set: IRSet) -> tuple[int, int]:
    """Count evaluation queries and relevant documents that also occur among training texts,
    compared after :func:`normalise_text` (a trailing space or another case is still a leak)."""
    seen = {normalise_text(t) for t in train_texts}
    leaked_queries = sum(1 for q in eval_set.queries.values() if normalise_text(q) in seen)
    leaked_docs = sum(1 for d in eval_set.relevant_texts() if normalise_text(d) in seen)
    return leaked_queries, leaked_docs


def pair_folds(pairs: Sequence[tuple[str, ...]], k: int, seed: int) -> list[list[int]]:
    """Row indices of ``pairs`` dealt into ``k`` folds for cross-validation, so that **no text of a
    fold occurs in another fold** (compared as :func:`~mrl_plugins.data.types.normalise_text`): rows
    that share a text (a query asked twice, a document relevant to two queries) form one group, as
    the held-out splits group rows by query, and whole groups are dealt, in a seeded shuffle, each
    to the fold with the fewest rows so far. Each fold lists its rows in input order; a fold is
    empty only when there are fewer groups than ``k``."""
    parent = list(range(len(pairs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, row in enumerate(pairs):
        for text in row:
            j = owner.setdefault(normalise_text(text), i)
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(pairs)):
        groups[root(i)].append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    folds: list[list[int]] = [[] for _ in range(k)]
    for rows in order:
        min(folds, key=len).extend(rows)
    return [sorted(fold) for fold in folds]


def seeded_sample(items: list[T], limit: int | None, seed: int) -> list[T]:
    """At most ``limit`` items, a seeded random sample kept in the input's order."""
    return seeded_split(items, limit, seed)[0]


def seeded_split(items: list[T], limit: int | None, seed: int) -> tuple[list[T], list[T]]:
    """:func:`seeded_sample`'s sample, and the items it left out (both in the input's order):
    what a source passes as :attr:`DataBundle.spare`."""
    if limit is None or len(items) <= limit:
        return items, []
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [x for i, x in enumerate(items) if i in keep], [x for i, x in enumerate(items) if i not in keep]


def held_out_problems(path_key: str, count_rows: Callable[[], int], *, eval_queries: int, corpus_size: int,
                      train_pairs: int | None, unit: str = "pairs") -> list[str]:
    """What a pairs file must hold for a split: more rows than the evaluation corpus takes, and
    ``train_pairs`` left after it. ``count_rows`` reads the file (its errors become a problem)."""
    if corpus_size < eval_queries:
        return [f"corpus_size: {corpus_size} is smaller than eval_queries {eval_queries}."]
    try:
        n = count_rows()
    except (UserError, OSError, EOFError, ValueError) as exc:
        return [f"{path_key}: cannot be read: {exc}"]
    if corpus_size >= n:
        return [f"corpus_size: {corpus_size} documents asked for, but the file has {n} {unit} (and training needs "
                "some too); lower corpus_size and eval_queries."]
    left = n - corpus_size  # the corpus holds the held-out documents and the distractors
    if train_pairs and train_pairs > left:
        return [f"train_pairs: at most {left} pairs are left for training after holding out {corpus_size} documents "
                f"of the {n} {unit}; lower train_pairs or corpus_size."]
    return []


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
    """The bundle with its validation set (and fewer training rows when some were taken), where
    its queries and distractors came from, and how many documents it asked for."""

    bundle: DataBundle
    from_spare: int
    from_training: int
    training_rows_removed: int
    distractors_from_spare: int = 0
    distractors_from_training: int = 0
    """Training rows held out for their documents (they leave training, as the evaluation split's do)."""
    corpus_asked: int = 0


def _columns(fmt: RowFormat) -> tuple[str, tuple[str, ...]]:
    cols = ROW_COLUMNS[fmt]
    return cols[0], tuple(c for c in cols[1:] if c != "score")


def carve_validation(bundle: DataBundle, size: ValidationSize, *, seed: int, where: str = "[validation]") -> Carved:
    """Carve the validation set of :attr:`DataBundle.validation` (see the module's docstring), by
    :class:`HeldOut` like the evaluation split: queries from the spare rows first, then from
    training rows within ``from_training``; one document per normalised text; nothing of the
    evaluation set, and nothing any fitted part of the run sees: every training row that touches
    a validation text leaves training, and distractors are spare documents, then (only when the
    queries themselves had to come from training) documents of training rows held out for them
    within the same budget, which leave training too. With too little unseen text the corpus is
    smaller than asked, never topped up with a training document (the run says so)."""
    fmt = bundle.row_format
    query_col, doc_cols = _columns(fmt)

    def relevant(row: dict[str, Any]) -> bool:
        return fmt != RowFormat.SCORED_PAIRS or float(row["score"]) > size.positive_threshold

    train_rows: list[dict[str, Any]] = bundle.train.to_list()
    eval_texts = frozenset(normalise_text(t) for t in (*bundle.eval.queries.values(), *bundle.eval.corpus.values()))
    held_out = HeldOut(query_col, doc_cols, relevant, prefix=("vq", "v"), dedupe=True, exclude=eval_texts)
    train_texts = {normalise_text(r[c]) for r in train_rows for c in (query_col, *doc_cols) if r.get(c)}
    rng = random.Random(seed)

    groups, families = bundle.groups, set()

    def pick(grouped: dict[str, list[dict[str, Any]]], forbidden: set[str], n: int, budget: int | None) -> list[str]:
        candidates = held_out.candidates(grouped, forbidden=forbidden)
        cost = (lambda q: len(grouped[q])) if budget is not None else None
        if groups is None:  # the same grouping as the evaluation split: by query, or whole families
            return draw(candidates, rng, n, cost=cost, budget=budget)
        found, held_families = draw_families(candidates, lambda q: groups(grouped[q][0]), rng, n, cost=cost,
                                             budget=budget)
        families.update(held_families)
        return found

    spare = HeldOut.group(bundle.spare, query_col)
    chosen = {q: spare[q] for q in pick(spare, train_texts, size.queries, None)}
    from_spare = len(chosen)
    if len(chosen) < size.queries:
        taken = {normalise_text(t) for q, rows in chosen.items() for t in (q, *(r[doc_cols[0]] for r in rows))}
        own = HeldOut.group(train_rows, query_col)
        extra = pick(own, taken, size.queries - len(chosen), int(size.from_training * len(train_rows)))
        chosen |= {q: own[q] for q in extra}
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

    for query, rows in chosen.items():
        held_out.hold(query, rows)

    def left_in(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:  # a held family's rows leave training too
        return [r for r in held_out.left_out(rows) if groups is None or groups(r) not in families]

    remaining = left_in(train_rows)
    staying = {normalise_text(r[c]) for r in remaining for c in (query_col, *doc_cols) if r.get(c)}
    spare_docs = sorted({t for r in bundle.spare if r[query_col] not in chosen for c in doc_cols
                         if (t := r.get(c)) and normalise_text(t) not in staying})
    rng.shuffle(spare_docs)
    before = len(held_out.documents)
    held_out.top_up(spare_docs, size.corpus)
    from_spare_docs = len(held_out.documents) - before
    slice_rows = 0
    budget = int(size.from_training * len(train_rows)) - (len(train_rows) - len(remaining))
    if from_training and len(held_out.documents) < size.corpus and budget > 0:
        # the queries came from training: so may a slice of distractors, as the evaluation split's do
        order = list(range(len(remaining)))
        rng.shuffle(order)
        for i in order[:budget]:
            if len(held_out.documents) >= size.corpus:
                break
            held_out.top_up([remaining[i][c] for c in doc_cols if remaining[i].get(c)], size.corpus)
            slice_rows += 1
        remaining = left_in(train_rows)  # the slice leaves training with every row touching it
    if len(held_out.documents) < size.corpus:
        logger.warning("the validation corpus has %d documents (%s asks for %d): the data has no more text that no "
                       "part of the run is fitted on, and it is never topped up with training documents; its choices "
                       "are easier than the evaluation set's", len(held_out.documents), where, size.corpus)
    if not remaining:
        raise UserError(f"{where}: no training rows are left after taking {from_training} validation queries from "
                        "them; lower [validation] from_training or queries, or give the data source more rows.")
    new = DataBundle(
        rows_to_dataset(remaining, fmt) if len(remaining) != len(train_rows) else bundle.train,
        bundle.eval, fmt, bundle.summary, spare=[], validation=held_out.ir_set(), groups=groups,
        unlabelled=[t for t in spare_docs if t not in held_out.documents] + bundle.unlabelled,
    )
    return Carved(new, from_spare, from_training, len(train_rows) - len(remaining), from_spare_docs, slice_rows,
                  size.corpus)
