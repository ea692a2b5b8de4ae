"""Reading a user's data file so that nothing is dropped silently and every mistake names its line.

``peek`` reads a file's columns and row count cheaply (for ``mrl-run validate``); ``prescan``
finds what ``datasets`` would report without a line number (a broken JSONL line, text that is not
in the declared encoding, an empty file); :class:`RowCheck` turns raw rows into clean ones and
counts, per reason, every row it skips, with the first line numbers, for one console summary.
Nothing here imports ``datasets`` or torch.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import UserError
from .tables import builder_for

logger = logging.getLogger("mrl_plugins")

ScorePolicy = Literal["error", "clip", "skip"]


@dataclass(frozen=True)
class Peek:
    columns: list[str] | None
    rows: int | None


def file_problem(key: str, value: str, path: Path) -> str | None:
    """Why ``path`` cannot be read as a data file, or ``None``: missing, a folder, or not a regular
    file (a FIFO, process substitution or device: training data is read more than once)."""
    if path.is_file():
        return None
    if not path.exists():
        return f"{key}: file '{value}' not found (looked for {path})."
    if path.is_dir():
        return f"{key}: '{value}' is a folder, not a data file ({path})."
    return (f"{key}: '{value}' is not a regular file (a FIFO, process substitution or device); training data is read "
            f"more than once, so write it to a file first (e.g. zcat data.jsonl.gz > data.jsonl).")


def prescan(path: Path, *, encoding: str = "utf-8", key: str = "[data] path") -> list[int] | None:
    """Refuse an empty file, a JSONL line that is not JSON, or text not in ``encoding``, naming
    the line; for JSONL, return the line number of each row (blank lines are not rows)."""
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty; {key} must name a file with rows.")
    builder = builder_for(path)
    if builder not in ("json", "csv"):
        return None
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding if builder == "csv" else "utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        fix = ("set [data] encoding to the file's encoding (e.g. encoding = \"latin-1\")" if builder == "csv"
               else "JSON must be UTF-8: convert the file")
        raise UserError(f"{path}, line {line}: not valid {encoding if builder == 'csv' else 'UTF-8'} text "
                        f"({exc.reason}); {fix}.") from None
    if not text.strip():
        raise UserError(f"{path}: the file is empty (only blank lines); {key} must name a file with rows.")
    if builder != "json" or (path.suffix == ".json" and text.lstrip().startswith("[")):
        return None
    return [number for number, _ in json_objects(enumerate(text.splitlines(), 1), path)]


def json_objects(lines: Iterable[tuple[int, str]], name: object) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank JSON line; a line that is not a JSON object is
    one message naming ``name`` and the line. Training data and corpora are read through it."""
    for number, line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{name}, line {number}: not a JSON object ({exc.msg}); fix or remove that line.") from None
        if not isinstance(value, dict):
            raise UserError(f"{name}, line {number}: a JSON {type(value).__name__}, not an object with named columns.")
        yield number, value


def peek(path: Path, encoding: str = "utf-8") -> Peek:
    """The columns and number of rows, without reading the whole file into ``datasets``."""
    builder = builder_for(path)
    if builder == "parquet":
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        return Peek(list(meta.schema.names), meta.num_rows)
    lines = prescan(path, encoding=encoding)
    if builder == "json" and lines is not None:
        with open(path, encoding="utf-8") as fh:
            first = next(line for line in fh if line.strip())
        return Peek(list(json.loads(first)), len(lines))
    if builder == "csv":
        import csv

        sep = "\t" if ".tsv" in path.suffixes else ","
        with open(path, encoding=encoding, newline="") as fh:
            reader = csv.reader(fh, delimiter=sep)
            header = next(reader, [])
            return Peek(header, sum(1 for _ in reader))
    return Peek(None, None)


@dataclass
class RowCheck:
    """Clean rows of one file: texts present, scores numbers in [0, 1] (or clipped, or skipped)."""

    path: Path
    wanted: tuple[str, ...]
    scores: ScorePolicy = "error"
    line_of: Sequence[int] | None = None
    """File line of each row (JSONL); else rows are numbered as in a CSV with a header."""
    skipped: dict[str, list[int]] = field(default_factory=dict)
    clipped: int = 0

    def where(self, i: int) -> str:
        if self.line_of is not None:
            return f"line {self.line_of[i]}"
        return f"line {i + 2}" if builder_for(self.path) == "csv" else f"row {i + 1}"

    def _skip(self, reason: str, i: int) -> None:
        self.skipped.setdefault(reason, []).append(i)

    def rows(self, source: dict[str, list[Any]], n: int) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            row = {c: source[c][i] for c in self.wanted}
            if any(v is None or (isinstance(v, str) and not v.strip()) for c, v in row.items() if c != "score"):
                self._skip("an empty text", i)
                continue
            if "score" in row:
                score = self.score(row["score"], i)
                if score is None:
                    continue
                row["score"] = score
            out.append(row)
        return out

    def score(self, value: Any, i: int) -> float | None:
        key = "[data] invalid_scores"
        try:
            score = float(value)
        except (TypeError, ValueError):
            if self.scores == "error":
                raise UserError(f"{self.path}, {self.where(i)}: score {value!r} is not a number; fix that row, or set "
                                f"{key} = \"skip\" to leave such rows out.") from None
            self._skip("a score that is not a number", i)
            return None
        if math.isnan(score):
            if self.scores == "error":
                raise UserError(f"{self.path}, {self.where(i)}: score is NaN; fix that row, or set {key} = \"skip\".")
            self._skip("a NaN score", i)
            return None
        if not 0.0 <= score <= 1.0:
            if self.scores == "clip":
                self.clipped += 1
                return min(max(score, 0.0), 1.0)
            if self.scores == "error":
                raise UserError(f"{self.path}, {self.where(i)}: score {score} is outside [0, 1]; rescale the scores, "
                                f"or set {key} = \"clip\" (clip into [0, 1]) or \"skip\" (leave such rows out).")
            self._skip("a score outside [0, 1]", i)
            return None
        return score

    @property
    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def report(self, total: int) -> dict[str, Any]:
        """Say on the console what was left out, and return the counts for results.json."""
        for reason, rows in self.skipped.items():
            first = ", ".join(self.where(i) for i in rows[:5]) + (", …" if len(rows) > 5 else "")
            logger.warning("%s: skipped %d of %d rows with %s (%s)", self.path.name, len(rows), total, reason, first)
        if self.clipped:
            logger.warning("%s: clipped %d scores into [0, 1] ([data] invalid_scores = \"clip\")", self.path.name,
                           self.clipped)
        return {"skipped": {reason: len(rows) for reason, rows in self.skipped.items()}, "clipped_scores": self.clipped}
