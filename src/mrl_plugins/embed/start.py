"""One embed of a corpus, as an :class:`~.embedder.EmbedRequest` asks: ``-o`` checked (new, to
continue, finished, or refused with nothing changed), the corpus's files checked to be files it
can read again, the folder locked (per part with ``--shard``), then the :class:`~.embedder.Embedder`."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..data.corpora import Corpus, corpus_files
from ..data.corpus import corpus_kind
from ..errors import UserError, is_disk_full
from .embedder import Embedder, EmbedRequest
from .folder import EmbeddingsDir


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
    if finished and not (resume or joining):
        raise UserError(f"-o {out}: a finished embed is already there; nothing was changed. Index it with 'mrl-run "
                        f"index {out} -o INDEX', or pass --overwrite to embed again.")
    if not finished and not (resume or joining):
        raise UserError(f"-o {out}: an unfinished embed is there; nothing was changed. Pass --resume to continue it "
                        "(shards already done are kept), or --overwrite to start again.")
    return "finished" if finished else "continue"


def embed(request: EmbedRequest) -> int:
    """Embed the corpus into ``request.output``; a failure before any shard was embedded leaves no
    half folder behind."""
    from ..outputs.destination import check_writable
    from ..outputs.locks import FolderLock

    out, part, parts = request.output, request.part, request.parts
    check_writable(out)  # before the lock beside it is taken or the model loaded
    state = check_output(out, resume=request.resume, overwrite=request.overwrite, joining=parts > 1)
    root, files, fmt = corpus_files(request.corpus, request.format)
    for path in files:
        if str(path) == "-" or corpus_kind(path) != "file":
            raise UserError(f"{path}: embed reads regular files (it reads them again to resume or to split the work); "
                            "write a stream to a file first, or index it directly with 'mrl-run index MODEL -'.")
    corpus = Corpus(root, files, text_column=request.text_column, id_column=request.id_column,
                    encoding=request.encoding, format=fmt, unique_ids=False)
    what = f"mrl-run embed {request.corpus} -o {out}" + (f" --shard {part}/{parts}" if parts > 1 else "")
    lock = FolderLock(out if parts == 1 else out.with_name(f"{out.name}.part-{part}-of-{parts}"), what)
    lock.acquire(f"another 'mrl-run embed' is writing {out} ({{holder}}); nothing was changed. Wait for it to finish"
                 + (", or run another part." if parts > 1 else ", or choose another -o."))
    with lock:
        if state == "overwrite":
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        try:
            return Embedder(request, corpus).run()
        except UserError:
            if state in ("new", "overwrite") and not any(out.glob("shard-*.npy")):
                shutil.rmtree(out, ignore_errors=True)  # nothing embedded yet: no half folder is left behind
            raise
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            # every file is written to a temporary name and renamed once whole, and a shard counts
            # as done only once its record (written last) is there: what is in the folder is sound
            done = len(list(out.glob("shard-*.json")))
            raise UserError(f"-o {out}: the disk filled up while embedding; the {done} shard(s) finished are kept and "
                            "nothing half-written counts. Free some space and run the same command with --resume to "
                            "embed the rest.") from None
