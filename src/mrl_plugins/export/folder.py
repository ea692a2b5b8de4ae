"""The export folder: ``-o`` names a new or empty folder or an earlier export, and every format is
written under a lock into a temporary folder that replaces it only when the export succeeded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError

MARKER = "mrl_export.json"


@contextlib.contextmanager
def exporting(model_dir: Path, out: Path, overwrite: bool) -> Iterator[Path]:
    """The ``-o`` transaction every format shares: under a lock on ``out``, a new temporary folder
    beside it to write into, which replaces ``out`` when the block succeeds; on any failure it is
    removed and ``out`` (an earlier export, or nothing) is left as it was. A killed export's
    temporary folder (no exit handler ran) is removed by the next export into the same ``-o``."""
    from ..outputs.destination import replace_folder
    from ..outputs.locks import FolderLock

    tmp = out.with_name(f".{out.name}.exporting-{os.getpid()}")
    lock = FolderLock(out, f"mrl-run export {model_dir} -o {out}")
    lock.acquire(f"another export is writing {out} ({{holder}}); nothing was changed.")
    try:
        check_destination(out, overwrite)  # again, under the lock
        for left in out.parent.glob(f".{out.name}.exporting-*"):  # a killed export's (we hold the lock on out)
            shutil.rmtree(left, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        lock.release()


def check_destination(out: Path, overwrite: bool) -> None:
    """``-o`` names a new or empty folder, or (with ``--overwrite``) an earlier export, in a place
    that can be written; nothing else."""
    from ..outputs.destination import check_writable

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"-o {out}: a file is there, not an export folder; nothing was changed. Name a new folder.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            entries = sorted(p.name for p in out.iterdir())
            raise UserError(f"-o {out}: a folder that is not an export is there ({', '.join(entries[:6])}"
                            f"{', …' if len(entries) > 6 else ''}); nothing was changed. --overwrite replaces only an "
                            "earlier export: name a new folder.")
        if not overwrite:
            raise UserError(f"-o {out}: an export is already there; nothing was changed. Choose another folder or "
                            "pass --overwrite to replace it.")
    check_writable(out)
