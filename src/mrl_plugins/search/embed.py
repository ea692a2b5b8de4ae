"""``mrl-run embed``: its arguments, and the output folder checked and locked before anything
is read; the embed itself (read pass, executor, shards, manifest) is :mod:`.embedder`'s.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .corpus import FORMATS, corpus_kind
from .embedder import Embedder
from .embeddings import EmbeddingsDir
from .sources import Corpus, corpus_files

if TYPE_CHECKING:
    from ..components import Executor


def embed_arguments(parser: argparse.ArgumentParser) -> None:
    from .commands import positive

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
                        "plugins/mrl-ray); 'mrl-run plugins' lists them.")
    parser.add_argument("--processes", type=positive, help="local: encode with this many processes "
                        "(sentence-transformers' multi-process pool).")
    parser.add_argument("--devices", help="local: one process per device, comma-separated, e.g. cuda:0,cuda:1.")
    parser.add_argument("--address", help="ray: the cluster to join, e.g. ray://head:10001 or auto (default: start a "
                        "local Ray instance).")
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
    from .commands import backend_for

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


# -- the folder, before anything is read -----------------------------------------------------------
def check_output(out: Path, *, resume: bool, overwrite: bool, joining: bool) -> str:
    """What ``-o`` holds and may become: ``"new"``, ``"continue"`` (an unfinished embed to resume
    or join) or ``"finished"``; anything else there is refused, nothing changed."""
    folder = EmbeddingsDir(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"-o {out}: a file is there, not an embeddings folder; nothing was changed. Name a new folder.")
    if not out.is_dir() or not any(out.iterdir()):
        return "new"
    if not folder.holds_embeddings(out):
        shown = ", ".join(sorted(p.name for p in out.iterdir())[:6])
        raise UserError(f"-o {out}: a folder that is not an embeddings folder is there ({shown}); nothing was changed. "
                        "Name a new folder.")
    if overwrite:
        return "overwrite"
    finished = folder.manifest_file.is_file()
    if finished and not resume:
        raise UserError(f"-o {out}: a finished embed is already there; nothing was changed. Index it with 'mrl-run "
                        f"index {out} -o INDEX', or pass --overwrite to embed again.")
    if not finished and not (resume or joining):
        raise UserError(f"-o {out}: an unfinished embed is there; nothing was changed. Pass --resume to continue it "
                        "(shards already done are kept), or --overwrite to start again.")
    return "finished" if finished else "continue"


# -- the command -----------------------------------------------------------------------------------
def cmd_embed(args: argparse.Namespace) -> int:
    from ..checks import device_problems
    from ..locks import FolderLock
    from ..plugins import load_registry
    from .commands import resolve_model_arg

    problems = device_problems(args.device, "--device")
    if problems:
        raise UserError(problems[0])
    part, parts = parse_part(args.shard)
    if args.overwrite and parts > 1:
        raise UserError("--overwrite with --shard: one part would remove what the others write. Remove the folder "
                        "first, then start the parts.")
    if args.overwrite and args.resume:
        raise UserError("--overwrite and --resume: one starts again, the other continues; pass one of them.")
    registry = load_registry()
    executor = make_executor(args, registry)
    out: Path = args.output
    state = check_output(out, resume=args.resume, overwrite=args.overwrite, joining=parts > 1)
    root, files, fmt = corpus_files(args.corpus, args.format)
    for path in files:
        if str(path) == "-" or corpus_kind(path) != "file":
            raise UserError(f"{path}: embed reads regular files (it reads them again to resume or to split the work); "
                            "write a stream to a file first, or index it directly with 'mrl-run index MODEL -'.")
    corpus = Corpus(root, files, text_column=args.text_column, id_column=args.id_column, encoding=args.encoding,
                    format=fmt, unique_ids=False)
    model_ref, run_dir = resolve_model_arg(args.model)
    what = f"mrl-run embed {args.corpus} -o {out}" + (f" --shard {part}/{parts}" if parts > 1 else "")
    lock = FolderLock(out if parts == 1 else out.with_name(f"{out.name}.part-{part}-of-{parts}"), what)
    lock.acquire(f"another 'mrl-run embed' is writing {out} ({{holder}}); nothing was changed. Wait for it to finish"
                 + (", or run another part." if parts > 1 else ", or choose another -o."))
    with lock:
        if state == "overwrite":
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        try:
            return Embedder(args, executor, corpus, model_ref, out, part, parts, run_dir).run()
        except UserError:
            if state in ("new", "overwrite") and not any(out.glob("shard-*.npy")):
                shutil.rmtree(out, ignore_errors=True)  # nothing embedded yet: no half folder is left behind
            raise


