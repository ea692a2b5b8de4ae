"""Build a funnel index from a model and a text file, and open a saved one.

Texts are read through ``datasets`` (JSONL, JSON, CSV, TSV, Parquet, or plain text with one
document per line), encoded in batches with a progress bar, and written to the index folder as
they go: memory grows with the vectors, never with the texts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from ..components import IndexBackend
from ..data import builder_for
from ..errors import UserError
from ..models import full_width
from .index import FunnelIndex, ModelStamp, SearchHits, StoreDtype, TextStore, read_manifest

logger = logging.getLogger("mrl_plugins")


def read_corpus(path: Path, *, text_column: str = "text", id_column: str | None = None) -> tuple[Any, int]:
    """The corpus as a ``datasets.Dataset`` (memory-mapped) and its number of rows."""
    import datasets

    if not path.is_file():
        raise UserError(f"{path}: corpus file not found.")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the corpus is empty; give a file with at least one document.")
    builder = builder_for(path) or "text"
    kwargs: dict[str, Any] = {"sep": "\t"} if ".tsv" in path.suffixes else {}
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise UserError(f"{path}: cannot be read as {builder}: {type(exc).__name__}: {first}") from None
    if len(table) == 0:
        raise UserError(f"{path}: the corpus is empty; give a file with at least one document.")
    for role, column in (("--text-column", text_column), ("--id-column", id_column)):
        if column is not None and column not in table.column_names:
            raise UserError(
                f"{path}: no column '{column}' (it has {', '.join(repr(c) for c in table.column_names)}); pass "
                f"{role} with one of them."
            )
    return table, len(table)


def _records(table: Any, text_column: str, id_column: str | None) -> Iterator[tuple[str, str]]:
    skipped = 0
    for row, item in enumerate(table):
        text = item[text_column]
        if text is None or not str(text).strip():
            skipped += 1
            continue
        yield (str(item[id_column]) if id_column else str(row)), str(text)
    if skipped:
        logger.warning("skipped %d rows with an empty '%s'", skipped, text_column)


def build_from_texts(
    model: Any, model_name: str, table: Any, total: int, folder: Path, *, backend: IndexBackend,
    shortlist_dim: int, rerank_dim: int | None = None, store_dtype: StoreDtype = "float32",
    text_column: str = "text", id_column: str | None = None, batch_size: int = 256, progress: bool = True,
) -> FunnelIndex:
    """Encode the corpus with ``model`` and save a funnel index (with its texts) in ``folder``."""
    from tqdm.auto import tqdm

    from ..evaluation import encode_texts

    full_dim = full_width(model)
    index = FunnelIndex(full_dim, shortlist_dim, backend, rerank_dim=rerank_dim, store_dtype=store_dtype,
                        model=ModelStamp.of(model, model_name))
    folder.mkdir(parents=True, exist_ok=True)
    store = TextStore(folder)
    batch: list[str] = []
    with tqdm(total=total, unit="doc", desc="encoding", disable=not progress) as bar:
        for _, text in store.write(_records(table, text_column, id_column)):
            batch.append(text)
            if len(batch) == batch_size:
                index.add(encode_texts(model, batch, role="document", batch_size=batch_size))
                bar.update(len(batch))
                batch = []
        if batch:
            index.add(encode_texts(model, batch, role="document", batch_size=batch_size))
            bar.update(len(batch))
    if index.count == 0:
        raise UserError("every document of the corpus is empty; nothing to index.")
    index.save(folder, texts=store.path)
    return index


@dataclass
class IndexedCorpus:
    """A saved index with its texts: search by query text, get documents back."""

    index: FunnelIndex
    texts: TextStore | None
    manifest: dict[str, Any]
    folder: Path

    def check_model(self, stamp: ModelStamp) -> None:
        """Refuse queries embedded by another model than the one that built the index."""
        built = self.index.model
        if built is not None and not built.matches(stamp):
            raise UserError(
                f"{self.folder} was built with the model '{built.name}', and '{stamp.name}' embeds differently; "
                f"search it with that model, or rebuild the index with 'mrl-run index {stamp.name} CORPUS -o ...'."
            )

    def documents(self, hits: SearchHits, row: int = 0) -> list[dict[str, Any]]:
        """The ranked documents of one query: id, text and score."""
        ids = [int(i) for i in hits.ids[row] if i >= 0]
        found = self.texts.get(ids) if self.texts else [{"id": str(i), "text": ""} for i in ids]
        return [{**doc, "score": float(s)} for doc, s in zip(found, hits.scores[row][: len(ids)])]


def open_index(folder: str | Path, *, registry: Any = None, mmap: bool = True) -> IndexedCorpus:
    """Load a saved index; its backend comes from the plugin registry, by the manifest's name."""
    from pydantic import ValidationError

    from ..plugins import load_registry

    folder = Path(folder)
    manifest = read_manifest(folder)
    registry = registry or load_registry()
    name, params = manifest["index"].get("name"), manifest["index"].get("params", {})
    cls = registry.get("index", name)
    try:
        backend = cls(cls.Params.model_validate(params))
    except ValidationError as exc:
        raise UserError(f"{folder}/manifest.json: parameters of index backend '{name}' are invalid ({exc.errors()[0]['msg']}).") from None
    index = FunnelIndex.load(folder, backend, mmap=mmap)
    texts = TextStore(folder) if manifest.get("texts") and (folder / "texts.jsonl").is_file() else None
    return IndexedCorpus(index, texts, manifest, folder)
