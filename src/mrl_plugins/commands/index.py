"""``mrl-run index``: its arguments, turned once into an
:class:`~mrl_plugins.search.indexing.IndexRequest` (the model, the run whose evidence fills the
defaults, the backend built with its parameters, the width, store and shortlist) that
:func:`~mrl_plugins.search.indexing.build_index` builds."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..components import Command
from ..data.corpus import FORMATS
from ..errors import UserError
from ..models import ResolvedModel, embedding_dim_from_files
from ..search.indexing import IndexRequest
from ..search.tuning import MEMORY_BYTES
from .args import backend_for, make_backend, positive, resolve_model_arg
from .logs import setup_logging

if TYPE_CHECKING:
    pass

logger = logging.getLogger("mrl_plugins")


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
    index.add_argument("--setting", choices=["tune", "run"], default="tune",
                       help="What to build when --dim, --index, --quantize, --store and --rerank-dim are left out: "
                       "'tune' (default) measures widths, backends and shortlists on this corpus and builds the "
                       "fastest within --memory bytes per vector keeping --recall of the exact top 10 at least 20%% "
                       "faster than exact search (else exact search); 'run': the run's serving choice, as before "
                       "0.9.")
    index.add_argument("--recall", type=float, default=0.95,
                       help="Tuning: the share of the exact full-width top 10 to keep, met by its one-sided 95%% "
                       "lower bound over the probe queries (default 0.95; 1.0: exact).")
    index.add_argument("--latency-ms", type=float,
                       help="Tuning: also require a median one-query time within this many milliseconds.")
    index.add_argument("--memory", type=float, default=MEMORY_BYTES, metavar="BYTES",
                       help="Tuning: choose the fastest setting whose index holds at most this many bytes per vector "
                       "in RAM (default %(default)g), else the least memory; 0: always the least memory.")
    index.add_argument("--probe", type=Path,
                       help="Tuning: your own queries, one per line (plain or JSON with 'query'); default: the run's "
                       "validation queries when MODEL is a run, else the openings of 200 documents of the corpus, "
                       "embedded as queries.")
    index.add_argument("--no-query-encoder", dest="query_encoder", action="store_false",
                       help="Do not write the query encoder (the model as an ONNX graph with its tokenizer, checked "
                       "against the model) that lets 'mrl-run search' embed queries without torch.")
    index.add_argument("--overwrite", action="store_true",
                       help="Replace an existing index folder (only an index, or an empty folder; never anything "
                       "else).")


def embeddings_source(model: str, corpus: str | None) -> Path | None:
    """The embeddings folder ``mrl-run index`` builds from, if it names one: ``index EMBEDDINGS``
    or ``index MODEL EMBEDDINGS`` (the model then checked against the shards'); ``None`` for a
    model and a corpus of texts."""
    from ..embed.folder import EmbeddingsDir

    first = Path(model).expanduser()
    if EmbeddingsDir.holds_embeddings(first):
        if corpus is not None:
            raise UserError(f"{model} holds embeddings: it is the whole input, so leave out the corpus "
                            f"({corpus}), or name a model first: 'mrl-run index MODEL {model} -o ...' checks "
                            "the model against them.")
        return first
    if corpus is None:
        raise UserError(f"no corpus: 'mrl-run index {model} CORPUS -o INDEX' embeds and indexes a corpus; "
                        "'mrl-run index EMBEDDINGS -o INDEX' indexes what 'mrl-run embed' wrote.")
    second = Path(corpus).expanduser()
    return second if EmbeddingsDir.holds_embeddings(second) else None


def index_request(args: argparse.Namespace) -> tuple[IndexRequest, int | None, dict[str, Any] | None]:
    """The request, the model's width when its files or the shards say it, and the shards'
    manifest: every choice the command line leaves out is filled here, once (the run's serving
    choice first, then the exact backend at the run's recommended width)."""
    from ..embed.folder import EmbeddingsDir
    from ..models.checks import device_problems
    from ..plugins import load_registry
    from ..search.indexing import index_params, run_choice

    problems = device_problems(args.device, "--device")
    if problems:
        raise UserError(problems[0])
    source = embeddings_source(args.model, args.corpus)
    manifest = EmbeddingsDir(source).open() if source is not None else None
    named_beside = source is not None and args.corpus is not None  # `index MODEL EMBEDDINGS`
    if source is None or named_beside:
        model_ref, run = resolve_model_arg(args.model)
    else:  # the shards' model: its evidence, when it is a run still there, sets the defaults
        assert manifest is not None
        model_ref, run = _recorded_model(manifest.get("run") or manifest["model"]["name"])
    full = (manifest["full_dim"] if manifest is not None
            else embedding_dim_from_files(model_ref.location) if model_ref.is_local else None)
    registry = load_registry()  # once: the exact backend, what --quantize offers, and the backend built
    explicit = bool(args.index or args.dim or args.quantize or args.store or args.rerank_dim)
    if args.latency_ms is not None and args.latency_ms <= 0:
        raise UserError(f"--latency-ms {args.latency_ms}: must be a positive number of milliseconds.")
    if not args.memory >= 0:  # NaN too
        raise UserError(f"--memory {args.memory}: must be 0 or more bytes per vector (0: always the least memory).")
    if not 0 < args.recall <= 1:
        raise UserError(f"--recall {args.recall}: must be above 0 and at most 1 (a share of the exact top 10).")
    if args.probe is not None and not args.probe.is_file():
        raise UserError(f"--probe {args.probe}: no such file; give a file of your own queries, one per line.")
    tune = args.setting == "tune" and not explicit
    if args.setting == "run" and run is None and not explicit:
        logger.info("--setting run: %s is not a run's model; building its recommended width with the exact backend",
                    args.model)
    chosen = run_choice(run) if args.setting == "run" and not explicit else None
    if chosen is not None and chosen.setting.index not in registry.names("index"):
        logger.warning("the run's serving choice (%s) uses the index backend '%s', which is not installed here; "
                       "building the exact backend at its width instead (install the plugin that provides it, or "
                       "pass --index)", chosen.label, chosen.setting.index)
        chosen = None
    index = args.index or (chosen.setting.index if chosen is not None else None)  # tuning builds exact first
    name, params = backend_for(registry, index or registry.exact_index(), args.quantize, args.index_param)
    if args.dsn:
        params["dsn"] = args.dsn
    backend = make_backend(registry, name, index_params(chosen, name, params))
    request = IndexRequest(
        model=model_ref, check_model=named_beside, run=run, corpus=None if source is not None else args.corpus,
        embeddings=source, output=args.output, backend=backend, backend_name=name,
        dim=args.dim or (chosen.dim if chosen is not None else None), rerank_dim=args.rerank_dim,
        store=args.store or (chosen.store if chosen is not None else "float32"),
        shortlist=chosen.shortlist if chosen is not None else None, chosen=chosen,
        text_column=args.text_column, id_column=args.id_column, format=args.format, encoding=args.encoding,
        batch_size=args.batch_size, device=args.device, overwrite=args.overwrite, query_encoder=args.query_encoder,
        tune=tune, measure=explicit, recall=args.recall, latency_ms=args.latency_ms, memory_bytes=args.memory,
        probe=args.probe,
    )
    return request, full, manifest


def _recorded_model(name: str) -> tuple[ResolvedModel, Path | None]:
    """The model an embeddings folder records, resolved if it is still there (for its defaults)."""
    try:
        return resolve_model_arg(name)
    except UserError:
        return ResolvedModel(name, name, "hub"), None


class Index(Command):
    """Build a funnel index (shortlist at a low dimension, rerank at full) from a corpus."""

    name = "index"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        index_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ..search.indexing import build_index

        setup_logging()
        request, full, manifest = index_request(args)
        return build_index(request, full=full, manifest=manifest)
