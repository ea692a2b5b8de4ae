"""What a report section is made of: a :class:`Table` of strings and a :class:`Section` (data,
rendered by :mod:`.render` as console text or Markdown). Kept apart so the modules that word
sections (:mod:`.sections`, :mod:`.costs`) share it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Section:
    """One part of the report. ``lines`` are sentences (Markdown: bullets when ``bullets``; the
    console prints them with ``console_indent`` and without backticks); ``after`` follows the
    table as plain text. ``note`` and ``image`` appear in Markdown only."""

    key: str
    title: str
    console_title: str | None = None
    note: str | None = None
    image: tuple[str, str] | None = None
    """(alt text, file name beside report.md)."""
    table: Table | None = None
    lines: list[str] = field(default_factory=list)
    bullets: bool = True
    console_indent: str = ""
    after: list[str] = field(default_factory=list)
