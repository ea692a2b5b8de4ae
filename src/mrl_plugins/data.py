"""Data that crosses module boundaries, and the split that keeps evaluation out of training.

Nothing here imports ``datasets`` or torch at module level: recipe validation imports this.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import UserError

if TYPE_CHECKING:
    import datasets

T = TypeVar("T")

#: Row formats a data source can produce, and the columns each one has, in order.
ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    "pairs": ("anchor", "positive"),
    "triplets": ("anchor", "positive", "negative"),
    "scored-pairs": ("sentence1", "sentence2", "score"),
}


@dataclass
class IRSet:
    """An information-retrieval evaluation set: ids to texts, and each query's relevant ids."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]

    def __post_init__(self) -> None:
        self.relevant = {q: set(docs) for q, docs in self.relevant.items() if q in self.queries and docs}
        self.queries = {q: t for q, t in self.queries.items() if q in self.relevant}
        missing = {d for docs in self.relevant.values() for d in docs} - self.corpus.keys()
        if missing:
            raise ValueError(f"relevant ids missing from the corpus: {sorted(missing)[:5]}")

    def relevant_texts(self) -> set[str]:
        return {self.corpus[d] for docs in self.relevant.values() for d in docs}


@dataclass
class DataRequest:
    """What the runner asks a data source for."""

    row_format: str
    seed: int
    recipe_dir: Path = Path(".")


@dataclass
class DataBundle:
    """What a data source returns: training rows in ``ROW_COLUMNS[row_format]`` and an IR set."""

    train: datasets.Dataset
    eval: IRSet
    row_format: str
    summary: dict[str, Any] = field(default_factory=dict)


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
    is_relevant=None,
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
    eval_texts = held_set | doc_ids.keys()
    train_rows = [r for r in remaining if not _touches(r, eval_texts, (query_col, *doc_cols))]
    corpus = {i: t for t, i in doc_ids.items()}
    return Split(train_rows, IRSet(queries, corpus, relevant), len(remaining) - len(train_rows))


def _touches(row: dict[str, Any], texts: set[str], cols: Iterable[str]) -> bool:
    return any(row.get(c) in texts for c in cols)


def find_leaks(train_texts: Iterable[str], eval_set: IRSet) -> tuple[int, int]:
    """Count evaluation queries and relevant documents that also occur among training texts."""
    seen = set(train_texts)
    leaked_queries = sum(1 for q in eval_set.queries.values() if q in seen)
    leaked_docs = sum(1 for d in eval_set.relevant_texts() if d in seen)
    return leaked_queries, leaked_docs


def rows_to_dataset(rows: Sequence[dict[str, Any]], row_format: str) -> datasets.Dataset:
    """A ``datasets.Dataset`` with exactly the columns of ``row_format``, in trainer order."""
    import datasets

    cols = ROW_COLUMNS[row_format]
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in cols})


def seeded_sample(items: list[T], limit: int | None, seed: int) -> list[T]:
    """At most ``limit`` items, a seeded random sample kept in the input's order."""
    if limit is None or len(items) <= limit:
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


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
