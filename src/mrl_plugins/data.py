"""Data that crosses module boundaries, and the split that keeps evaluation out of training.

Nothing here imports ``datasets`` or torch at module level: recipe validation imports this.
"""

from __future__ import annotations

import random
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import UserError

if TYPE_CHECKING:
    import datasets

T = TypeVar("T")

class RowFormat(str, Enum):
    """What one training row holds. The value is what recipes, plugins and results.json write,
    and a plain string compares equal to it (``RowFormat.PAIRS == "pairs"``)."""

    PAIRS = "pairs"
    TRIPLETS = "triplets"
    SCORED_PAIRS = "scored-pairs"

    def __str__(self) -> str:
        return self.value

    @property
    def columns(self) -> tuple[str, ...]:
        """The trainer's columns for this format, in order."""
        return ROW_COLUMNS[self]


#: The columns of each row format, in the order the trainer expects them.
ROW_COLUMNS: dict[RowFormat | str, tuple[str, ...]] = {
    RowFormat.PAIRS: ("anchor", "positive"),
    RowFormat.TRIPLETS: ("anchor", "positive", "negative"),
    RowFormat.SCORED_PAIRS: ("sentence1", "sentence2", "score"),
}


class IRSetError(ValueError):
    """An evaluation set whose parts disagree (relevant ids that name no query or no document)."""


@dataclass
class IRSet:
    """An information-retrieval evaluation set: ids to texts, and each query's relevant ids.

    Every id in ``relevant`` must be a query id and every relevant document id must be in the
    corpus, or :class:`IRSetError` is raised. Queries without any relevant document cannot be
    scored and are dropped; ``dropped_queries`` counts them, and the runner warns about them.
    """

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]
    dropped_queries: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        unknown = set(self.relevant) - self.queries.keys()
        if unknown:
            raise IRSetError(
                f"{len(unknown)} query ids in 'relevant' are not among the queries (e.g. {sorted(unknown)[:3]})"
            )
        missing = {d for docs in self.relevant.values() for d in docs} - self.corpus.keys()
        if missing:
            raise IRSetError(
                f"{len(missing)} relevant document ids are not in the corpus (e.g. {sorted(missing)[:3]})"
            )
        self.relevant = {q: set(docs) for q, docs in self.relevant.items() if docs}
        kept = {q: t for q, t in self.queries.items() if q in self.relevant}
        self.dropped_queries = len(self.queries) - len(kept)
        self.queries = kept

    def relevant_texts(self) -> set[str]:
        return {self.corpus[d] for docs in self.relevant.values() for d in docs}


@dataclass
class DataRequest:
    """What the runner asks a data source for: rows in ``row_format``, split with ``seed``;
    relative paths in the source's parameters are relative to ``recipe_dir``."""

    row_format: RowFormat
    seed: int
    recipe_dir: Path = Path(".")


@dataclass
class DataBundle:
    """What a data source returns: training rows with exactly ``row_format``'s columns, in
    order, an evaluation set, and ``summary`` facts (rows skipped and why) for results.json."""

    train: datasets.Dataset
    eval: IRSet
    row_format: RowFormat
    summary: dict[str, Any] = field(default_factory=dict)
    spare: list[dict[str, Any]] = field(default_factory=list)
    """Rows in ``row_format`` that the source read but neither trains nor evaluates on (those
    beyond ``train_pairs``, say): the run draws its validation set from them first, so that
    choosing on validation costs training nothing. Optional."""
    validation: IRSet | None = None
    """The set the run makes its choices on. A source may give its own (a dev split); otherwise
    the runner carves one with :func:`carve_validation`, from ``spare`` and then training rows."""

    def __post_init__(self) -> None:
        self.row_format = RowFormat(self.row_format)  # plugins may pass the plain string

    def training_texts(self, side: str = "all") -> list[str]:
        """Distinct training texts, in first-seen order: ``"queries"`` (anchors),
        ``"documents"`` (positives and negatives) or ``"all"``. Never evaluation texts."""
        cols = [c for c in self.train.column_names if c != "score" and (side == "all" or c in _SIDES[side])]
        return list(dict.fromkeys(t for col in cols for t in self.train[col]))


_SIDES = {"queries": ("anchor", "sentence1"), "documents": ("positive", "negative", "sentence2")}


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
    The corpus is every document of the held-out queries plus distractor
    documents taken from other rows until it holds ``corpus_size`` texts (those rows leave
    training too). ``is_relevant(row)`` says
    whether a held-out row's first document is relevant (default: always, as for pairs).

    ``groups(row)`` names a row's family (the module of a function, the brand of a product):
    then whole families are held out, drawn at random until ``eval_queries`` queries are held,
    and every row of a held family leaves training (counted in ``dropped_for_family``), so no
    sibling of an evaluation item is trained on. Without it the split is by query, as before.
    """
    by_query: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_query[row[query_col]].append(row)
    is_relevant = is_relevant or (lambda row: True)
    first_doc = doc_cols[0]
    candidates = [q for q, qrows in by_query.items() if any(is_relevant(r) for r in qrows)]
    candidates.sort()
    rng = random.Random(seed)
    held_families: set[str] = set()
    if groups is None:
        rng.shuffle(candidates)
        held = candidates[:eval_queries]
    else:
        family = {q: groups(by_query[q][0]) for q in candidates}  # a query's family: its first row's
        members: dict[str, list[str]] = defaultdict(list)
        for q in candidates:
            members[family[q]].append(q)
        order = sorted(members)
        rng.shuffle(order)
        held = []
        for name in order:
            if len(held) >= eval_queries:
                break
            held_families.add(name)
            held.extend(members[name])
        held = held[:eval_queries]
    if not held:
        raise UserError("the evaluation set is empty: no query has a relevant document to hold out.")

    doc_ids: dict[str, str] = {}

    def doc_id(text: str) -> str:
        return doc_ids.setdefault(text, f"d{len(doc_ids)}")

    queries: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for i, q in enumerate(held):
        qid = f"q{i}"
        queries[qid] = q
        for r in by_query[q]:
            for col in doc_cols:
                if r.get(col) is not None:
                    doc_id(r[col])
            if is_relevant(r):
                relevant.setdefault(qid, set()).add(doc_id(r[first_doc]))

    held_set = set(held)
    remaining = [r for r in rows if r[query_col] not in held_set]
    family_rows = 0
    if groups is not None:
        before = len(remaining)
        remaining = [r for r in remaining if groups(r) not in held_families]
        family_rows = before - len(remaining)
    if corpus_size > len(doc_ids):
        distractors = sorted({r[c] for r in remaining for c in doc_cols if r.get(c) is not None} - doc_ids.keys())
        rng.shuffle(distractors)
        for text in distractors[: corpus_size - len(doc_ids)]:
            doc_id(text)
    eval_texts = {normalise_text(t) for t in (*held_set, *doc_ids)}
    train_rows = [r for r in remaining if not _touches(r, eval_texts, (query_col, *doc_cols))]
    corpus = {i: t for t, i in doc_ids.items()}
    return Split(train_rows, IRSet(queries, corpus, relevant), len(remaining) - len(train_rows), family_rows)


def normalise_text(text: str) -> str:
    """What counts as the same text for leakage: Unicode form (NFKC), case and whitespace aside."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _touches(row: dict[str, Any], texts: set[str], cols: Iterable[str]) -> bool:
    return any(isinstance(row.get(c), str) and normalise_text(row[c]) in texts for c in cols)


def find_leaks(train_texts: Iterable[str], eval_set: IRSet) -> tuple[int, int]:
    """Count evaluation queries and relevant documents that also occur among training texts,
    compared after :func:`normalise_text` (a trailing space or another case is still a leak)."""
    seen = {normalise_text(t) for t in train_texts}
    leaked_queries = sum(1 for q in eval_set.queries.values() if normalise_text(q) in seen)
    leaked_docs = sum(1 for d in eval_set.relevant_texts() if normalise_text(d) in seen)
    return leaked_queries, leaked_docs


@dataclass
class NearDuplicates:
    """Evaluation texts with a near-copy among the training texts (:func:`find_near_duplicates`)."""

    threshold: float
    queries: int
    documents: int
    examples: list[dict[str, Any]]
    """A few of them: the evaluation text, its nearest training text, their similarity."""

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "queries": self.queries, "documents": self.documents,
                "examples": self.examples}


SHINGLE_WORDS = 3
MINHASHES, BANDS = 64, 16


def _shingles(text: str) -> set[int]:
    """Word 3-grams of the normalised text (the whole text when shorter), as 32-bit hashes
    (CRC-32: the same in every process, unlike ``hash``)."""
    import zlib

    words = normalise_text(text).split()
    grams = [" ".join(words[i:i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))]
    return {zlib.crc32(g.encode("utf-8")) for g in grams}


def _signatures(sets: Sequence[set[int]]) -> Any:
    """MinHash signatures (``MINHASHES`` universal hashes ``(a·x + b) mod p``) of shingle sets."""
    import numpy as np

    rng = np.random.default_rng(0)
    prime = np.uint64((1 << 61) - 1)
    a = rng.integers(1, 1 << 31, MINHASHES, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, MINHASHES, dtype=np.uint64)
    out = np.empty((len(sets), MINHASHES), dtype=np.uint64)
    for i, shingles in enumerate(sets):
        x = np.fromiter(shingles, dtype=np.uint64, count=len(shingles))
        out[i] = ((x[:, None] * a[None, :] + b[None, :]) % prime).min(axis=0)
    return out


def find_near_duplicates(train_texts: Iterable[str], eval_set: IRSet, *, threshold: float = 0.8,
                         examples: int = 5) -> NearDuplicates:
    """Evaluation queries and relevant documents whose word 3-grams overlap a training text's by
    a Jaccard similarity of at least ``threshold``: the near-copies an exact leak check misses (a
    changed word, a version number, a sibling's description). Candidates come from MinHash with
    locality-sensitive hashing (64 hashes in 16 bands: a pair at Jaccard 0.8 is a candidate with
    probability 0.9998), each confirmed on its exact Jaccard; linear in the texts, no model. Exact
    copies count too (:func:`find_leaks` refuses those earlier)."""
    train = list(dict.fromkeys(train_texts))
    queries = list(eval_set.queries.values())
    documents = sorted(eval_set.relevant_texts())
    if not train or not (queries or documents):
        return NearDuplicates(threshold, 0, 0, [])
    train_sets = [_shingles(t) for t in train]
    rows = MINHASHES // BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for i, signature in enumerate(_signatures(train_sets)):
        for band in range(BANDS):
            buckets[band, signature[band * rows:(band + 1) * rows].tobytes()].append(i)
    found: dict[str, int] = {"queries": 0, "documents": 0}
    shown: list[dict[str, Any]] = []
    for side, texts in (("queries", queries), ("documents", documents)):
        sets = [_shingles(t) for t in texts]
        for text, shingles, signature in zip(texts, sets, _signatures(sets)):
            candidates = {j for band in range(BANDS)
                          for j in buckets.get((band, signature[band * rows:(band + 1) * rows].tobytes()), ())}
            best, nearest = 0.0, -1
            for j in candidates:
                similarity = len(shingles & train_sets[j]) / len(shingles | train_sets[j])
                if similarity > best:
                    best, nearest = similarity, j
            if best >= threshold:
                found[side] += 1
                if len(shown) < examples:
                    shown.append({"side": "query" if side == "queries" else "document", "text": text[:160],
                                  "training_text": train[nearest][:160], "jaccard": round(best, 3)})
    return NearDuplicates(threshold, found["queries"], found["documents"], shown)


def rows_to_dataset(rows: Sequence[dict[str, Any]], row_format: RowFormat | str) -> datasets.Dataset:
    """A ``datasets.Dataset`` with exactly the columns of ``row_format``, in trainer order."""
    import datasets

    cols = ROW_COLUMNS[row_format]
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in cols})


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


_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
_COMPRESSED = (".gz", ".xz", ".bz2", ".zst")


def builder_for(path: Path) -> str | None:
    """The ``datasets`` builder for a data file, from its extension (compression ignored)."""
    suffixes = [s for s in Path(path).suffixes if s not in _COMPRESSED]
    return _BUILDERS.get(suffixes[-1]) if suffixes else None


def read_table(path: Path, *, encoding: str = "utf-8", streaming: bool = False) -> Any:
    """Read a local data file with ``datasets`` (json/csv/parquet chosen by extension)."""
    import datasets

    builder = builder_for(path)
    kwargs: dict[str, Any] = {}
    if builder == "csv":
        kwargs["encoding"] = encoding
        if ".tsv" in Path(path).suffixes:
            kwargs["sep"] = "\t"
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", streaming=streaming, **kwargs)
    except Exception as exc:
        raise UserError(f"{path}: cannot be read as {builder}: {type(exc).__name__}: {exc}") from None


def open_dataset(
    name: str, *, subset: str | None = None, split: str = "train", data_files: str | None = None,
    base_dir: Path = Path("."), streaming: bool = False, local_hint: str = "",
) -> Any:
    """A Hub dataset, or local files in the same schema when ``data_files`` is given.

    Both go through ``datasets`` so local test files exercise the same code path. When the Hub
    cannot be reached the error says so and points at the local-files route (``local_hint``).
    """
    if data_files:
        path = base_dir / data_files
        if not path.exists():
            raise UserError(f"data_files '{data_files}' not found (looked for {path}).")
        return read_table(path, streaming=streaming)
    import datasets

    try:
        return datasets.load_dataset(name, subset, split=split, streaming=streaming)
    except Exception as exc:
        raise UserError(
            f"could not load '{name}'{f' (subset {subset!r})' if subset else ''} from the Hugging Face Hub: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. If this machine cannot reach "
            f"the Hub (or HF_HUB_OFFLINE is set), download the data where it can and point the recipe at local "
            f"files instead: {local_hint or 'set data_files in [data]'}."
        ) from None


def require_columns(have: Sequence[str], need: Sequence[str], where: str, example_key: str | None = None) -> None:
    """A clear error naming the missing columns and the columns that exist."""
    missing = [c for c in need if c not in have]
    if missing:
        example = f", e.g. columns = {{ {example_key} = \"{have[0]}\" }}" if example_key and have else ""
        raise UserError(
            f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}; "
            f"it has {', '.join(repr(c) for c in have)}. Map them in [data] columns{example}."
        )


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
