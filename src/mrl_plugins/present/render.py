"""Sections rendered as console text or Markdown: one renderer each, for every section."""

from __future__ import annotations

from collections.abc import Sequence

from .blocks import Section, Table


def plain_table(table: Table) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(table.header, *table.rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    return [line(table.header), *(line(r) for r in table.rows)]


def markdown_table(table: Table) -> list[str]:
    return ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header),
            *("| " + " | ".join(r) + " |" for r in table.rows)]


def console_lines(section: Section) -> list[str]:
    """A section as the console shows it: its line of title, its table, its sentences."""
    out = [section.console_title or section.title] if (section.table or section.console_title) else []
    if section.table:
        out += plain_table(section.table)
    if section.lines:
        out += [""] if section.table else []
        out += [section.console_indent + line.replace("`", "").replace("**", "") for line in section.lines]
    return out + section.after


def console(sections: Sequence[Section]) -> str:
    """Sections one after the other, a blank line between them."""
    lines: list[str] = []
    for section in sections:
        lines += ([""] if lines else []) + console_lines(section)
    return "\n".join(lines) + "\n"


def markdown_lines(section: Section, level: int = 2) -> list[str]:
    """A section in Markdown: a heading, its explanation, its plot, its table, its sentences."""
    out = [f"{'#' * level} {section.title}", ""]
    if section.note:
        out += [section.note, ""]
    if section.image:
        out += [f"![{section.image[0]}]({section.image[1]})", ""]
    if section.table:
        out += [*markdown_table(section.table), ""]
    if section.lines:
        out += [*(f"- {line}" if section.bullets else line for line in section.lines), ""]
    if section.after:
        out += [*section.after, ""]
    return out


def markdown(sections: Sequence[Section], level: int = 2) -> list[str]:
    return [line for section in sections for line in markdown_lines(section, level)]
