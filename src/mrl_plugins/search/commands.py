"""``mrl-run index`` and ``mrl-run search``: build a funnel index from a corpus, query it.

Everything a user can get wrong (a dimension above the model's, a shortlist shorter than k, an
unknown index type, an empty corpus or a missing column, a folder that already holds files, an
index built by another model) is one :class:`~mrl_plugins.errors.UserError` before any work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..evidence.rundir import RunDir
from ..models import ResolvedModel, embedding_dim_from_files, resolve_model
from .corpus import FORMATS
from .destination import building, check_destination, check_room, discard_old, replace_folder

if TYPE_CHECKING:
    from ..plugins import Registry

logger = logging.getLogger("mrl_plugins")


def positive(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (a mistake is a usage error, exit 2)."""
    return _bounded(text, 1)


def non_negative(text: str) -> int:
    return _bounded(text, 0)


def _bounded(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < low or (high is not None and value > high):
        most = f", at most {high}" if high else ""
        raise argparse.ArgumentTypeError(f"{value} is out of range: at least {low}{most}")
    return value


def port(text: str) -> int:
    return _bounded(text, 1, 65535)


def index_arguments(index: argparse.ArgumentParser) -> None:
    """The arguments of ``mrl-run index``."""
    index.add_argument("model", help="A run's output directory, a model folder or a Hub id; or an embeddings folder "
                       "written by 'mrl-run embed' (then no corpus: nothing is encoded again).")
    index.add_argument("corpus", nargs="?", help="Documents: .jsonl, .json, .csv, .tsv, .parquet, or text with one per "
                       "line, a folder or a quoted pattern of such files; a FIFO or <(zcat docs.jsonl.gz) works, and - "
                       "reads standard input. Or an embeddings folder, checked to be the model's.")
    index.add_argument("-o", "--output", type=Path, required=True, help="The index folder to create.")
    index.add_argument("--dim", type=positive,
                       help="Shortlist dimension (default: the run's serving choice, else its smallest width keeping "
                       "≥ 95%%, else full).")
    index.add_argument("--index",
                       help="Shortlist index backend, any registered one (built in: flat, hnsw, ivf, int8, binary; "
                       "'mrl-run plugins' lists them). Default: the run's serving choice, else the exact one "
                       "(flat).")
    index.add_argument("--quantize", metavar="PRECISION",
                       help="Quantise the shortlist, where the backend offers it (built in: flat with int8 or binary, "
                       "hnsw with int8; 'mrl-run plugins' lists the backends).")
    index.add_argument("--index-param", action="append", default=[], metavar="KEY=VALUE",
                       help="A backend parameter (TOML value), e.g. --index-param m=48 (see 'mrl-run plugins -v').")
    index.add_argument("--dsn", help="Connection string of the database server an index engine uses (e.g. "
                       "--index pgvector --dsn postgresql://user@host/db; default: the engine's own, e.g. an embedded "
                       "server it starts). It is recorded in the index folder, so a password in it is refused: "
                       "keep that in PGPASSWORD or ~/.pgpass.")
    index.add_argument("--rerank-dim", type=positive, help="Rerank at this dimension (default: full).")
    index.add_argument("--store", choices=["float32", "float16", "int8"],
                       help="Dtype of the rerank vectors (default: the run's serving choice, else float32; int8 is a "
                       "quarter of float32's bytes, calibrated on the first documents).")
    index.add_argument("--text-column", default="text", help="Column holding the documents (default: text).")
    index.add_argument("--id-column", help="Column holding document ids, unique (default: the row number).")
    index.add_argument("--format", choices=FORMATS, help="Read the corpus as this format (default: by its extension; "
                       "for - or a FIFO without one, JSON lines if the first line is an object, else plain text).")
    index.add_argument("--encoding", default="utf-8",
                       help="Encoding of CSV, TSV and text corpora (default utf-8; JSON is UTF-8).")
    index.add_argument("--batch-size", type=positive, default=256)
    index.add_argument("--device", default="auto", help='"auto" (CUDA, else MPS, else CPU) or a torch device.')
    index.add_argument("--overwrite", action="store_true",
                       help="Replace an existing index folder (only an index, or an empty folder; never anything "
                       "else).")


def search_arguments(search: argparse.ArgumentParser) -> None:
    """The arguments of ``mrl-run search``."""
    search.add_argument("index", type=Path, help="The index folder.")
    search.add_argument("query", nargs="+", help="One or more queries.")
    search.add_argument("-k", type=positive, default=10, help="Documents to return (default 10).")
    search.add_argument("--shortlist", type=non_negative,
                        help="Candidates to rerank (default: the one the index was built for, else 100; 0: no "
                        "rerank).")
    search.add_argument("--model", help="Embed queries with this model (default: the one that built the index).")
    search.add_argument("--dsn", help="Connection string of the database server holding the index, when an index "
                        "engine's server moved (default: the one recorded in the index folder).")
    search.add_argument("--device", default="auto")
    search.add_argument("--json", action="store_true", help="Print JSON lines instead of a table.")


def resolve_model_arg(name: str) -> tuple[ResolvedModel, Path | None]:
    """A model argument: a run's output directory (its ``model/``), a model folder, or a Hub id."""
    path = Path(name).expanduser()
    if RunDir.is_run(path):
        model = str(RunDir(path.resolve()).model)
        return ResolvedModel(model, model, "local path"), path
    resolved = resolve_model(name)
    if resolved.origin == "local path":
        resolved = ResolvedModel(str(Path(resolved.location)), resolved.location, resolved.origin)
        if embedding_dim_from_files(resolved.location) is None:
            raise UserError(f"{name}: a folder, but neither a run's output directory nor a sentence-transformers "
                            "model.")
    return resolved, None


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


def run_setting(args: argparse.Namespace) -> Any:
    """The run's serving choice (:func:`~mrl_plugins.evidence.decisions.index_setting`) when the
    model is a run's and the command line names no index, width or quantisation of its own; a
    funnel setting only (plain truncation or a quantize column leave the defaults as they were)."""
    if args.run_dir is None or args.index or args.dim or args.quantize:
        return None
    from ..evidence.decisions import index_setting

    setting = index_setting(RunDir.open(args.run_dir).results())
    return setting if setting is not None and setting.component == "funnel" else None


def backend_for(registry: Registry, name: str, quantize: str | None,
                assignments: list[str]) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    if quantize:
        offered = registry.quantizations()
        if (name, quantize) not in offered:
            raise UserError(f"--quantize {quantize} does not combine with --index {name}; "
                            f"these do: {', '.join(f'--index {i} --quantize {q}' for i, q in offered)}.")
        name, params = offered[(name, quantize)]
        params = dict(params)
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--index-param {item}: expected KEY=VALUE, e.g. --index-param m=48.")
        try:
            params[key.strip()] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            params[key.strip()] = text.strip()
    return name, params


def make_backend(registry: Registry, name: str, params: dict[str, Any]) -> Any:
    from ..plugins import ComponentParamsError

    try:
        return registry.build("index", name, params)
    except ComponentParamsError as exc:
        raise UserError(f"--index {name}: {exc.detail}") from None


def embeddings_source(args: argparse.Namespace) -> Path | None:
    """The embeddings folder ``mrl-run index`` builds from, if it names one: ``index EMBEDDINGS``
    or ``index MODEL EMBEDDINGS`` (the model then checked against the shards'); ``None`` for a
    model and a corpus of texts."""
    from .embeddings import EmbeddingsDir

    first = Path(args.model).expanduser()
    if EmbeddingsDir.holds_embeddings(first):
        if args.corpus is not None:
            raise UserError(f"{args.model} holds embeddings: it is the whole input, so leave out the corpus "
                            f"({args.corpus}), or name a model first: 'mrl-run index MODEL {args.model} -o ...' checks "
                            "the model against them.")
        args.model = None
        return first
    if args.corpus is None:
        raise UserError(f"no corpus: 'mrl-run index {args.model} CORPUS -o INDEX' embeds and indexes a corpus; "
                        "'mrl-run index EMBEDDINGS -o INDEX' indexes what 'mrl-run embed' wrote.")
    second = Path(args.corpus).expanduser()
    return second if EmbeddingsDir.holds_embeddings(second) else None


def cmd_index(args: argparse.Namespace) -> int:
    from ..checks import device_problems
    from ..locks import FolderLock
    from .corpus import CHARS_PER_TOKEN
    from .embeddings import EmbeddingsDir
    from .sources import open_corpus

    problems = device_problems(args.device, "--device")
    if problems:
        raise UserError(problems[0])
    source = embeddings_source(args)
    manifest = EmbeddingsDir(source).open() if source is not None else None
    if args.model is not None:
        model_ref, args.run_dir = resolve_model_arg(args.model)
    else:  # the shards' model: its evidence, when it is a run still there, sets the defaults
        assert manifest is not None
        model_ref, args.run_dir = _recorded_model(manifest.get("run") or manifest["model"]["name"])
    full = (manifest["full_dim"] if manifest is not None
            else embedding_dim_from_files(model_ref.location) if model_ref.is_local else None)
    from ..plugins import load_registry

    registry = load_registry()  # once: the exact backend, what --quantize offers, and the backend built
    args.setting = run_setting(args)
    if args.setting is not None and args.setting.index not in registry.names("index"):
        logger.warning("the run's serving choice (%s) uses the index backend '%s', which is not installed here; "
                       "building the exact backend at its width instead (install the plugin that provides it, or "
                       "pass --index)", args.setting.label, args.setting.index)
        args.setting = None
    if args.setting is not None:  # the run's serving choice fills what the command line left out
        args.index, args.dim = args.index or args.setting.index, args.dim or args.setting.dim
        args.store = args.store or args.setting.store
    args.store = args.store or "float32"
    name, params = backend_for(registry, args.index or registry.exact_index(), args.quantize, args.index_param)
    if args.dsn:
        params["dsn"] = args.dsn
    if args.setting is not None and name == args.setting.index:  # and the backend parameters it was measured with
        params = {**(args.setting.params.get("index_params") or {}), **params}
    backend = make_backend(registry, name, params)
    if args.store not in backend.stores:
        raise UserError(f"--store {args.store}: index backend '{name}' holds rerank vectors as "
                        f"{', '.join(sorted(backend.stores))}; choose one of those.")
    out: Path = args.output
    for flag, value in (("--dim", args.dim), ("--rerank-dim", args.rerank_dim)):
        if value is not None and full is not None and value > full:
            raise UserError(f"{flag} {value}: must be between 1 and the model's dimension {full}.")
    check_destination(out, args.overwrite)
    corpus = None
    if source is None:
        corpus = open_corpus(args.corpus, text_column=args.text_column, id_column=args.id_column,
                             encoding=args.encoding, format=args.format)
    lock = FolderLock(out, f"mrl-run index {args.corpus or source} -o {out}")
    lock.acquire(f"another 'mrl-run index' is building {out} ({{holder}}); nothing was changed. Wait for it to "
                 "finish, or choose another -o.")
    with lock:
        check_destination(out, args.overwrite)  # again, under the lock: the other build may have just finished
        for stale in out.parent.glob(f".{out.name}.building-*"):  # left by a build that was killed: no one holds it now
            shutil.rmtree(stale, ignore_errors=True)
        if source is not None:
            assert manifest is not None
            return _build_from_embeddings(args, model_ref, source, manifest, backend, name, out)
        return _build(args, model_ref, corpus, backend, name, out, full, CHARS_PER_TOKEN)


def _recorded_model(name: str) -> tuple[ResolvedModel, Path | None]:
    """The model an embeddings folder records, resolved if it is still there (for its defaults)."""
    try:
        return resolve_model_arg(name)
    except UserError:
        return ResolvedModel(name, name, "hub"), None


def _build_from_embeddings(args: argparse.Namespace, model_ref: ResolvedModel, source: Path,
                           manifest: dict[str, Any], backend: Any, name: str, out: Path) -> int:
    from ..components import Engine
    from .build import build_from_embeddings
    from .embeddings import EmbeddingsDir
    from .index import ModelStamp

    full = manifest["full_dim"]
    if args.model is not None:  # a model named beside the shards: it must be the one that embedded them
        from ..models import load_model, pick_device

        model = load_model(model_ref, device=pick_device(args.device))
        stamp = ModelStamp.of(model, model_ref.requested)
        recorded = ModelStamp(manifest["model"]["name"], tuple(manifest["model"]["probe"]))
        if not recorded.matches(stamp):
            raise UserError(f"{source} was embedded by '{recorded.name}', and '{args.model}' embeds differently; index "
                            f"it without naming a model ('mrl-run index {source} -o ...'), or embed the corpus with "
                            f"'{args.model}' first.")
    if not isinstance(backend, Engine):
        size = sum(EmbeddingsDir(source).texts(s["shard"]).stat().st_size for s in manifest["shards"])
        check_room(out, manifest["count"], size, full, args.dim or full, args.store)
    dim = args.dim or (default_dim(model_ref, full, args.run_dir) if model_ref.is_local else full)
    tmp = out.with_name(f".{out.name}.building-{os.getpid()}")
    with building(tmp, out):
        index = build_from_embeddings(
            EmbeddingsDir(source), manifest, tmp, backend=backend, shortlist_dim=dim, rerank_dim=args.rerank_dim,
            store_dtype=args.store, batch_size=args.batch_size, progress=logger.getEffectiveLevel() <= logging.INFO,
            shortlist=args.setting.shortlist if args.setting is not None else None, replace=args.overwrite,
        )
        discard_old(out)
        replace_folder(tmp, out)
    _say_indexed(args, index, f"the embeddings in {source}", out, name, dim, full)
    return 0


def _say_indexed(args: argparse.Namespace, index: Any, what: str, out: Path, name: str, dim: int, full: int) -> None:
    chosen = (f" (the run's serving choice: {args.setting.label}, shortlist {args.setting.shortlist}, "
              f"{args.setting.kept:.1%} of exact held out)" if args.setting is not None else "")
    print(f"indexed {index.count} documents of {what} in {out}: {name} shortlist at {dim} of {full} dims "
          f"({index.index_bytes():,.0f} bytes per vector in memory), rerank at {index.rerank_dim} ({args.store})"
          f"{chosen}.")


def _build(args: argparse.Namespace, model_ref: ResolvedModel, corpus: Any, backend: Any, name: str, out: Path,
           full: int | None, chars_per_token: int) -> int:
    from ..components import Engine
    from ..models import full_width, load_model, pick_device
    from .build import build_from_texts

    if full is not None and not isinstance(backend, Engine):  # an engine keeps the vectors on its own server
        size = corpus.path.stat().st_size if corpus.kind == "file" and corpus.path.is_file() else 0
        check_room(out, corpus.approximate_rows(), size, full, args.dim or full, args.store)
    model = load_model(model_ref, device=pick_device(args.device))
    full = full_width(model)
    dim = args.dim or default_dim(model_ref, full, args.run_dir)
    if dim > full:
        raise UserError(f"--dim {dim}: must be between 1 and the model's dimension {full}.")
    corpus.max_chars = int(getattr(model, "max_seq_length", None) or 512) * chars_per_token
    tmp = out.with_name(f".{out.name}.building-{os.getpid()}")  # this build's own; the old index stays until the end
    with building(tmp, out):
        index = build_from_texts(
            model, model_ref.requested, corpus, tmp, backend=backend, shortlist_dim=dim, rerank_dim=args.rerank_dim,
            store_dtype=args.store, batch_size=args.batch_size, progress=logger.getEffectiveLevel() <= logging.INFO,
            shortlist=args.setting.shortlist if args.setting is not None else None, replace=args.overwrite,
        )
        discard_old(out)
        replace_folder(tmp, out)
    _say_indexed(args, index, corpus.name, out, name, dim, full)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ..checks import device_problems
    from .folder import check_index_folder

    manifest = check_index_folder(args.index)  # the whole folder, before torch or the model loads
    if args.dsn and not manifest.get("engine"):
        raise UserError(f"--dsn: {args.index} keeps its vectors in its folder ({manifest['index']['name']}); only an "
                        "index held by a database engine has a server to point at. Leave out --dsn.")
    if args.shortlist is None:
        args.shortlist = manifest.get("shortlist") or 100
    if args.shortlist and args.shortlist < args.k:
        raise UserError(f"--shortlist {args.shortlist} is smaller than -k {args.k}; the shortlist must hold the top k.")
    problems = device_problems(args.device, "--device")
    if problems:
        raise UserError(problems[0])

    from ..evaluation import encode_texts
    from ..models import load_model, pick_device
    from .build import open_index
    from .index import ModelStamp

    corpus = open_index(args.index, params={"dsn": args.dsn} if args.dsn else None)
    recorded = corpus.index.model.name if corpus.index.model else None
    name = args.model or recorded
    if name is None:
        raise UserError(f"{args.index} does not record its model; pass --model.")
    if args.model is None and Path(name).is_absolute() and not Path(name).exists():
        raise UserError(f"the model that built {args.index} ({name}) is not there any more; pass --model.")
    model_ref, _ = resolve_model_arg(name)
    model = load_model(model_ref, device=pick_device(args.device))
    corpus.check_model(ModelStamp.of(model, name))
    queries = encode_texts(model, list(args.query), role="query")
    hits = corpus.index.search(queries, args.k, shortlist=args.shortlist or None)
    for row, query in enumerate(args.query):
        docs = corpus.documents(hits, row)
        if args.json:
            print(json.dumps({"query": query, "hits": docs}, ensure_ascii=False))
            continue
        print(f"{query}")
        for rank, doc in enumerate(docs, 1):
            text = " ".join(doc["text"].split())
            print(f"  {rank:>2}. {doc['score']:.4f}  [{doc['id']}]  {text[:100]}{'…' if len(text) > 100 else ''}")
    return 0
