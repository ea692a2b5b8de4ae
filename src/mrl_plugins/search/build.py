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

import numpy as np

from ..components import IndexBackend, SearchIndex
from ..data.corpus import CorpusReader
from ..embed.folder import EmbeddingsDir
from ..embed.stamp import ModelStamp
from ..errors import UserError
from ..models import full_width
from .folder import Manifest, StoreDtype, TextStore, check_index_folder
from .index import FunnelIndex, funnel_index, open_funnel

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

    from ..evaluation.encode import encode_texts

    full_dim = full_width(model)
    index = funnel_index(backend, full_dim, shortlist_dim, rerank_dim=rerank_dim, store_dtype=store_dtype,
                           model=ModelStamp.of(model, model_name), replace=replace)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(index, FunnelIndex):
            index.spool(folder)  # the full vectors go to disk as they come: memory holds the shortlist index
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
            bar.total = bar.n  # the total was an upper bound (lines of the file): end at what was encoded
            bar.refresh()
        corpus.report()
        if index.count == 0:
            raise UserError(f"{corpus.name}: every document of the corpus is empty; nothing to index.")
        index.save(folder, texts=store.path, shortlist=shortlist)
        record_provenance(folder, backend)
    except BaseException:
        index.close()  # an engine's unsaved table is dropped: nothing half-built is left behind
        raise
    return index


def record_provenance(folder: Path, backend: IndexBackend) -> None:
    """Add to a saved index's manifest which plugin, distribution and version built it (the
    registry's :meth:`~mrl_plugins.plugins.Registry.provenance`), for every backend alike, the
    engines that write their own manifest included: an index opened where that plugin is
    missing then says what to install. The manifest is replaced atomically."""
    import json
    import os

    if backend.provided_by is None:
        return
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["index"]["provided_by"] = dict(backend.provided_by)
    tmp = folder / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def build_from_embeddings(
    embeddings: EmbeddingsDir, manifest: dict[str, Any], folder: Path, *, backend: IndexBackend,
    shortlist_dim: int, rerank_dim: int | None = None, store_dtype: StoreDtype = "float32",
    batch_size: int = 256, progress: bool = True, shortlist: int | None = None, replace: bool = False,
) -> SearchIndex:
    """The same index as :func:`build_from_texts`, from ``mrl-run embed``'s shards: nothing is
    encoded. Shards are read one at a time (memory-mapped) and added ``batch_size`` rows at a time
    (the same blocks a build from texts adds, so an ``int8`` store is calibrated on the same first
    vectors); the full vectors are written to the index folder as they are read."""
    import json

    from tqdm.auto import tqdm

    stamp = ModelStamp(manifest["model"]["name"], tuple(manifest["model"]["probe"]))
    index = funnel_index(backend, manifest["full_dim"], shortlist_dim, rerank_dim=rerank_dim, store_dtype=store_dtype,
                           model=stamp, replace=replace)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(index, FunnelIndex):
            index.spool(folder)
        store = TextStore(folder)
        wants_texts = not isinstance(index, FunnelIndex)  # an engine keeps the texts beside the vectors
        with store.appender() as put, tqdm(total=manifest["count"], unit="doc", desc="indexing",
                                           disable=not progress) as bar:
            for vectors, block in _blocks(embeddings, manifest, batch_size):
                for line in block:
                    put(line)
                docs = [json.loads(line)["text"] for line in block] if wants_texts else None
                index.add(vectors, docs)
                bar.update(len(block))
        if index.count != manifest["count"]:
            raise UserError(f"{embeddings.path}: the shards hold {index.count} vectors, the manifest says "
                            f"{manifest['count']}; the folder is damaged; embed the corpus again.")
        index.save(folder, texts=store.path, shortlist=shortlist)
        record_provenance(folder, backend)
    except BaseException:
        index.close()
        raise
    return index


def _blocks(embeddings: EmbeddingsDir, manifest: dict[str, Any], size: int) -> Any:
    """``(vectors, text lines)`` of ``size`` documents at a time across the shards, in corpus
    order: the same blocks whatever the shards' sizes."""
    vectors: list[np.ndarray] = []
    lines: list[bytes] = []
    held = 0
    for shard, texts in embeddings.shards(manifest):
        with open(texts, "rb") as fh:
            for start in range(0, len(shard), size):
                part = np.asarray(shard[start : start + size], dtype=np.float32)
                vectors.append(part)
                lines.extend(fh.readline() for _ in range(len(part)))
                held += len(part)
                while held >= size:
                    joined = np.concatenate(vectors)
                    yield joined[:size], lines[:size]
                    vectors, lines, held = [joined[size:]], lines[size:], held - size
    if held:
        yield np.concatenate(vectors), lines


@dataclass
class IndexedCorpus:
    """A saved index opened: the index, its text store and its manifest (typed). Searching it by
    text is a :class:`~mrl_plugins.search.searcher.Searcher`'s job."""

    index: SearchIndex
    texts: TextStore | None
    manifest: Manifest
    folder: Path

    def check_model(self, stamp: ModelStamp) -> None:
        """Refuse queries embedded by another model than the one that built the index."""
        built = self.index.model
        if built is not None and not built.matches(stamp):
            raise UserError(
                f"{self.folder} was built with the model '{built.name}', and '{stamp.name}' embeds differently; "
                f"search it with that model, or rebuild the index with 'mrl-run index {stamp.name} CORPUS -o ...'."
            )



def open_index(folder: str | Path, *, registry: Any = None, mmap: bool = True,
               params: dict[str, Any] | None = None) -> IndexedCorpus:
    """Load a saved index; its backend comes from the plugin registry, by the manifest's name,
    with the manifest's parameters (``params`` overrides some: ``--dsn`` names another server)."""
    from ..plugins import ComponentParamsError, load_registry

    folder = Path(folder)
    manifest = check_index_folder(folder)
    registry = registry or load_registry()
    name = manifest.index.name
    params = {**manifest.index.params, **(params or {})}
    try:
        backend = registry.build("index", name, params)
    except ComponentParamsError as exc:
        raise UserError(f"{folder}/manifest.json: parameters of index backend '{name}' are invalid ({exc}).") from None
    except UserError as exc:
        raise UserError(f"{folder}: {missing_backend(name, manifest, str(exc))}") from None
    except ImportError as exc:
        raise UserError(f"{folder}: {missing_library(name, exc, registry)}") from None
    try:
        index = open_funnel(backend, folder, manifest, mmap=mmap)
    except ImportError as exc:
        raise UserError(f"{folder}: {missing_library(name, exc, registry)}") from None
    texts = TextStore(folder) if manifest.texts and (folder / "texts.jsonl").is_file() else None
    return IndexedCorpus(index, texts, manifest, folder)


def missing_backend(name: str, manifest: Manifest, registry_says: str) -> str:
    """Why an index cannot be opened when no installed plugin registers its backend, and what to
    install: the manifest names the distribution and version that built it."""
    origin = manifest.index.provided_by
    dist, version = (origin.distribution, origin.version) if origin else (None, None)
    if dist:
        pinned = f"{dist}=={version}" if version else dist
        return (f"the index was built with index backend '{name}' from {dist} {version or ''}".rstrip()
                + f" (plugin '{origin.plugin if origin else None}'), which is not installed here (or is switched off "
                f"by MRL_DISABLE_PLUGINS). Install it: pip install '{pinned}'. The index itself is fine; nothing was "
                "changed.")
    if origin is not None and origin.plugin:
        return (f"the index was built with index backend '{name}' from the recipe-local plugin "
                f"'{origin.plugin}', which is not loaded here. Load that module (a recipe's plugins = [...]), or "
                f"rebuild the index with 'mrl-run index'. ({registry_says})")
    return (f"{registry_says} The index was built with a backend that is not installed here (its manifest, written "
            "before mrl-plugins 0.7.0, does not say which package provided it); install the plugin that provides it, "
            "or rebuild the index with 'mrl-run index'.")


def missing_library(name: str, exc: ImportError, registry: Any) -> str:
    """An installed backend whose own library is missing: say which, not "rebuild"."""
    library = getattr(exc, "name", None) or str(exc)
    try:
        origin = registry.provenance("index", name)
        plugin = f" (plugin '{origin['plugin']}' from {origin['distribution'] or 'a local module'})"
    except Exception:
        plugin = ""
    return (f"index backend '{name}'{plugin} needs the Python package '{library}', which is not installed here "
            f"({type(exc).__name__}: {exc}). Install it (e.g. pip install {library.split('.')[0]}, or reinstall the "
            "plugin with its dependencies). The index itself is fine; nothing was changed.")
