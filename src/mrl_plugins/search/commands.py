"""``mrl-run index`` and ``mrl-run search``: build a funnel index from a corpus, query it.

Everything a user can get wrong (a dimension above the model's, a shortlist shorter than k, an
unknown index type, an empty corpus or a missing column, a folder that already holds files, an
index built by another model) is one :class:`~mrl_plugins.errors.UserError` before any work.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tomllib
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..models import ResolvedModel, embedding_dim_from_files, resolve_model

logger = logging.getLogger("mrl_plugins")

QUANTIZED = {("flat", "int8"): ("int8", {}), ("flat", "binary"): ("binary", {}), ("hnsw", "int8"): ("hnsw", {"storage": "int8"})}


def add_parsers(sub: Any) -> None:
    index = sub.add_parser("index", help="Build a funnel index (shortlist at a low dimension, rerank at full) from a corpus.")
    index.add_argument("model", help="A run's output directory, a model folder or a Hub id.")
    index.add_argument("corpus", type=Path, help="Documents: .jsonl, .json, .csv, .tsv, .parquet, or text with one per line.")
    index.add_argument("-o", "--output", type=Path, required=True, help="The index folder to create.")
    index.add_argument("--dim", type=int, help="Shortlist dimension (default: the run's smallest keeping ≥ 95%%, else full).")
    index.add_argument("--index", default="flat", help='Shortlist index backend: flat, hnsw, int8, binary, or a plugin\'s.')
    index.add_argument("--quantize", choices=["int8", "binary"], help="Quantise the shortlist: flat+int8, flat+binary, hnsw+int8.")
    index.add_argument("--index-param", action="append", default=[], metavar="KEY=VALUE",
                       help="A backend parameter (TOML value), e.g. --index-param m=48 (see 'mrl-run plugins -v').")
    index.add_argument("--rerank-dim", type=int, help="Rerank at this dimension (default: full).")
    index.add_argument("--store", choices=["float32", "float16"], default="float32", help="Dtype of the rerank vectors.")
    index.add_argument("--text-column", default="text", help="Column holding the documents (default: text).")
    index.add_argument("--id-column", help="Column holding document ids (default: the row number).")
    index.add_argument("--batch-size", type=int, default=256)
    index.add_argument("--device", default="auto", help='"auto" (CUDA, else MPS, else CPU) or a torch device.')
    index.add_argument("--overwrite", action="store_true", help="Replace an existing index folder.")
    search = sub.add_parser("search", help="Search an index built by 'mrl-run index'.")
    search.add_argument("index", type=Path, help="The index folder.")
    search.add_argument("query", nargs="+", help="One or more queries.")
    search.add_argument("-k", type=int, default=10, help="Documents to return (default 10).")
    search.add_argument("--shortlist", type=int, default=100, help="Candidates to rerank (default 100; 0: no rerank).")
    search.add_argument("--model", help="Embed queries with this model (default: the one that built the index).")
    search.add_argument("--device", default="auto")
    search.add_argument("--json", action="store_true", help="Print JSON lines instead of a table.")


def resolve_model_arg(name: str) -> tuple[ResolvedModel, Path | None]:
    """A model argument: a run's output directory (its ``model/``), a model folder, or a Hub id."""
    path = Path(name).expanduser()
    if (path / "model" / "modules.json").is_file():
        return ResolvedModel(str(path.resolve() / "model"), str(path.resolve() / "model"), "local path"), path
    resolved = resolve_model(name)
    if resolved.origin == "local path":
        resolved = ResolvedModel(str(Path(resolved.location)), resolved.location, resolved.origin)
        if embedding_dim_from_files(resolved.location) is None:
            raise UserError(f"{name}: a folder, but neither a run's output directory nor a sentence-transformers model.")
    return resolved, None


def default_dim(model: ResolvedModel, full: int) -> int:
    """The smallest dimension keeping ≥ 95% of full quality, from the model's mrl.json, else full."""
    meta = Path(model.location) / "mrl.json"
    if model.is_local and meta.is_file():
        return int(json.loads(meta.read_text()).get("recommended_dims", {}).get("95%", full))
    return full


def backend_for(name: str, quantize: str | None, assignments: list[str]) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    if quantize:
        if (name, quantize) not in QUANTIZED:
            raise UserError(f"--quantize {quantize} does not combine with --index {name}; "
                            f"these do: {', '.join(f'--index {i} --quantize {q}' for i, q in QUANTIZED)}.")
        name, params = QUANTIZED[(name, quantize)]
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--index-param {item}: expected KEY=VALUE, e.g. --index-param m=48.")
        try:
            params[key.strip()] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            params[key.strip()] = text.strip()
    return name, params


def make_backend(name: str, params: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from ..plugins import load_registry

    cls = load_registry().get("index", name)
    try:
        return cls(cls.Params.model_validate(params))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"--index {name}: parameter '{'.'.join(map(str, first['loc']))}' {first['msg'].lower()} "
                        f"(see 'mrl-run plugins -v' for its parameters).") from None


def cmd_index(args: argparse.Namespace) -> int:
    from ..models import full_width, load_model, pick_device
    from .build import build_from_texts, read_corpus

    model_ref, _ = resolve_model_arg(args.model)
    full = embedding_dim_from_files(model_ref.location) if model_ref.is_local else None
    name, params = backend_for(args.index, args.quantize, args.index_param)
    backend = make_backend(name, params)
    out: Path = args.output
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise UserError(f"{out} exists and is not empty; nothing was changed. Choose another folder or pass --overwrite.")
    for flag, value in (("--dim", args.dim), ("--rerank-dim", args.rerank_dim)):
        if value is not None and (value < 1 or (full is not None and value > full)):
            raise UserError(f"{flag} {value}: must be between 1 and the model's dimension {full}.")
    table, total = read_corpus(args.corpus, text_column=args.text_column, id_column=args.id_column)
    model = load_model(model_ref, device=pick_device(args.device))
    full = full_width(model)
    dim = args.dim or default_dim(model_ref, full)
    if dim > full:
        raise UserError(f"--dim {dim}: must be between 1 and the model's dimension {full}.")
    tmp = out.with_name(f".{out.name}.building")  # the old index (if any) is replaced only when this one is whole
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        index = build_from_texts(
            model, model_ref.requested, table, total, tmp, backend=backend, shortlist_dim=dim,
            rerank_dim=args.rerank_dim, store_dtype=args.store, text_column=args.text_column, id_column=args.id_column,
            batch_size=args.batch_size, progress=logger.getEffectiveLevel() <= logging.INFO,
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.rename(out)
    print(f"indexed {index.count} documents of {args.corpus} in {out}: {name} shortlist at {dim} of {full} dims "
          f"({index.index_bytes():,.0f} bytes per vector in memory), rerank at {index.rerank_dim} ({args.store}).")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ..evaluation import encode_texts
    from ..models import load_model, pick_device
    from .build import open_index
    from .index import ModelStamp

    if args.shortlist and args.shortlist < args.k:
        raise UserError(f"--shortlist {args.shortlist} is smaller than -k {args.k}; the shortlist must hold the top k.")
    corpus = open_index(args.index)
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
