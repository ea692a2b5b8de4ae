"""Data source ``manpages``: what a manual page is for → the first paragraph of its description.

Reads the pairs ``scripts/make_manpages_sample.py`` cuts from Debian's ``manpages`` and
``manpages-dev`` packages (JSON lines, plain or .xz): the query is a page's NAME description
("open and possibly create a file"), the document the first paragraph of its DESCRIPTION. A
second real, offline retrieval task beside the Debian descriptions, of another kind (system
calls, the C library, file formats), so that no method is tuned to one corpus.
"""

from __future__ import annotations

import functools
import json
import lzma
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..components import DataSource, Params, ValidationContext
from ..data.files import file_problem
from ..data.split import held_out_problems, seeded_split, split_by_query
from ..data.types import DataBundle, DataRequest, RowFormat, rows_to_dataset
from ..errors import UserError
from ..hookspecs import hookimpl


@functools.lru_cache(maxsize=2)
def read_pairs(path: str, mtime: int) -> tuple[dict[str, str], ...]:
    opener = lzma.open if path.endswith(".xz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    item = json.loads(line)
                    rows.append({"anchor": item["query"], "positive": item["document"], "family": family_of(item)})
                except (ValueError, KeyError, TypeError) as exc:
                    raise UserError(f"{path}, line {number}: not a (query, document) pair ({exc!r}).") from None
    if not rows:
        raise UserError(f"{path}: no pairs in it; make it with the script that cuts it "
                        "(scripts/make_manpages_sample.py, scripts/make_docstrings_sample.py).")
    return tuple(rows)


def family_of(item: dict[str, str]) -> str:
    """The family a pair belongs to: a docstring's module or class (``json.decoder.JSONDecoder``
    for ``json.decoder.JSONDecoder.decode``), a manual page's name before ``::`` (``App`` for
    the Perl module page ``App::Cpan(3)``, ``open`` for ``open(2)``)."""
    if item.get("where"):
        return item["where"].rsplit(".", 1)[0]
    page = str(item.get("page") or item["query"]).split("(")[0]
    return page.split("::")[0]


class ManpagesParams(Params):
    path: str = Field(description="Pairs made by scripts/make_manpages_sample.py (.jsonl or .jsonl.xz), relative to "
                                  "the recipe.")
    train_pairs: int | None = Field(None, gt=0, description="Training pairs to sample (default: all left).")
    eval_queries: int = Field(400, gt=0, description="Pages held out as evaluation queries.")
    corpus_size: int = Field(1200, gt=0, description="Evaluation corpus: held-out documents plus distractors.")
    hold_out: Literal["query", "family"] = Field(
        "query", description='"family": hold out whole families (a Python module\'s or class\'s docstrings, the pages '
        'of a Perl module family) so that no sibling of an evaluation pair is trained on; "query" (default): pair by '
        "pair, as the shipped numbers were measured.")


class ManpagesSource(DataSource[ManpagesParams]):
    """Debian manual pages: a page's NAME description → the first paragraph of its DESCRIPTION."""

    name = "manpages"
    Params = ManpagesParams
    produces = ("pairs",)

    def _rows(self, base: Path) -> tuple[dict[str, str], ...]:
        path = (base / self.params.path).resolve()
        return read_pairs(str(path), path.stat().st_mtime_ns)

    def check(self, ctx: ValidationContext) -> list[str]:
        p = self.params
        path = ctx.recipe_dir / p.path
        problem = file_problem("path", p.path, path)
        if problem:
            return [problem]
        return held_out_problems("path", lambda: len(self._rows(ctx.recipe_dir)), eval_queries=p.eval_queries,
                                 corpus_size=p.corpus_size, train_pairs=p.train_pairs)

    def load(self, request: DataRequest) -> DataBundle:
        p = self.params
        rows = list(self._rows(request.recipe_dir))
        split = split_by_query(rows, eval_queries=p.eval_queries, seed=request.seed, corpus_size=p.corpus_size,
                               groups=(lambda row: row["family"]) if p.hold_out == "family" else None)
        train, spare = seeded_split(split.train_rows, p.train_pairs, request.seed)
        summary = {"pairs": len(rows), "held_out_rows": len(rows) - len(split.train_rows), "hold_out": p.hold_out}
        groups = None
        if p.hold_out == "family":
            summary["dropped_for_family"] = split.dropped_for_family
            family = {r["anchor"]: r["family"] for r in rows}
            groups = lambda row: family.get(row["anchor"], row["anchor"])  # noqa: E731 (the validation split's too)
        return DataBundle(rows_to_dataset(train, "pairs"), split.eval, RowFormat.PAIRS, summary, spare=spare,
                          groups=groups)


@hookimpl
def register_data_sources(register):
    register(ManpagesSource)
