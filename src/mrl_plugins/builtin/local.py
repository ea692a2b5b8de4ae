"""Data source ``local``: pairs, triplets or scored pairs from JSONL, JSON, CSV or Parquet files.

Files are read through ``datasets`` (the same code path as Hub data), columns are mapped to the
trainer's names, and evaluation queries are held out by query with no leakage into training,
unless ``eval_path`` names a separate evaluation file (training rows touching it are dropped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..components import DataSource, Params, ValidationContext
from ..data.files import RowCheck, ScorePolicy, file_problem, peek, prescan
from ..data.split import seeded_split, split_by_query
from ..data.tables import builder_for, read_table, require_columns
from ..data.types import ROW_COLUMNS, DataBundle, DataRequest, RowFormat, normalise_text, rows_to_dataset
from ..errors import UserError
from ..hookspecs import hookimpl


class LocalParams(Params):
    path: str = Field(description="Training file (.jsonl, .json, .csv, .tsv, .parquet), relative to the recipe.")
    format: Literal["pairs", "triplets", "scored-pairs"] = Field("pairs", description="What each row holds.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description='Map trainer columns to file columns, e.g. { anchor = "question", positive = "answer" }.',
    )
    eval_path: str | None = Field(None, description="Separate evaluation file in the same format (optional).")
    eval_queries: int = Field(200, gt=0, description="Queries held out for evaluation (when no eval_path).")
    corpus_size: int = Field(0, ge=0, description="Grow the evaluation corpus with distractors to this size.")
    positive_threshold: float = Field(0.5, description="Scored pairs: score above this is relevant in evaluation.")
    max_rows: int | None = Field(None, gt=0, description="Sample at most this many training rows.")
    encoding: str = Field("utf-8", description="Text encoding of CSV files.")
    invalid_scores: ScorePolicy = Field(
        "error", description='Scored pairs: a score that is not a number in [0, 1] is an "error" (naming its line), '
        'or is "clip"ped into [0, 1], or the row is "skip"ped; skipped rows are counted on the console.'
    )


class LocalSource(DataSource[LocalParams]):
    """Local files: pairs, triplets or scored pairs, with a leakage-free held-out split."""

    name = "local"
    Params = LocalParams
    produces = ("pairs", "triplets", "scored-pairs")

    def formats(self) -> tuple[RowFormat, ...]:
        return tuple(RowFormat(f) for f in (("triplets", "pairs") if self.params.format == "triplets"
                                            else (self.params.format,)))

    def check(self, ctx: ValidationContext) -> list[str]:
        problems = []
        unknown = set(self.params.columns) - set(ROW_COLUMNS[self.params.format])
        if unknown:
            problems.append(
                f"columns: {', '.join(sorted(unknown))} not used by format '{self.params.format}' "
                f"(its columns: {', '.join(ROW_COLUMNS[self.params.format])})."
            )
        for key in ("path", "eval_path"):
            value = getattr(self.params, key)
            if value is None:
                continue
            path = ctx.recipe_dir / value
            problem = file_problem(key, value, path)
            if problem:
                problems.append(problem)
            elif builder_for(path) is None:
                problems.append(f"{key}: '{value}' has an unknown extension; use .jsonl, .json, .csv, .tsv or "
                                ".parquet.")
            else:
                problems += self._peek_problems(key, path)
        return problems

    def _peek_problems(self, key: str, path: Path) -> list[str]:
        """Columns and row counts, read cheaply, so validate catches what the run would."""
        p = self.params
        try:
            found = peek(path, p.encoding)
        except UserError as exc:
            return [f"{key}: {exc}"]
        problems = []
        need = [p.columns.get(c, c) for c in ROW_COLUMNS[p.format]]
        if found.columns is not None and any(c not in found.columns for c in need):
            missing = [c for c in need if c not in found.columns]
            problems.append(f"{key}: '{path.name}' has no column {', '.join(map(repr, missing))} (it has "
                            f"{', '.join(map(repr, found.columns))}); map them in [data] columns.")
        if key == "path" and p.eval_path is None and found.rows is not None and found.rows <= p.eval_queries:
            problems.append(f"eval_queries: {p.eval_queries} held out of the {found.rows} rows of '{path.name}' leaves "
                            "no training rows; lower eval_queries or give a larger file.")
        return problems

    def _read(self, path: Path) -> tuple[list[dict], int, dict]:
        wanted = ROW_COLUMNS[self.params.format]
        lines = prescan(path, encoding=self.params.encoding)
        table = read_table(path, encoding=self.params.encoding)
        require_columns(table.column_names, [self.params.columns.get(c, c) for c in wanted], str(path),
                        example_key=wanted[0])
        check = RowCheck(path, wanted, self.params.invalid_scores, lines)
        rows = check.rows({c: table[self.params.columns.get(c, c)] for c in wanted}, len(table))
        return rows, check.skipped_count, check.report(len(table))

    def load(self, request: DataRequest) -> DataBundle:
        p = self.params
        path = request.recipe_dir / p.path
        rows, skipped, report = self._read(path)
        doc_cols = ("sentence2",) if p.format == "scored-pairs" else ROW_COLUMNS[p.format][1:]
        query_col = "sentence1" if p.format == "scored-pairs" else "anchor"
        relevant = (lambda r: r["score"] > p.positive_threshold) if p.format == "scored-pairs" else None
        split_kwargs: dict[str, Any] = dict(seed=request.seed, corpus_size=p.corpus_size, query_col=query_col,
                                            doc_cols=doc_cols, is_relevant=relevant)
        if p.eval_path:
            eval_rows, eval_skipped, _ = self._read(request.recipe_dir / p.eval_path)
            skipped += eval_skipped
            held = split_by_query(eval_rows, eval_queries=len(eval_rows), **split_kwargs).eval
            eval_texts = {normalise_text(t) for t in (*held.queries.values(), *held.corpus.values())}
            columns = (query_col, *doc_cols)
            train_rows = [r for r in rows if not any(normalise_text(r[c]) in eval_texts for c in columns)]
            eval_set = held
        else:
            split = split_by_query(rows, eval_queries=p.eval_queries, **split_kwargs)
            train_rows, eval_set = split.train_rows, split.eval
        held_out = len(rows) - len(train_rows)
        train_rows, spare = seeded_split(train_rows, p.max_rows, request.seed)
        if request.row_format == "pairs" and p.format == "triplets":
            train_rows = [{"anchor": r["anchor"], "positive": r["positive"]} for r in train_rows]
            spare = [{"anchor": r["anchor"], "positive": r["positive"]} for r in spare]
        if not train_rows:
            raise UserError(self._nothing_left(path, rows, skipped, held_out, query_col))
        summary = {"rows": len(rows) + skipped, "skipped_rows": skipped, "held_out_rows": held_out, **report}
        return DataBundle(rows_to_dataset(train_rows, request.row_format), eval_set, request.row_format, summary,
                          spare=spare)


    def _nothing_left(self, path: Path, rows: list[dict], skipped: int, held_out: int, query_col: str) -> str:
        """Why no training row is left, with the fix that would help: fewer held-out queries helps
        only when the file has more distinct queries than are held out."""
        p = self.params
        distinct = {normalise_text(str(r[query_col])) for r in rows}
        counts = (f"of {len(rows) + skipped} rows, {skipped} were skipped and {held_out} held out (or dropped for "
                  "touching the evaluation set)")
        if len(distinct) == 1 and not p.eval_path:
            return (f"{path}: no training rows are left: all {len(rows)} rows have the same query "
                    f"('{str(rows[0][query_col])[:60]}'), and every row of a held-out query leaves training, whatever "
                    "[data] eval_queries is. Give rows with many distinct queries.")
        if len(distinct) <= p.eval_queries and not p.eval_path:
            return (f"{path}: no training rows are left: {counts}. The file has {len(distinct)} distinct queries and "
                    f"[data] eval_queries holds out {p.eval_queries}: lower it well below {len(distinct)}, or give "
                    "rows with more distinct queries.")
        if p.eval_path:
            return (f"{path}: no training rows are left: {counts}: every row shares a text with {p.eval_path}. "
                    "Give training rows whose texts the evaluation file does not hold.")
        return (f"{path}: no training rows are left: {counts}. Lower [data] eval_queries ({p.eval_queries}) or "
                "corpus_size, or give more rows.")


@hookimpl
def register_data_sources(register):
    register(LocalSource)
