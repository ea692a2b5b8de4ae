"""Data that crosses module boundaries, and the split that keeps evaluation out of training.

Nothing here imports ``datasets`` or torch at module level: recipe validation imports this.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
    unlabelled: list[str] = field(default_factory=list, repr=False)
    """Documents that neither trains, validates nor evaluates, without labels: what the ``funnel``
    comparison grows the validation corpus with to measure how search settings scale (recall of
    the exact top k needs no labels). A source may give text it read beside its rows (Debian's
    later description paragraphs); the runner adds the spare documents the validation corpus did
    not take. :meth:`unseen_documents` is what is used of them. Optional."""
    groups: Callable[[dict[str, Any]], str] | None = field(default=None, repr=False)
    """A row's family, when the source held out whole families (``split_by_query(groups=...)``):
    the runner's validation split then holds out whole families too. Optional."""

    def __post_init__(self) -> None:
        self.row_format = RowFormat(self.row_format)  # plugins may pass the plain string

    def unseen_documents(self, limit: int | None = None) -> list[str]:
        """:attr:`unlabelled`, first-seen order, without any text (compared as
        :func:`normalise_text`) that training, the evaluation set or the validation set holds, or
        that occurs twice: text no fitted part of the run saw, at most ``limit`` of it."""
        sets = [s for s in (self.eval, self.validation) if s is not None]
        taken = {normalise_text(t) for t in self.training_texts()}
        taken |= {normalise_text(t) for s in sets for t in (*s.queries.values(), *s.corpus.values())}
        found: list[str] = []
        for text in self.unlabelled:
            key = normalise_text(text)
            if key and key not in taken:
                taken.add(key)
                found.append(text)
                if limit is not None and len(found) >= limit:
                    break
        return found

    def training_texts(self, side: str = "all") -> list[str]:
        """Distinct training texts, in first-seen order: ``"queries"`` (anchors),
        ``"documents"`` (positives and negatives) or ``"all"``. Never evaluation texts."""
        cols = [c for c in self.train.column_names if c != "score" and (side == "all" or c in _SIDES[side])]
        return list(dict.fromkeys(t for col in cols for t in self.train[col]))

    def training_pairs(self) -> list[tuple[str, str]]:
        """The training rows as (query, relevant document) pairs, in order; none for scored pairs."""
        if "anchor" not in self.train.column_names:
            return []
        return list(zip(self.train["anchor"], self.train["positive"]))



_SIDES = {"queries": ("anchor", "sentence1"), "documents": ("positive", "negative", "sentence2")}


def normalise_text(text: str) -> str:
    """What counts as the same text for leakage: Unicode form (NFKC), case and whitespace aside."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def rows_to_dataset(rows: Sequence[dict[str, Any]], row_format: RowFormat | str) -> datasets.Dataset:
    """A ``datasets.Dataset`` with exactly the columns of ``row_format``, in trainer order."""
    import datasets

    cols = ROW_COLUMNS[row_format]
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in cols})


