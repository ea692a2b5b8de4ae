"""The folder an index is built into (``mrl-run index -o``, ``mrl-run export -o``): checked before
anything is read (never a file, a run or a folder that is not an index), with room for the build,
built in a hidden temporary folder beside it, and put in place only at the end, the old index's
engine side discarded first. Kept apart from :mod:`.commands`, which parses and runs the
commands."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ..errors import UserError
from ..evidence.rundir import RunDir
from .folder import FORMAT

logger = logging.getLogger("mrl_plugins")


def check_destination(out: Path, overwrite: bool) -> None:
    """``-o`` may name a new folder, an empty one, or (with ``--overwrite``) an index; never a
    file, a finished run or any other folder: nothing the user has is replaced by an index."""
    from ..outputs.destination import check_writable

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"-o {out}: a file is there, not an index folder; nothing was changed. Name a new folder.")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries and not is_index(out):
            shown = ", ".join(entries[:6]) + (", …" if len(entries) > 6 else "")
            what = "a finished run" if RunDir(out).results_file.is_file() else "a folder that is not an index"
            raise UserError(f"-o {out}: {what} is there ({shown}); nothing was changed. --overwrite replaces only an "
                            "index built by 'mrl-run index' or an empty folder: name a new folder.")
        if entries and not overwrite:
            raise UserError(f"-o {out}: an index is already there; nothing was changed. Choose another folder or pass "
                            "--overwrite to replace it.")
    check_writable(out)


def is_index(folder: Path) -> bool:
    try:
        return json.loads((folder / "manifest.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_room(out: Path, rows: int | None, corpus_bytes: int, full: int, dim: int, store: str) -> None:
    """Refuse a build the disk cannot hold: the texts, the full vectors and the shortlist index."""
    from ..outputs.destination import existing_ancestor

    if rows is None:
        return  # a stream: its size is known only once read; a full disk is then caught as it happens
    need = corpus_bytes + rows * (full * {"float16": 2, "int8": 1}.get(store, 4) + dim * 4 + 8)
    free = shutil.disk_usage(existing_ancestor(out.parent)).free
    if free < need * 1.1:
        raise UserError(f"-o {out}: the index needs about {need / 2**20:,.0f} MiB and {existing_ancestor(out.parent)} "
                        f"has {free / 2**20:,.0f} MiB free; nothing was changed. Free some space or choose another -o.")


def discard_old(out: Path) -> None:
    """Before an index replaces ``out``: what the old one keeps outside its folder (an engine's
    table) is removed by its backend; an old index whose backend is not installed keeps it (said)."""
    if not is_index(out):
        return
    from ..plugins import load_registry
    from .folder import read_manifest

    manifest = read_manifest(out)
    name = manifest.index.name
    try:
        backend = load_registry().build("index", name, manifest.index.params)
    except Exception as exc:
        logger.warning("the index in %s was built with '%s', which cannot be loaded here (%s); anything it keeps "
                       "outside the folder is left as it is", out, name, exc)
        return
    backend.discard(out, manifest)


