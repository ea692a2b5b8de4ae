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


def split_by_query(
    rows: Sequence[dict[str, Any]],
    *,
    eval_queries: int,
    seed: int,
    corpus_size: int = 0,
    query_col: str = "anchor",
    doc_cols: Sequence[str] = ("positive", "negative"),
    is_relevant: Callable[[dict[str, Any]], bool] | None = None,
) -> Split:
    """Hold out ``eval_queries`` distinct queries, then drop every training row that touches them.

    A row is dropped from training when its query is an evaluation query or any of its texts is
    in the evaluation corpus, so neither evaluation queries nor their documents are trained on.
    The corpus is every document of the held-out queries plus distractor
    documents taken from other rows until it holds ``corpus_size`` texts (those rows leave
    training too). ``is_relevant(row)`` says
    whether a held-out row's first document is relevant (default: always, as for pairs).
    """
    by_query: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_query[row[query_col]].append(row)
    is_relevant = is_relevant or (lambda row: True)
    first_doc = doc_cols[0]
    candidates = [q for q, qrows in by_query.items() if any(is_relevant(r) for r in qrows)]
    candidates.sort()
    rng = random.Random(seed)
    rng.shuffle(candidates)
    held = candidates[:eval_queries]
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
    if corpus_size > len(doc_ids):
        distractors = sorted({r[c] for r in remaining for c in doc_cols if r.get(c) is not None} - doc_ids.keys())
        rng.shuffle(distractors)
        for text in distractors[: corpus_size - len(doc_ids)]:
            doc_id(text)
    eval_texts = {normalise_text(t) for t in (*held_set, *doc_ids)}
    train_rows = [r for r in remaining if not _touches(r, eval_texts, (query_col, *doc_cols))]
    corpus = {i: t for t, i in doc_ids.items()}
    return Split(train_rows, IRSet(queries, corpus, relevant), len(remaining) - len(train_rows))


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
