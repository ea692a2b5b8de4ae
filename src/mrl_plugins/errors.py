"""One exception type for mistakes a user can fix; the CLI renders it without a traceback."""

from __future__ import annotations

import errno


class UserError(Exception):
    """A mistake in a recipe, a data file or the command line; the message says what to change."""

    exit_code = 2


class RecipeError(UserError):
    """A recipe failed validation; ``problems`` holds every message, each with its key path."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {count}:\n{lines}")


class PluginError(UserError):
    """A plugin is broken, or two plugins claim the same component name."""


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC however it arrives: an ``OSError``, or a library's plain exception that only says so
    in its text (safetensors raises ``Exception`` for a full disk)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


class RunAbandoned(Exception):
    """A run stopped on purpose, with nothing of it worth keeping (a sweep's trial pruned on its
    validation curve): the run folder's staging is removed and nothing is reported as a failure."""
