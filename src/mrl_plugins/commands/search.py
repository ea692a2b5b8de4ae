"""``mrl-run search``: query an index built by ``mrl-run index``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..components import Command
from ..errors import UserError
from .args import non_negative, positive
from .logs import setup_logging


def search_arguments(search: argparse.ArgumentParser) -> None:
    """The arguments of ``mrl-run search``."""
    search.add_argument("index", type=Path, help="The index folder.")
    search.add_argument("query", nargs="*", help="One or more queries.")
    search.add_argument("--queries", metavar="FILE", type=Path,
                        help="Search every query in FILE (- reads standard input) in one process, printing JSON "
                        "lines: one query per line, as plain text or a JSON object with a 'query' (or 'text') "
                        "field; an 'id' field is carried to the output.")
    search.add_argument("-k", type=positive, default=10, help="Documents to return (default 10).")
    search.add_argument("--shortlist", type=non_negative,
                        help="Candidates to rerank (default: the one the index was built for, else 100; 0: no "
                        "rerank).")
    search.add_argument("--model", help="Embed queries with this model (default: the one that built the index).")
    search.add_argument("--dsn", help="Connection string of the database server holding the index, when an index "
                        "engine's server moved (default: the one recorded in the index folder).")
    search.add_argument("--device", default="auto")
    search.add_argument("--threads", type=positive,
                        help="OpenMP (FAISS) and BLAS threads to search with (default: one for a single query, "
                        "every core for a batch of a --queries file).")
    search.add_argument("--json", action="store_true", help="Print JSON lines instead of a table.")
    search.add_argument("--explain", action="store_true",
                        help="First print how the index was chosen: every setting 'mrl-run index' measured on its "
                        "corpus (recall of the exact top 10, bytes per vector, p50/p95 milliseconds).")


@dataclass(frozen=True)
class SearchRequest:
    """The queries and how to search them, the shortlist resolved (the index's own default)."""

    index: Path
    queries: tuple[str, ...]
    queries_file: Path | None
    """``--queries``: more queries, read as they are searched (``-``: standard input)."""
    k: int
    shortlist: int
    """Candidates reranked; 0: the shortlist index's own top k."""
    model: str | None
    dsn: str | None
    device: str
    json: bool
    explain: bool = False
    threads: int | None = None
    """``--threads``: search on this many threads, one query or a batch (default: one for a single
    query, all for a batch)."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SearchRequest:
        """Checks the whole index folder first (before torch or a model loads)."""
        from ..models.checks import device_problems
        from ..search.folder import check_index_folder

        if not args.query and args.queries is None and not args.explain:
            raise UserError("no query: give one or more queries ('mrl-run search INDEX \"how to resize images\"'), "
                            "or --queries FILE (- for standard input) with one query per line.")
        if args.queries is not None and str(args.queries) != "-" and not args.queries.is_file():
            raise UserError(f"--queries {args.queries}: no such file; give a file with one query per line, or - to "
                            "read them from standard input.")
        manifest = check_index_folder(args.index)
        if args.dsn and not manifest.engine:
            raise UserError(f"--dsn: {args.index} keeps its vectors in its folder ({manifest.index.name}); only an "
                            "index held by a database engine has a server to point at. Leave out --dsn.")
        shortlist = manifest.shortlist or 100 if args.shortlist is None else args.shortlist
        if shortlist and shortlist < args.k:
            raise UserError(f"--shortlist {shortlist} is smaller than -k {args.k}; the shortlist must hold the top k.")
        problems = device_problems(args.device, "--device")
        if problems:
            raise UserError(problems[0])
        return cls(args.index, tuple(args.query), args.queries, args.k, shortlist, args.model, args.dsn, args.device,
                   args.json or args.queries is not None, args.explain, args.threads)


BATCH = 64
"""Queries of a ``--queries`` file embedded and searched together (from standard input: one at a
time, so that a program writing a query and waiting for its answer gets it)."""


def read_queries(path: Path) -> Iterator[tuple[str | None, str]]:
    """``(id, query)`` per non-blank line of ``path`` (``-``: standard input), read as they come
    (:func:`~mrl_plugins.search.searcher.query_line`)."""
    from ..search.searcher import query_line

    stream = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    name = "standard input" if str(path) == "-" else str(path)
    try:
        for number, line in enumerate(stream, 1):
            parsed = query_line(line, f"--queries {name}, line {number}")
            if parsed is not None:
                yield parsed
    finally:
        if stream is not sys.stdin:
            stream.close()


def search(request: SearchRequest) -> int:
    """Print each query's hits: a table, or JSON lines (always for ``--queries``)."""
    from itertools import chain, islice

    from ..search.searcher import Searcher

    if request.explain:
        from ..search.folder import read_manifest
        from ..search.tuning import explain

        tuning = read_manifest(request.index).tuning
        print(explain(tuning) if tuning else f"{request.index} records no measurements of its setting (built with "
              "--setting run, by an index engine, or before 0.9).", file=sys.stderr if request.json else sys.stdout)
        if not request.queries and request.queries_file is None:
            return 0
    searcher = Searcher.open(request.index, model=request.model, device=request.device, dsn=request.dsn)
    given: Iterator[tuple[str | None, str]] = ((None, q) for q in request.queries)
    queries = chain(given, read_queries(request.queries_file)) if request.queries_file is not None else given
    size = 1 if str(request.queries_file) == "-" else BATCH  # from a pipe, each query answered as it arrives
    with threads(request.threads):
        while batch := list(islice(queries, size)):
            found = searcher.search([q for _, q in batch], request.k, shortlist=request.shortlist)
            for (query_id, query), hits in zip(batch, found):
                show(query_id, query, hits, request.json)
            sys.stdout.flush()  # a reader of a pipe sees each batch's answers as they come
    return 0


def threads(count: int | None) -> Any:
    """``--threads``: the search's thread count for the block (nothing set without it)."""
    import contextlib

    if count is None:
        return contextlib.nullcontext()
    from ..search.index import search_threads

    return search_threads(count)


def show(query_id: str | None, query: str, hits: list[Any], as_json: bool) -> None:
    """One query's hits on standard output."""
    if as_json:
        docs = [{"id": h.id, "text": h.text, "score": h.score} for h in hits]
        line = {"id": query_id} if query_id is not None else {}
        print(json.dumps({**line, "query": query, "hits": docs}, ensure_ascii=False))
        return
    print(f"{query}")
    for rank, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        print(f"  {rank:>2}. {hit.score:.4f}  [{hit.id}]  {text[:100]}{'…' if len(text) > 100 else ''}")


class Search(Command):
    """Search an index built by 'mrl-run index'."""

    name = "search"
    intermixed = True  # queries may follow options: search INDEX --json "query"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        search_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        setup_logging(quiet=True)
        return search(SearchRequest.from_args(args))
