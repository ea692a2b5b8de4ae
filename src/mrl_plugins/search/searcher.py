"""Search by text: one object holds an index, its texts and what embeds queries for it.

:class:`Searcher` is what ``mrl-run search``, the demo and a plugin use to ask a corpus a
question in words (as llm's ``Collection.similar`` does): it embeds the queries with the model
that built the index (checked by its stamp, so another model is refused whatever it is called),
searches the index's funnel and returns typed :class:`Hit` s with their texts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    from ..components import SearchHits, SearchIndex


@dataclass(frozen=True)
class Hit:
    """One document found for one query."""

    row: int
    """Its row in the index (the order documents were added)."""
    id: str
    text: str
    score: float
    """Cosine similarity at the width that ranked it (the rerank width after a rerank)."""


class Texts(Protocol):
    """Where a searcher reads its documents: an index folder's text store, or a list."""

    def get(self, rows: Sequence[int]) -> list[dict[str, str]]: ...


@dataclass(frozen=True)
class TextList:
    """Documents held in memory (the demo's evaluation corpus)."""

    ids: Sequence[str]
    texts: Sequence[str]

    def get(self, rows: Sequence[int]) -> list[dict[str, str]]:
        return [{"id": self.ids[r], "text": self.texts[r]} for r in rows]


def query_line(line: str, where: str) -> tuple[str | None, str] | None:
    """One line of a queries file (``search --queries``, ``index --probe``) as ``(id, query)``:
    plain text, or a JSON object with ``query`` (or ``text``) and an optional ``id``; ``None`` for
    a blank line. ``where`` names the file and line in the message a bad line gets."""
    import json

    line = line.strip()
    if not line:
        return None
    if not line.startswith("{"):
        return None, line
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise UserError(f"{where}: not valid JSON ({exc}); write one query per line, as plain text or as a JSON "
                        "object with a 'query' field.") from None
    text = row.get("query", row.get("text")) if isinstance(row, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: a JSON object needs a non-empty 'query' (or 'text') string field.")
    return (None if row.get("id") is None else str(row["id"])), text


Encoder = Callable[[list[str]], np.ndarray]
"""Queries in, their full-width float32 embeddings out (a model's query prompt applied)."""


def model_encoder(model: object) -> Encoder:
    """A sentence-transformers model as an :data:`Encoder` (at full width, its query prompt)."""
    from ..evaluation.encode import encode_texts

    return lambda texts: encode_texts(model, texts, role="query")


class Searcher:
    """An index, its texts and the encoder of its model: ``search(["query"])`` → hits per query."""

    def __init__(self, index: SearchIndex, texts: Texts | None = None, encoder: Encoder | None = None,
                 *, shortlist: int | None = None):
        self.index, self.texts, self.encoder = index, texts, encoder
        self.shortlist = shortlist
        """The shortlist reranked when a search names none (the index's recorded default)."""

    def search(self, queries: Sequence[str], k: int = 10, shortlist: int | None = None) -> list[list[Hit]]:
        """The ``k`` best documents for each query, best first."""
        if self.encoder is None:
            raise UserError("this searcher has no model to embed queries with; search by vectors, or open the index "
                            "with its model.")
        return self.search_vectors(self.encoder(list(queries)), k, shortlist)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, shortlist: int | None = None) -> list[list[Hit]]:
        """The same, for queries already embedded at full width. ``shortlist``: candidates reranked
        (default: the searcher's); 0 takes the shortlist index's own top ``k``, unreranked."""
        n = self.shortlist if shortlist is None else shortlist
        found = self.index.search(np.atleast_2d(vectors), k, shortlist=n or None)
        return [self.hits(found, row) for row in range(len(found.ids))]

    def hits(self, found: SearchHits, row: int) -> list[Hit]:
        """One query's ranked documents, with their texts."""
        rows = [int(i) for i in found.ids[row] if i >= 0]
        docs = self.texts.get(rows) if self.texts is not None else [{"id": str(r), "text": ""} for r in rows]
        return [Hit(r, d["id"], d["text"], float(s)) for r, d, s in zip(rows, docs, found.scores[row][: len(rows)])]

    @classmethod
    def open(cls, folder: str | Path, *, model: str | None = None, device: str = "auto",
             dsn: str | None = None) -> Searcher:
        """The index in ``folder`` with the model that built it (or ``model``: a run's folder, a
        model folder or a Hub id, checked to embed as the index's model did); ``dsn`` points an
        engine's index at another server. Without ``model``, queries are embedded by the index's
        own query encoder when it holds one (:mod:`.query_encoder`: onnxruntime, no torch), else
        by the model loaded with sentence-transformers (with a note)."""
        from .build import open_index
        from .query_encoder import QueryEncoder

        folder = Path(folder)
        corpus = open_index(folder, params={"dsn": dsn} if dsn else None)
        if model is None:
            encoder = QueryEncoder.open(folder)
            built = corpus.index.model
            if encoder is not None and (built is None or built.matches(encoder.stamp)):
                return cls(corpus.index, corpus.texts, encoder, shortlist=corpus.manifest.shortlist)
            import logging

            logging.getLogger("mrl_plugins").warning(
                "%s: %s; loading the model, which takes seconds (rebuild the index with 'mrl-run index' to search "
                "without it).", folder, "its query encoder was made from another model than its vectors"
                if encoder is not None else "no query encoder (built with --no-query-encoder, or before 0.9)")
        from ..embed.stamp import ModelStamp
        from ..evidence.rundir import resolve_model_arg
        from ..models import load_model, pick_device

        recorded = corpus.index.model.name if corpus.index.model else None
        name = model or recorded
        if name is None:
            raise UserError(f"{folder} does not record its model; pass --model.")
        if model is None and Path(name).is_absolute() and not Path(name).exists():
            raise UserError(f"the model that built {folder} ({name}) is not there any more; pass --model.")
        loaded = load_model(resolve_model_arg(name)[0], device=pick_device(device))
        corpus.check_model(ModelStamp.of(loaded, name))
        return cls(corpus.index, corpus.texts, model_encoder(loaded), shortlist=corpus.manifest.shortlist)
