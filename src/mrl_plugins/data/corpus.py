"""Reading a corpus to index: streamed, checked, every mistake named by its line.

``mrl-run index`` reads its corpus once, front to back, and never holds it in memory: JSON lines,
CSV/TSV, Parquet (in record batches) or plain text with one document per line, from a regular
file, a FIFO or process substitution (``<(zcat docs.jsonl.gz)``), or standard input (``-``).
Where the name gives no format (``-``, ``/dev/fd/63``), the first line decides: a JSON object
means JSON lines, anything else plain text; ``--format`` says it outright.

What a user can get wrong is one :class:`~mrl_plugins.errors.UserError` naming the file and the
line: text not in the declared encoding, a JSON line that is not an object, a missing column, two
rows with the same id, a line longer than :data:`LINE_LIMIT` (``/dev/zero``, a binary file named
as text: it would be read into memory whole). Documents far longer than the model can read are cut before tokenising
(a 100 MB line would otherwise stall the tokenizer for minutes) and counted.

Several files read as one corpus (a folder, a pattern) are :mod:`.corpora`' job, built on this
reader. This reader does the same checks as :mod:`.files` does for training data, but
streams: training data is read several times (split, counted, sampled), a corpus exactly once.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from ..errors import UserError
from .files import json_objects

logger = logging.getLogger("mrl_plugins")

Format = Literal["jsonl", "json", "csv", "tsv", "parquet", "text"]
FORMATS: tuple[str, ...] = ("jsonl", "json", "csv", "tsv", "parquet", "text")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
            ".parquet": "parquet", ".txt": "text", ".text": "text"}
CHARS_PER_TOKEN = 32
"""Documents are cut at ``max_seq_length × CHARS_PER_TOKEN`` characters before tokenising. A
word-piece token covers far fewer characters than this, so nothing the model would read is cut."""
EXAMPLES = 5
LINE_LIMIT = 256 << 20
"""The longest line a corpus may hold (bytes; a ``.json`` document aside, which is one value over
any number of lines): a thousand times what any model reads of a document, and small enough that
reading it does not take the machine's memory."""


@dataclass
class Found:
    """How many rows a check found, and the first few of them: bounded memory however many rows
    a corpus of any size has (a list of every empty row's place would grow with the corpus)."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, where: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(where)

    def __bool__(self) -> bool:
        return self.count > 0

    def shown(self) -> str:
        return ", ".join(self.examples) + (", …" if self.count > len(self.examples) else "")

    def as_dict(self) -> dict[str, object]:
        return {"count": self.count, "examples": list(self.examples)}


def corpus_kind(path: Path) -> str:
    """``"stdin"``, ``"file"`` or ``"stream"`` (a FIFO or character device); anything else is refused."""
    if str(path) == "-":
        return "stdin"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: corpus file not found.") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: a folder, not a corpus file; name one file (.jsonl, .csv, .tsv, .parquet or .txt).")
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return "stream"
    raise UserError(f"{path}: not a regular file, a FIFO or '-' (standard input); give the corpus as one of those.")


def format_of(path: Path, given: str | None) -> str | None:
    """The format a corpus is read as: ``given``, else its suffix (``None``: decide by content)."""
    if given:
        return given
    suffixes = [s for s in path.suffixes if s.lower() in SUFFIXES]
    return SUFFIXES[suffixes[-1].lower()] if suffixes else None


@dataclass(frozen=True)
class Record:
    """One row of a corpus: its number in the whole corpus, where it is ("line 3"), its id, its
    text (``None``: empty, skipped) and whether the text was cut."""

    row: int
    where: str
    id: str
    text: str | None
    cut: bool


@dataclass
class CorpusReader:
    """One pass over a corpus: ``(id, text)`` per document, with the counts of what was left out."""

    path: Path
    text_column: str = "text"
    id_column: str | None = None
    encoding: str = "utf-8"
    format: str | None = None
    max_chars: int | None = None
    """Cut documents to this many characters (``None``: never)."""
    kind: str = field(init=False)
    rows: int = field(default=0, init=False)
    empty: Found = field(default_factory=Found, init=False)
    cut: Found = field(default_factory=Found, init=False)

    def __post_init__(self) -> None:
        self.kind = corpus_kind(self.path)
        if self.format is not None and self.format not in FORMATS:
            raise UserError(f"--format {self.format}: one of {', '.join(FORMATS)}.")
        if self.kind == "file" and self.path.stat().st_size == 0:
            raise UserError(f"{self.path}: the corpus is empty; give a file with at least one document.")
        if self.format is None:
            self.format = format_of(self.path, None) if self.kind == "file" or self.path.suffix else None
        if self.format == "parquet" and self.kind != "file":
            raise UserError(f"{self.path}: Parquet is read from a regular file only (it is not a stream format); "
                            "write it to a file first, or stream JSON lines or CSV instead.")
        if self.format in ("csv", "tsv", "text", "jsonl", "json", None):
            try:
                "".encode(self.encoding)
            except LookupError:
                raise UserError(f"--encoding {self.encoding}: not an encoding Python knows (e.g. utf-8, "
                                "latin-1).") from None
        if self.format == "text" and self.id_column:
            raise UserError(f"{self.path}: plain text has no columns; --id-column needs JSON lines, CSV/TSV or "
                            "Parquet.")

    @property
    def name(self) -> str:
        return "standard input" if self.kind == "stdin" else str(self.path)

    def approximate_rows(self) -> int | None:
        """A cheap upper bound on the rows of a regular file (for the progress bar and the disk
        check): its number of lines, or Parquet's row count; ``None`` for a stream."""
        if self.kind != "file":
            return None
        if self.format == "parquet":
            import pyarrow.parquet as pq

            try:
                return int(pq.read_metadata(self.path).num_rows)
            except Exception as exc:
                raise UserError(f"{self.path}: cannot be read as Parquet ({type(exc).__name__}: {exc}).") from None
        with open(self.path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) + 1

    # -- reading ------------------------------------------------------------------------------------
    first_row: int = 0
    """The corpus row number of this file's first row (a file of a larger corpus): default ids and
    :attr:`Record.row` count from it."""
    unique_ids: bool = True
    """Refuse a repeated ``id_column`` value as it is read (keeps every id in memory; ``mrl-run
    embed`` checks ids by digest instead)."""

    def records(self) -> Iterator[Record]:
        """Every row, with what became of it: kept, cut, or skipped as empty."""
        seen: dict[str, str] = {}
        for where, doc_id, text in self._rows():
            row = self.first_row + self.rows
            self.rows += 1
            if text is None or not str(text).strip():
                self.empty.add(where)
                yield Record(row, where, "", None, False)
                continue
            text = str(text)
            cut = self.max_chars is not None and len(text) > self.max_chars
            if cut:
                self.cut.add(where)
                text = text[: self.max_chars]
            doc_id = str(doc_id) if self.id_column else str(row)
            if self.id_column and self.unique_ids:
                if doc_id in seen:
                    raise UserError(f"{self.name}: {seen[doc_id]} and {where} have the same {self.id_column} "
                                    f"'{doc_id}'; ids must be unique. Fix the data, or leave out --id-column to number "
                                    "the documents.")
                seen[doc_id] = where
            yield Record(row, where, doc_id, text, cut)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for record in self.records():
            if record.text is not None:
                yield record.id, record.text

    def report(self) -> None:
        """Say on the console what was skipped or cut, with the first lines."""
        if self.empty:
            logger.warning("%s: skipped %d of %d documents with an empty '%s' (%s)", self.name, self.empty.count,
                           self.rows, self.text_column, self.empty.shown())
        if self.cut:
            logger.warning("%s: cut %d documents longer than %d characters before tokenising (the model reads far "
                           "less of each; %s)", self.name, self.cut.count, self.max_chars, self.cut.shown())

    def _binary(self) -> IO[bytes]:
        if self.kind == "stdin":
            return sys.stdin.buffer
        return open(self.path, "rb")

    def _rows(self) -> Iterator[tuple[str, object, object]]:
        if self.format == "parquet":
            yield from self._parquet()
            return
        stream = self._binary()
        try:
            lines = self._decoded(stream)
            fmt = self.format
            if fmt is None:  # no name to go by: the first non-blank line decides
                head: list[tuple[int, str]] = []
                for number, line in lines:
                    head.append((number, line))
                    if line.strip():
                        break
                first = head[-1][1].lstrip() if head else ""
                fmt = "jsonl" if first.startswith("{") else "text"
                lines = _chain(head, lines)
            if fmt == "json":
                yield from self._json_document(lines)
            elif fmt == "jsonl":
                yield from self._jsonl(lines)
            elif fmt in ("csv", "tsv"):
                yield from self._csv(lines, "\t" if fmt == "tsv" else ",")
            else:
                for number, line in lines:
                    yield f"line {number}", None, line.rstrip("\r\n")
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()

    def _decoded(self, stream: IO[bytes]) -> Iterator[tuple[int, str]]:
        is_json = self.format in ("jsonl", "json")
        fix = ("JSON must be UTF-8: convert the file (iconv -f latin1 -t utf-8)" if is_json
               else "pass --encoding with the file's encoding (e.g. --encoding latin-1)")
        encoding = "utf-8" if is_json else self.encoding
        limit = None if self.format == "json" else LINE_LIMIT
        for number, raw in enumerate(_lines(stream, limit), 1):
            if limit is not None and len(raw) > limit:
                sample = raw[:16]
                looks = " (all zero bytes: is it /dev/zero?)" if not sample.strip(b"\0") else ""
                raise UserError(f"{self.name}, line {number}: over {limit >> 20} MiB without a line break{looks}; a "
                                "corpus holds one document per line (or row). Give a text, JSON lines, CSV/TSV or "
                                "Parquet file; a real document this long is to be split before indexing.")
            try:
                yield number, raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise UserError(f"{self.name}, line {number}: not valid {encoding} text ({exc.reason} at byte "
                                f"{exc.start}); {fix}.") from None

    def _columns_problem(self, where: str, columns: Iterable[str]) -> UserError | None:
        columns = list(columns)
        for flag, column in (("--text-column", self.text_column), ("--id-column", self.id_column)):
            if column is not None and column not in columns:
                return UserError(f"{self.name}, {where}: no column '{column}' (it has "
                                 f"{', '.join(repr(c) for c in columns) or 'none'}); pass {flag} with one of them.")
        return None

    def _record(self, where: str, value: object) -> tuple[str, object, object]:
        if not isinstance(value, dict):
            raise UserError(f"{self.name}, {where}: a JSON {type(value).__name__}, not an object with named columns.")
        problem = self._columns_problem(where, value)
        if problem:
            raise problem
        return where, value.get(self.id_column) if self.id_column else None, value.get(self.text_column)

    def _jsonl(self, lines: Iterable[tuple[int, str]]) -> Iterator[tuple[str, object, object]]:
        for number, value in json_objects(lines, self.name):
            yield self._record(f"line {number}", value)

    def _json_document(self, lines: Iterable[tuple[int, str]]) -> Iterator[tuple[str, object, object]]:
        text = "".join(line for _, line in lines)
        if not text.lstrip().startswith("["):
            yield from self._jsonl(enumerate(io.StringIO(text), 1))
            return
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{self.name}: not valid JSON ({exc}); fix the file, or write one object per line (.jsonl)."
                            ) from None
        for i, value in enumerate(values):
            yield self._record(f"item {i + 1}", value)

    def _csv(self, lines: Iterable[tuple[int, str]], sep: str) -> Iterator[tuple[str, object, object]]:
        reader = csv.reader((line for _, line in lines), delimiter=sep)
        try:
            header = next(reader, None)
            if header is None:
                raise UserError(f"{self.name}: the corpus is empty; give a file with a header and at least one "
                                "document.")
            problem = self._columns_problem("line 1 (the header)", header)
            if problem:
                raise problem
            text_at = header.index(self.text_column)
            id_at = header.index(self.id_column) if self.id_column else None
            for row in reader:
                if not row:
                    continue
                where = f"line {reader.line_num}"
                if len(row) != len(header):
                    raise UserError(f"{self.name}, {where}: {len(row)} fields where the header has {len(header)}; fix "
                                    f"that row (quote fields that hold the separator {sep!r}).")
                yield where, row[id_at] if id_at is not None else None, row[text_at]
        except csv.Error as exc:
            raise UserError(f"{self.name}, line {reader.line_num}: not valid CSV ({exc}).") from None

    def _parquet(self) -> Iterator[tuple[str, object, object]]:
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(self.path)
        except Exception as exc:
            raise UserError(f"{self.path}: cannot be read as Parquet ({type(exc).__name__}: {exc}).") from None
        problem = self._columns_problem("schema", file.schema_arrow.names)
        if problem:
            raise problem
        columns = [self.text_column, *([self.id_column] if self.id_column else [])]
        row = 0
        for batch in file.iter_batches(batch_size=4096, columns=columns):
            texts = batch.column(self.text_column).to_pylist()
            ids = batch.column(self.id_column).to_pylist() if self.id_column else [None] * len(texts)
            for doc_id, text in zip(ids, texts):
                row += 1
                yield f"row {row}", doc_id, text


def _lines(stream: IO[bytes], limit: int | None) -> Iterator[bytes]:
    """The stream's lines, none read past ``limit + 1`` bytes (the caller refuses a longer one)."""
    if limit is None:
        yield from stream
        return
    while line := stream.readline(limit + 1):
        yield line


def _chain(head: list[tuple[int, str]], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield from head
    yield from rest
