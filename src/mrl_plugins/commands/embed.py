"""``mrl-run embed``: its arguments, turned once into an
:class:`~mrl_plugins.embed.embedder.EmbedRequest` (the model, the executor built with its
parameters, the part of the work, how the corpus is read), which
:func:`mrl_plugins.embed.start.embed` carries out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..components import Command
from ..data.corpus import FORMATS
from ..embed.embedder import EmbedRequest
from ..errors import UserError
from .logs import setup_logging

if TYPE_CHECKING:
    from ..components import Executor


def embed_arguments(parser: argparse.ArgumentParser) -> None:
    from .args import positive

    parser.add_argument("model", help="A run's output directory, a model folder or a Hub id.")
    parser.add_argument("corpus", help="Documents: a .jsonl, .json, .csv, .tsv, .parquet or .txt file, a folder of "
                        "such files (one format), or a quoted pattern such as 'docs/*.jsonl'.")
    parser.add_argument("-o", "--output", type=Path, required=True, help="The embeddings folder to create.")
    parser.add_argument("--resume", action="store_true",
                        help="Continue an interrupted embed in -o: shards already done are kept, the rest embedded.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Start again: replace an embeddings folder (never anything else).")
    parser.add_argument("--shard", metavar="I/N", help="Embed part I of N (0-based; e.g. a Slurm array job's "
                        "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT) into the same -o; the N parts together equal "
                        "one run, and the last to finish writes the manifest.")
    parser.add_argument("--shard-rows", type=positive, default=50_000,
                        help="Corpus rows per shard (default 50,000): the unit of resuming and of splitting.")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                        help="Dtype of the stored vectors (default float32; float16 halves the disk).")
    parser.add_argument("--executor", default="local",
                        help="Where to encode: local (built in: this machine), or a plugin's (e.g. ray from "
                        "plugins/mrl-ray, spark from plugins/mrl-spark); 'mrl-run plugins' lists them.")
    parser.add_argument("--processes", type=positive, help="local: encode with this many processes "
                        "(sentence-transformers' multi-process pool).")
    parser.add_argument("--devices", help="local: one process per device, comma-separated, e.g. cuda:0,cuda:1.")
    parser.add_argument("--address", help="ray, spark: the cluster to join, e.g. ray://head:10001 or auto, "
                        "spark://head:7077 (default: start a local Ray instance, a local Spark).")
    parser.add_argument("--executor-param", action="append", default=[], metavar="KEY=VALUE",
                        help="An executor parameter (TOML value), e.g. --executor-param workers=8.")
    parser.add_argument("--text-column", default="text", help="Column holding the documents (default: text).")
    parser.add_argument("--id-column", help="Column holding document ids, unique (default: the row number).")
    parser.add_argument("--format", choices=FORMATS, help="Read the files as this format (default: by extension).")
    parser.add_argument("--encoding", default="utf-8", help="Encoding of CSV, TSV and text files (default utf-8).")
    parser.add_argument("--batch-size", type=positive, default=256)
    parser.add_argument("--device", default="auto", help='"auto" (CUDA, else MPS, else CPU) or a torch device.')


def parse_part(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    i, sep, n = text.partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit() or not 0 <= int(i) < int(n):
        raise UserError(f"--shard {text}: expected I/N with 0 ≤ I < N, e.g. --shard 0/4 for the first of four parts.")
    return int(i), int(n)


def make_executor(args: argparse.Namespace, registry: Any) -> Executor:
    from ..plugins import ComponentParamsError
    from .args import backend_for

    _, params = backend_for(registry, args.executor, None, args.executor_param)
    cls = None
    for flag, key, value in (("--processes", "processes", args.processes), ("--address", "address", args.address),
                             ("--devices", "devices", [d.strip() for d in args.devices.split(",") if d.strip()]
                              if args.devices else None)):
        if value is None:
            continue
        cls = cls or registry.get("executor", args.executor)
        if key not in cls.Params.model_fields:
            raise UserError(f"{flag}: executor '{args.executor}' has no '{key}' parameter (it takes "
                            f"{', '.join(cls.Params.model_fields) or 'none'}); leave {flag} out, or choose an executor "
                            "that has it.")
        params[key] = value
    try:
        return registry.build("executor", args.executor, params)
    except ComponentParamsError as exc:
        raise UserError(f"--executor {args.executor}: {exc.detail}") from None


def embed_request(args: argparse.Namespace) -> EmbedRequest:
    """The request, with every combination of flags that cannot work refused first."""
    from ..models.checks import device_problems
    from ..plugins import load_registry
    from .args import resolve_model_arg

    problems = device_problems(args.device, "--device")
    if problems:
        raise UserError(problems[0])
    part, parts = parse_part(args.shard)
    if args.overwrite and parts > 1:
        raise UserError("--overwrite with --shard: one part would remove what the others write. Remove the folder "
                        "first, then start the parts.")
    if args.overwrite and args.resume:
        raise UserError("--overwrite and --resume: one starts again, the other continues; pass one of them.")
    executor = make_executor(args, load_registry())
    model, run = resolve_model_arg(args.model)
    return EmbedRequest(model, run, args.corpus, args.output, executor, part=part, parts=parts,
                        shard_rows=args.shard_rows, dtype=args.dtype, batch_size=args.batch_size, device=args.device,
                        resume=args.resume, overwrite=args.overwrite, text_column=args.text_column,
                        id_column=args.id_column, format=args.format, encoding=args.encoding)


class Embed(Command):
    """Embed a corpus once into resumable shards (any size; every device of a machine; a cluster via an executor)."""

    name = "embed"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        embed_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ..embed.start import embed

        setup_logging()
        return embed(embed_request(args))
