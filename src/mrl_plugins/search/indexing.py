"""``mrl-run index``'s work: a corpus of texts (encoded here) or an embeddings folder (read from
its shards) built into an index folder, as an :class:`IndexRequest` says.

Everything a user can get wrong (a dimension above the model's, an unknown index type, an empty
corpus or a missing column, a folder that already holds files, shards embedded by another model,
no room on the disk) is one :class:`~mrl_plugins.errors.UserError` before any work. The build
goes to a hidden folder beside ``-o`` that replaces it only when finished, under a lock.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..evidence.rundir import RunDir
from ..models import ResolvedModel
from ..outputs.destination import building, replace_folder
from .destination import check_destination, check_room, discard_old
from .tuning import MEMORY_BYTES

if TYPE_CHECKING:
    from ..components import IndexBackend, SearchIndex
    from ..evidence.decisions import OperatingPoint

logger = logging.getLogger("mrl_plugins")


@dataclass(frozen=True)
class IndexRequest:
    """An index to build, every choice resolved from the command line and the run's evidence."""

    model: ResolvedModel
    """The model that embeds the texts, or that embedded the shards (as they record it)."""
    check_model: bool
    """Shards named with a model beside them: that model must be the one that embedded them."""
    run: Path | None
    """The run whose evidence sets what the command line leaves out (the model's, or the shards')."""
    corpus: str | None
    """Texts to encode, as ``mrl-run index`` reads them; ``None`` when indexing ``embeddings``."""
    embeddings: Path | None
    output: Path
    backend: IndexBackend = field(repr=False)
    """The shortlist backend, built with its parameters (``--quantize``, ``--index-param``, ``--dsn``,
    the run's measured ones)."""
    backend_name: str
    dim: int | None
    """The shortlist width; ``None``: the run's recommendation, else mrl.json's, else the full width."""
    rerank_dim: int | None
    store: str
    shortlist: int | None
    """The default shortlist ``mrl-run search`` reranks (the run's serving choice's)."""
    chosen: OperatingPoint | None
    """The run's serving choice, when it filled in what the command line left out."""
    text_column: str = "text"
    id_column: str | None = None
    format: str | None = None
    encoding: str = "utf-8"
    batch_size: int = 256
    device: str = "auto"
    overwrite: bool = False
    query_encoder: bool = True
    """Write the torch-free query encoder into the index folder (:mod:`.query_encoder`)."""
    tune: bool = False
    """Choose the setting on the corpus itself (:mod:`.tuning`): built exact first, then rebuilt as chosen."""
    measure: bool = False
    """A setting given on the command line: measure its recall and times on the corpus and record them."""
    recall: float = 0.95
    latency_ms: float | None = None
    memory_bytes: float = MEMORY_BYTES
    """``--memory``: tuning chooses the fastest setting within this many bytes per vector in RAM."""
    probe: Path | None = None
    """``--probe``: the user's own queries to tune with (else the run's validation queries, when the
    model is a run's, else pseudo-queries from the corpus)."""

    @property
    def source(self) -> str:
        return str(self.corpus if self.embeddings is None else self.embeddings)


def default_dim(model: ResolvedModel, full: int, run: Path | None = None) -> int:
    """The smallest dimension keeping ≥ 95% of full quality: from the run's evidence when the
    model is a run's, else from the published model's mrl.json, else the full width."""
    from ..evidence.decisions import index_width
    from ..evidence.results import KEEP_SHARES, share_label

    if run is not None:
        return index_width(RunDir.open(run).results())
    meta = Path(model.location) / "mrl.json"
    if model.is_local and meta.is_file():
        return int(json.loads(meta.read_text()).get("recommended_dims", {}).get(share_label(min(KEEP_SHARES)), full))
    return full


def run_choice(run: Path | None) -> OperatingPoint | None:
    """The run's serving choice (:func:`~mrl_plugins.evidence.decisions.index_setting`), when it is
    a funnel setting ``mrl-run index`` can build (plain truncation or a quantize column leave the
    defaults as they were)."""
    if run is None:
        return None
    from ..evidence.decisions import index_setting

    point = index_setting(RunDir.open(run).results())
    return point if point is not None and point.component == "funnel" else None


def build_index(request: IndexRequest, *, full: int | None, manifest: dict[str, Any] | None = None) -> int:
    """Build the index ``request`` names into its ``-o``; ``full``: the model's width when known
    before loading it (its files, or the shards' manifest); ``manifest``: the embeddings folder's,
    opened and checked (with ``request.embeddings``)."""
    from ..data.corpora import open_corpus
    from ..embed.folder import EmbeddingsDir
    from ..outputs.locks import FolderLock

    if request.store not in request.backend.stores:
        raise UserError(f"--store {request.store}: index backend '{request.backend_name}' holds rerank vectors as "
                        f"{', '.join(sorted(request.backend.stores))}; choose one of those.")
    out = request.output
    for flag, value in (("--dim", request.dim), ("--rerank-dim", request.rerank_dim)):
        if value is not None and full is not None and value > full:
            raise UserError(f"{flag} {value}: must be between 1 and the model's dimension {full}.")
    check_destination(out, request.overwrite)
    corpus = None
    if request.embeddings is None:
        assert request.corpus is not None
        corpus = open_corpus(request.corpus, text_column=request.text_column, id_column=request.id_column,
                             encoding=request.encoding, format=request.format)
    lock = FolderLock(out, f"mrl-run index {request.source} -o {out}")
    lock.acquire(f"another 'mrl-run index' is building {out} ({{holder}}); nothing was changed. Wait for it to "
                 "finish, or choose another -o.")
    with lock:
        check_destination(out, request.overwrite)  # again, under the lock: the other build may have just finished
        for stale in out.parent.glob(f".{out.name}.building-*"):  # left by a build that was killed: no one holds it now
            shutil.rmtree(stale, ignore_errors=True)
        if request.embeddings is not None:
            assert manifest is not None
            return _from_embeddings(request, EmbeddingsDir(request.embeddings), manifest)
        return _from_texts(request, corpus, full)


def _from_embeddings(request: IndexRequest, embeddings: Any, manifest: dict[str, Any]) -> int:
    from ..components import Engine
    from ..embed.stamp import ModelStamp
    from .build import build_from_embeddings

    source, out = embeddings.path, request.output
    full = manifest["full_dim"]
    model = None
    wanted = (request.query_encoder or request.tune or request.measure) and request.model.is_local \
        and Path(request.model.location).exists()
    if request.check_model or wanted:  # named beside the shards, it must be the one that embedded them
        from ..models import load_model, pick_device

        model = load_model(request.model, device=pick_device(request.device))
    if request.check_model:
        stamp = ModelStamp.of(model, request.model.requested)
        recorded = ModelStamp(manifest["model"]["name"], tuple(manifest["model"]["probe"]))
        if not recorded.matches(stamp):
            named = request.model.requested
            raise UserError(f"{source} was embedded by '{recorded.name}', and '{named}' embeds differently; index "
                            f"it without naming a model ('mrl-run index {source} -o ...'), or embed the corpus with "
                            f"'{named}' first.")
    if not isinstance(request.backend, Engine):
        size = sum(embeddings.texts(s["shard"]).stat().st_size for s in manifest["shards"])
        check_room(out, manifest["count"], size, full, request.dim or full, request.store)
    dim = full if request.tune else request.dim or (
        default_dim(request.model, full, request.run) if request.model.is_local else full)
    tmp = out.with_name(f".{out.name}.building-{os.getpid()}")
    with building(tmp, out):
        index = build_from_embeddings(
            embeddings, manifest, tmp, backend=request.backend, shortlist_dim=dim, rerank_dim=request.rerank_dim,
            store_dtype=request.store, batch_size=request.batch_size,  # type: ignore[arg-type]
            progress=logger.getEffectiveLevel() <= logging.INFO, shortlist=request.shortlist,
            replace=request.overwrite,
        )
        encoder = _query_encoder(request, model, index, tmp)
        index = _tune(request, index, tmp, _query_embedder(model, tmp))
        discard_old(out)
        replace_folder(tmp, out)
    _say_indexed(request, index, f"the embeddings in {source}", full, encoder)
    return 0


def _from_texts(request: IndexRequest, corpus: Any, full: int | None) -> int:
    from ..components import Engine
    from ..data.corpus import CHARS_PER_TOKEN
    from ..models import full_width, load_model, pick_device
    from .build import build_from_texts

    out = request.output
    if full is not None and not isinstance(request.backend, Engine):  # an engine keeps the vectors on its server
        size = corpus.path.stat().st_size if corpus.kind == "file" and corpus.path.is_file() else 0
        check_room(out, corpus.approximate_rows(), size, full, request.dim or full, request.store)
    model = load_model(request.model, device=pick_device(request.device))
    full = full_width(model)
    dim = full if request.tune else request.dim or default_dim(request.model, full, request.run)
    if dim > full:
        raise UserError(f"--dim {dim}: must be between 1 and the model's dimension {full}.")
    corpus.max_chars = int(getattr(model, "max_seq_length", None) or 512) * CHARS_PER_TOKEN
    tmp = out.with_name(f".{out.name}.building-{os.getpid()}")  # this build's own; the old index stays until the end
    with building(tmp, out):
        index = build_from_texts(
            model, request.model.requested, corpus, tmp, backend=request.backend, shortlist_dim=dim,
            rerank_dim=request.rerank_dim, store_dtype=request.store,  # type: ignore[arg-type]
            batch_size=request.batch_size, progress=logger.getEffectiveLevel() <= logging.INFO,
            shortlist=request.shortlist, replace=request.overwrite,
        )
        encoder = _query_encoder(request, model, index, tmp)
        index = _tune(request, index, tmp, _query_embedder(model, tmp))
        discard_old(out)
        replace_folder(tmp, out)
    _say_indexed(request, index, corpus.name, full, encoder)
    return 0


def _query_embedder(model: Any, folder: Path) -> Any:
    """Texts → full-width query vectors: the model when loaded, else the query encoder just
    written into ``folder``, else ``None``."""
    if model is not None:
        from ..evaluation.encode import encode_texts

        return lambda texts: encode_texts(model, texts, role="query")
    from .query_encoder import QueryEncoder

    return QueryEncoder.open(folder)


def _tune(request: IndexRequest, index: SearchIndex, folder: Path, embed: Any) -> SearchIndex:
    """Tune on the corpus just built exact into ``folder`` and rebuild it as chosen (``--setting
    tune``, the default), or measure a setting given on the command line; the measurements go
    into the manifest (``tuning``). An engine's index (its vectors on its server) is neither."""
    from ..components import Engine
    from ..evaluation.encode import normalise
    from ..plugins import load_registry
    from .index import FunnelIndex
    from .tuning import make_probes, measure_only, tune

    if isinstance(request.backend, Engine) or not (request.tune or request.measure):
        return index
    assert isinstance(index, FunnelIndex)
    registry = load_registry()

    def make(name: str) -> Any:
        return registry.build("index", name, {})

    in_folder = [n for n in registry.names("index") if not issubclass(registry.get("index", n), Engine)]

    unit = index.vectors if index.store_dtype == "float32" and index.normalised else normalise(index.decoded())
    run_queries = None
    if request.probe is None and request.run is not None and embed is not None:  # no model: nothing embeds them
        from ..evidence.saved import load_validation_queries

        run_queries = load_validation_queries(request.run)
    probes = make_probes(folder, unit, embed, request.probe, run_queries=run_queries, run=request.run)
    if request.tune:
        tuning = tune(unit, probes, make_backend=make, names=in_folder, exact=registry.exact_index(),
                      matryoshka=_matryoshka(request), recall_target=request.recall, latency_ms=request.latency_ms,
                      memory_bytes=request.memory_bytes,
                      progress=logger.info)
        if tuning.chosen is not None:
            index = _rebuild(folder, unit, tuning.chosen, make(tuning.chosen.index), index.model)
    else:
        tuning = measure_only(unit, probes, index, make_backend=make, exact=registry.exact_index(),
                              dim=index.shortlist_dim,
                              name=request.backend_name, store=index.store_dtype,
                              shortlist=request.shortlist or min(100, index.count))
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["tuning"] = tuning.record()
    path.with_name(".manifest.json.tmp").write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(path.with_name(".manifest.json.tmp"), path)
    return index


def _rebuild(folder: Path, unit: Any, chosen: Any, backend: IndexBackend, model: Any) -> SearchIndex:
    """The exact index in ``folder`` rebuilt as the chosen setting (its texts and query encoder kept)."""
    from .build import record_provenance
    from .index import FunnelIndex

    new = FunnelIndex.over(unit, backend, chosen.dim, store_dtype=chosen.store, model=model)
    sub = folder / ".tuned"
    texts = folder / "texts.jsonl"
    new.save(sub, texts=texts if texts.is_file() else None, shortlist=chosen.shortlist)
    (folder / "store_ranges.npy").unlink(missing_ok=True)
    for name in ("shortlist.index", "vectors.npy", "store_ranges.npy", "manifest.json"):  # the manifest last
        if (sub / name).is_file():
            os.replace(sub / name, folder / name)
    sub.rmdir()
    record_provenance(folder, backend)
    return FunnelIndex.load(folder, backend)


def _matryoshka(request: IndexRequest) -> list[int] | None:
    """The model's Matryoshka widths: its run's, else its ``mrl.json``'s, else ``None``."""
    if request.run is not None:
        return list(RunDir.open(request.run).results().dims)
    meta = Path(request.model.location) / "mrl.json"
    if request.model.is_local and meta.is_file():
        dims = json.loads(meta.read_text(encoding="utf-8")).get("matryoshka_dims")
        return [int(d) for d in dims] if isinstance(dims, list) else None
    return None


def _query_encoder(request: IndexRequest, model: Any, index: SearchIndex, folder: Path) -> str | None:
    """Write the torch-free query encoder (:mod:`.query_encoder`) into the index being built;
    ``None`` when written or not asked for, else why there is none. Indexing shards without
    naming a model loads the model they record, when it is a local folder still there."""
    from ..embed.stamp import ModelStamp
    from .query_encoder import write_query_encoder

    if not request.query_encoder:
        return None
    if model is None:
        if not (request.model.is_local and Path(request.model.location).exists()):
            return f"the model that embedded the shards ({request.model.requested}) is not a local folder here"
        from ..models import load_model, pick_device

        model = load_model(request.model, device=pick_device(request.device))
    stamp = ModelStamp.of(model, request.model.requested)
    if index.model is not None and not index.model.matches(stamp):
        return f"{request.model.requested} no longer embeds as it did when the shards were embedded"
    return write_query_encoder(model, index.model or stamp, folder)


def _say_indexed(request: IndexRequest, index: SearchIndex, what: str, full: int, encoder: str | None) -> None:
    from .folder import read_manifest

    manifest = read_manifest(request.output)
    chosen = request.chosen
    said = (f" (the run's serving choice: {chosen.label}, shortlist {chosen.shortlist}, "
            f"{chosen.kept:.1%} of exact held out)" if chosen is not None else "")
    print(f"indexed {index.count} documents of {what} in {request.output}: {manifest.index.name} shortlist at "
          f"{manifest.shortlist_dim} of {full} dims ({index.index_bytes():,.0f} bytes per vector in memory), rerank "
          f"at {index.rerank_dim} ({manifest.store_dtype}){said}.")
    if manifest.tuning:
        from .tuning import summary

        print(summary(manifest.tuning))
    if encoder is not None:
        logger.warning("no query encoder was written into %s (%s): 'mrl-run search' will load the model on every "
                       "call, which takes seconds.", request.output, encoder)


def index_params(chosen: OperatingPoint | None, name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The backend's parameters: those the run measured its choice with (when the backend is the
    choice's), then the command line's."""
    if chosen is not None and name == chosen.setting.index:
        return {**chosen.setting.index_params, **given}
    return dict(given)
