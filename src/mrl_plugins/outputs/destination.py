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


def cannot_write(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (or, when it does not exist yet, in the nearest
    folder above it that does), or ``None``. A real probe (a hidden file created and removed), not
    ``os.access``: a read-only file system, an immutable folder (``chattr +i``, which root cannot
    write either) and a full disk all answer ``os.access`` with yes."""
    import tempfile

    where = existing_ancestor(folder)
    if not where.is_dir():
        return f"{where} is a file"
    try:
        handle, name = tempfile.mkstemp(prefix=".mrl-write-probe-", dir=where)
    except OSError as exc:
        return f"{where} is not writable ({exc.strerror or exc})"
    os.close(handle)
    os.unlink(name)
    return None


def output_problems(output_dir: Path, flag: str = "output_dir") -> list[str]:
    """The output folder must be creatable and writable, and so must the folder beside it where
    its lock and temporary build go: no file in the way, and a probe file can be written in both.
    The one writability check of every ``-o`` (``embed``, ``export``, ``index``) and of a recipe's
    ``output_dir``, run before any lock is taken or model loaded."""
    places = [output_dir.absolute().parent] + ([output_dir] if output_dir.is_dir() else [])
    for place in places:
        why = cannot_write(place)
        if why:
            return [f"{flag}: '{output_dir}' cannot be written: {why}; nothing was changed. Choose another {flag}."]
    return []


def check_writable(out: Path, flag: str = "-o") -> None:
    """:func:`output_problems` as a :class:`UserError` (the first problem)."""
    problems = output_problems(out, flag)
    if problems:
        raise UserError(problems[0])


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
