"""One writer per output folder: an exclusive ``flock`` on a hidden file beside it.

Runs (``mrl-run RECIPE``) and index builds (``mrl-run index``) take the same lock, so a second
writer into a folder being written is refused with the name of the process that holds it. The
kernel drops a ``flock`` when its process dies, however it dies (a kill, the out-of-memory
killer), so a lock is never stale: a leftover lock file with no holder is simply taken.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..errors import UserError


def lock_path(out: Path) -> Path:
    """The lock file of an output folder: hidden, beside it (``.NAME.lock``)."""
    return out.with_name(f".{out.name}.lock")


@dataclass
class FolderLock:
    """An exclusive lock on ``out`` for as long as it is held; ``what`` says who holds it."""

    out: Path
    what: str
    _handle: IO[str] | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return lock_path(self.out)

    def acquire(self, refused: str) -> None:
        """Take the lock, or raise a :class:`UserError` of ``refused`` followed by who holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held open while the lock is: closing it releases)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                handle.close()
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(refused.format(holder=holder)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, {self.what}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Drop the lock. Removing the file is a courtesy: where the folder is read-only by now it
        stays (it holds no lock once closed), and the real outcome of the run is not buried."""
        if self._handle is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # unlink while still holding it: no one can take a stale file
        except OSError:
            pass
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
