"""One exception type for mistakes a user can fix; the CLI renders it without a traceback."""

from __future__ import annotations


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
