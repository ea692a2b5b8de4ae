"""Where a command writes: a folder that can be created, a build in a hidden temporary folder that
replaces it only when finished, and a copy of a model folder to edit without touching the
original. ``mrl-run index``, ``export``, ``publish`` and the run's own staging share these.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError, is_disk_full


def existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def output_problems(output_dir: Path) -> list[str]:
    """The output folder must be creatable: no file in the way, and a writable parent."""
    ancestor = existing_ancestor(output_dir)
    if not ancestor.is_dir():
        return [f"output_dir: '{output_dir}' cannot be created: {ancestor} is a file. Choose another output_dir."]
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return [f"output_dir: '{output_dir}' cannot be created: {ancestor} is not writable. Choose another output_dir."]
    return []


@contextlib.contextmanager
def building(tmp: Path, out: Path) -> Iterator[None]:
    """A build into ``tmp`` that replaces ``out`` at the end; on failure nothing of it is left,
    and a full disk or a folder that cannot be written is one message."""
    try:
        yield
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(exc):
            kept = f" and the index already in {out} is untouched" if out.exists() else ""
            raise UserError(f"the disk filled up while building the index in {tmp.parent}; the partial build was "
                            f"removed{kept}. "
                            "Free some space (or choose another -o) and run the command again.") from None
        if isinstance(exc, PermissionError):
            raise UserError(f"-o {out}: cannot write there ({exc.strerror}: {exc.filename}); nothing was changed. "
                            "Choose a folder you can write.") from None
        raise


def replace_folder(new: Path, out: Path) -> None:
    """Put a finished build in place of ``out``; an old index is removed only once the new one is in place."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        out.rename(old)
    try:
        new.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def copy_to_edit(src: Path, dst: Path) -> None:
    """A copy of a model folder to edit (``mrl-run publish``'s staging, ``export --format
    sentence-transformers-3``): files over 1 MiB (weights) hard-linked, never written to; smaller
    ones (configs, cards) copied, so rewriting them never reaches the original. ``dst`` may exist."""

    def copy(a: str, b: str) -> None:
        if os.path.getsize(a) > 1 << 20:
            try:
                os.link(a, b)
                return
            except OSError:
                pass
        shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=copy, dirs_exist_ok=True)
