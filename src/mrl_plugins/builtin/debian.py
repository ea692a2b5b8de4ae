"""Data source ``debian``: Debian's package-description catalogue as a retrieval task.

Reads the ``Translation-en`` format that apt downloads (plain, .xz, .gz or .bz2): stanzas of
``Package:``, ``Description-md5:``, ``Description-en: <synopsis>`` and the long description as
continuation lines (`` .`` separates paragraphs). Query = the one-line synopsis; document = the
first paragraph of the long description. Descriptions shared by several packages (``-dev``,
``-doc``, ``-data`` siblings) and near-empty ones are dropped, so each document has one owner.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import Field

from ..components import DataSource, Params, ValidationContext
from ..data.files import file_problem
from ..data.split import held_out_problems, seeded_split, split_by_query
from ..data.types import DataBundle, DataRequest, RowFormat, rows_to_dataset
from ..errors import UserError
from ..hookspecs import hookimpl

_MAGIC: dict[bytes, Callable[..., IO[str]]] = {b"\xfd7zXZ\x00": lzma.open, b"\x1f\x8b": gzip.open, b"BZh": bz2.open}


@dataclass
class Package:
    name: str
    synopsis: str
    paragraphs: list[str]

    @property
    def document(self) -> str:
        return self.paragraphs[0] if self.paragraphs else ""


def open_text(path: Path) -> IO[str]:
    """Open a plain or compressed text file, recognising the compression by its magic bytes."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith(b"\x04\x22\x4d\x18"):
        raise UserError(f"{path}: lz4-compressed; decompress it first ('lz4 -d {path}') or recompress with xz.")
    for magic, opener in _MAGIC.items():
        if head.startswith(magic):
            return opener(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def parse_translation(lines: Iterator[str]) -> Iterator[Package]:
    """Yield one Package per stanza; paragraphs are whitespace-collapsed single lines."""
    name = synopsis = None
    paragraphs: list[str] = []
    current: list[str] = []

    def finish() -> Package | None:
        if current:
            paragraphs.append(" ".join(current))
        if name is None or synopsis is None:
            return None
        return Package(name, synopsis, list(paragraphs))

    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            pkg = finish()
            if pkg:
                yield pkg
            name = synopsis = None
            paragraphs, current = [], []
        elif line.startswith(" "):
            if synopsis is None:
                continue
            if line.strip() == ".":
                if current:
                    paragraphs.append(" ".join(current))
                current = []
            else:
                current.append(re.sub(r"\s+", " ", line.strip()))
        elif line.startswith("Package:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("Description-en:"):
            synopsis = line.partition(":")[2].strip()
    pkg = finish()
    if pkg:
        yield pkg


def read_catalogue(path: Path) -> list[Package]:
    stat = path.stat()
    return list(_read_catalogue(str(path.resolve()), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _read_catalogue(path: str, size: int, mtime: int) -> tuple[Package, ...]:
    """Parsed once per file version: validate and the run then read it once."""
    with open_text(Path(path)) as fh:
        packages = tuple(parse_translation(fh))
    if not packages:
        raise UserError(f"{path}: no package descriptions in it; [data] path must name a Translation-en file.")
    return packages


def usable_packages(packages: list[Package], min_chars: int) -> list[Package]:
    """Packages whose first paragraph is long enough and belongs to no other package."""
    counts = Counter(p.document for p in packages)
    return [
        p for p in packages if len(p.document) >= min_chars and counts[p.document] == 1 and p.synopsis
    ]


class DebianParams(Params):
    path: str = Field(description="A Translation-en file (plain, .xz, .gz or .bz2), relative to the recipe.")
    train_pairs: int | None = Field(None, gt=0, description="Training pairs to sample (default: all left).")
    eval_queries: int = Field(500, gt=0, description="Synopses held out as evaluation queries.")
    corpus_size: int = Field(3000, gt=0, description="Evaluation corpus: held-out documents plus distractors.")
    min_chars: int = Field(40, ge=1, description="Drop documents shorter than this (near-empty).")


class DebianSource(DataSource[DebianParams]):
    """Debian package descriptions: synopsis → first paragraph of the long description."""

    name = "debian"
    Params = DebianParams
    produces = ("pairs",)

    def check(self, ctx: ValidationContext) -> list[str]:
        p = self.params
        path = ctx.recipe_dir / p.path
        problem = file_problem("path", p.path, path)
        if problem:
            return [problem]
        return held_out_problems("path", lambda: len(usable_packages(read_catalogue(path), p.min_chars)),
                                 eval_queries=p.eval_queries, corpus_size=p.corpus_size, train_pairs=p.train_pairs,
                                 unit="usable packages")

    def load(self, request: DataRequest) -> DataBundle:
        p = self.params
        path = request.recipe_dir / p.path
        packages = read_catalogue(path)
        usable = usable_packages(packages, p.min_chars)
        rows = [{"anchor": pkg.synopsis, "positive": pkg.document} for pkg in usable]
        split = split_by_query(
            rows, eval_queries=p.eval_queries, seed=request.seed, corpus_size=p.corpus_size
        )
        train, spare = seeded_split(split.train_rows, p.train_pairs, request.seed)
        if p.train_pairs and len(train) < p.train_pairs:
            raise UserError(
                f"{path}: only {len(train)} training pairs are left after holding out the evaluation set, "
                f"but [data] train_pairs = {p.train_pairs}. Lower train_pairs, eval_queries or corpus_size."
            )
        summary = {
            "packages": len(packages),
            "usable_packages": len(usable),
            "dropped_shared_or_short": len(packages) - len(usable),
            "held_out_rows": len(rows) - len(split.train_rows),
        }
        # later paragraphs of every description: text nothing trains or is scored on, for the
        # funnel's growth measurement (how recall against exact search falls as the corpus grows)
        later = [t for pkg in packages for t in pkg.paragraphs[1:] if len(t) >= p.min_chars]
        return DataBundle(rows_to_dataset(train, "pairs"), split.eval, RowFormat.PAIRS, summary, spare=spare,
                          unlabelled=later)


@hookimpl
def register_data_sources(register):
    register(DebianSource)
