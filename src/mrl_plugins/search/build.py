"""Build a funnel index from a model and a corpus, and open a saved one.

Texts are read by :class:`~.corpus.CorpusReader` (streamed, checked line by line), encoded in
batches with a progress bar, and written to the index folder as they go: memory grows with the
vectors, never with the texts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..components import IndexBackend, SearchIndex
from ..errors import UserError
from ..models import full_width
from .corpus import CorpusReader
from .folder import StoreDtype, TextStore, check_index_folder
from .index import ModelStamp, SearchHits

logger = logging.getLogger("mrl_plugins")


def build_from_texts(
    model: Any, model_name: str, corpus: CorpusReader, folder: Path, *, backend: IndexBackend,
    shortlist_dim: int, rerank_dim: int | None = None, store_dtype: StoreDtype = "float32",
    batch_size: int = 256, progress: bool = True, shortlist: int | None = None, replace: bool = False,
) -> SearchIndex:
    """Encode the corpus with ``model`` and save a funnel index (with its texts) in ``folder``.
    The corpus is read once, front to back; documents go to the text store as they are read.
    ``shortlist``, when given, is recorded as the index's default for ``mrl-run search``. The
    backend makes the index (:meth:`~mrl_plugins.components.IndexBackend.funnel`): the core's
    funnel, or an engine's that holds it all; a build that fails is closed, and an engine drops
    what it had loaded."""
    from tqdm.auto import tqdm

    from ..evaluation import encode_texts

    full_dim = full_width(model)
    index = backend.funnel(full_dim, shortlist_dim, rerank_dim=rerank_dim, store_dtype=store_dtype,
                           model=ModelStamp.of(model, model_name), replace=replace)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        store = TextStore(folder)
        batch: list[str] = []
        with tqdm(total=corpus.approximate_rows(), unit="doc", desc="encoding", disable=not progress) as bar:
            for _, text in store.write(corpus):
                batch.append(text)
                if len(batch) == batch_size:
                    index.add(encode_texts(model, batch, role="document", batch_size=batch_size), batch)
                    bar.update(len(batch))
                    batch = []
            if batch:
                index.add(encode_texts(model, batch, role="document", batch_size=batch_size), batch)
                bar.update(len(batch))
        corpus.report()
        if index.count == 0:
            raise UserError(f"{corpus.name}: every document of the corpus is empty; nothing to index.")
        index.save(folder, texts=store.path, shortlist=shortlist)
    except BaseException:
        index.close()  # an engine's unsaved table is dropped: nothing half-built is left behind
        raise
    return index


@dataclass
class IndexedCorpus:
    """A saved index with its texts: search by query text, get documents back."""

    index: SearchIndex
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


def open_index(folder: str | Path, *, registry: Any = None, mmap: bool = True,
               params: dict[str, Any] | None = None) -> IndexedCorpus:
    """Load a saved index; its backend comes from the plugin registry, by the manifest's name,
    with the manifest's parameters (``params`` overrides some: ``--dsn`` names another server)."""
    from ..plugins import ComponentParamsError, load_registry

    folder = Path(folder)
    manifest = check_index_folder(folder)
    registry = registry or load_registry()
    name = manifest["index"]["name"]
    params = {**manifest["index"]["params"], **(params or {})}
    try:
        backend = registry.build("index", name, params)
    except ComponentParamsError as exc:
        raise UserError(f"{folder}/manifest.json: parameters of index backend '{name}' are invalid ({exc}).") from None
    except UserError as exc:
        raise UserError(f"{folder}/manifest.json: {exc} The index was built with a backend that is not installed "
                        "here; install the plugin that provides it, or rebuild the index with "
                        "'mrl-run index'.") from None
    index = backend.open(folder, manifest, mmap=mmap)
    texts = TextStore(folder) if manifest.get("texts") and (folder / "texts.jsonl").is_file() else None
    return IndexedCorpus(index, texts, manifest, folder)
