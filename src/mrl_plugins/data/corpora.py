"""A corpus of several files read as one: the files a corpus argument names (a file, a folder, a
quoted glob pattern; one format), and :class:`Corpus`, which reads them one after another with
rows numbered across them. One file is :class:`~.corpus.CorpusReader`'s job; this module only
finds the files and chains the readers, so ``mrl-run index`` and ``mrl-run embed`` accept the
same corpus arguments."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .corpus import CorpusReader, Found, Record, format_of

logger = logging.getLogger("mrl_plugins")

GLOB_CHARS = set("*?[")


def corpus_files(spec: str | Path, given_format: str | None = None) -> tuple[Path, list[Path], str | None]:
    """The files a corpus argument names: one file (or ``-``, a FIFO), a folder (every file in it
    and below with a corpus suffix, in name order; hidden ones left out) or a glob pattern
    (``'docs/*.jsonl'``, quoted). Returns ``(root, files, format)``; a folder or pattern whose
    files mix formats is refused, and files with other suffixes in a folder are named."""
    text = str(spec)
    path = Path(text).expanduser()
    if text != "-" and not path.exists() and GLOB_CHARS & set(text):
        anchor = Path(*[part for part in path.parts if not GLOB_CHARS & set(part)][: _static_depth(path)])
        pattern = str(path.relative_to(anchor)) if anchor.parts else text
        files = sorted(p for p in (anchor if anchor.parts else Path(".")).glob(pattern) if p.is_file())
        if not files:
            raise UserError(f"{text}: no file matches the pattern; check the path (quote the pattern so the shell "
                            "does not expand it).")
        return anchor if anchor.parts else Path("."), files, _one_format(text, files, given_format)
    if text != "-" and path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        files = [p for p in found if format_of(p, None)]
        others = [p for p in found if not format_of(p, None)]
        if not files:
            raise UserError(f"{path}: a folder without corpus files (.jsonl, .json, .csv, .tsv, .parquet or .txt); "
                            "name a file, a folder holding such files, or a pattern.")
        if others:
            logger.warning("%s: left out %d file(s) that are not corpus files by their suffix (%s)", path, len(others),
                           ", ".join(str(p.relative_to(path)) for p in others[:5]) + (", …" if len(others) > 5 else ""))
        return path, files, _one_format(str(path), files, given_format)
    return path.parent, [path], given_format


def _static_depth(path: Path) -> int:
    """How many leading parts of a pattern hold no glob characters."""
    depth = 0
    for part in path.parts:
        if GLOB_CHARS & set(part):
            break
        depth += 1
    return depth


def _one_format(spec: str, files: list[Path], given: str | None) -> str | None:
    if given:
        return given
    formats = {format_of(p, None) for p in files}
    if len(formats) > 1:
        by: dict[str, Path] = {}
        for p in files:
            by.setdefault(str(format_of(p, None)), p)
        shown = ", ".join(f"{fmt} ({example})" for fmt, example in sorted(by.items(), key=lambda kv: str(kv[0])))
        raise UserError(f"{spec}: the files mix formats ({shown}); a corpus is one format. Put each format in its own "
                        "folder and embed them one by one, or name the files of one format with a pattern.")
    return formats.pop()


@dataclass
class Corpus:
    """Several files read as one corpus, one after another in name order: rows numbered across
    them, each place named by its file. The same interface as :class:`CorpusReader`."""

    root: Path
    files: list[Path]
    text_column: str = "text"
    id_column: str | None = None
    encoding: str = "utf-8"
    format: str | None = None
    max_chars: int | None = None
    unique_ids: bool = True
    kind: str = field(default="file", init=False)
    rows: int = field(default=0, init=False)
    empty: Found = field(default_factory=Found, init=False)
    cut: Found = field(default_factory=Found, init=False)
    starts: list[int] = field(default_factory=list, init=False)
    """The corpus row number each file starts at (filled as the files are read)."""

    def __post_init__(self) -> None:
        for path in self.files:  # every file checked (exists, not empty, format) before any is read
            self._reader(path, 0)

    @property
    def name(self) -> str:
        return str(self.root) if len(self.files) > 1 else str(self.files[0])

    @property
    def path(self) -> Path:
        return self.root if len(self.files) > 1 else self.files[0]

    def _reader(self, path: Path, first_row: int) -> CorpusReader:
        return CorpusReader(path, text_column=self.text_column, id_column=self.id_column, encoding=self.encoding,
                            format=self.format, max_chars=self.max_chars, first_row=first_row, unique_ids=False)

    def label(self, path: Path) -> str:
        """A file's name relative to the corpus root (the same wherever the corpus is mounted)."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def approximate_rows(self) -> int | None:
        counts = [self._reader(p, 0).approximate_rows() for p in self.files]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    def records(self) -> Iterator[Record]:
        seen: dict[str, str] = {}
        self.starts = []
        for path in self.files:
            self.starts.append(self.rows)
            reader = self._reader(path, self.rows)
            for record in reader.records():
                where = f"{self.label(path)}, {record.where}" if len(self.files) > 1 else record.where
                if record.text is None:
                    self.empty.add(where)
                elif record.cut:
                    self.cut.add(where)
                if record.text is not None and self.id_column and self.unique_ids:
                    if record.id in seen:
                        raise UserError(f"{self.name}: {seen[record.id]} and {where} have the same {self.id_column} "
                                        f"'{record.id}'; ids must be unique. Fix the data, or leave out --id-column to "
                                        "number the documents.")
                    seen[record.id] = where
                yield Record(record.row, where, record.id, record.text, record.cut)
            self.rows += reader.rows

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for record in self.records():
            if record.text is not None:
                yield record.id, record.text

    def report(self) -> None:
        CorpusReader.report(self)  # type: ignore[arg-type]  # the same counts, the same words


def open_corpus(spec: str | Path, *, text_column: str = "text", id_column: str | None = None,
                encoding: str = "utf-8", format: str | None = None) -> CorpusReader | Corpus:
    """A corpus argument read as one: a file (or ``-``, a FIFO) by :class:`CorpusReader`, a
    folder or a pattern of files by :class:`Corpus`."""
    root, files, fmt = corpus_files(spec, format)
    if len(files) == 1 and files[0] == Path(str(spec)).expanduser():
        return CorpusReader(files[0], text_column=text_column, id_column=id_column, encoding=encoding, format=format)
    return Corpus(root, files, text_column=text_column, id_column=id_column, encoding=encoding, format=fmt)
