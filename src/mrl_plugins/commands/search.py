"""``mrl-run search``: query an index built by ``mrl-run index``."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from ..components import Command
from ..errors import UserError
from .args import non_negative, positive
from .logs import setup_logging


def search_arguments(search: argparse.ArgumentParser) -> None:
    """The arguments of ``mrl-run search``."""
    search.add_argument("index", type=Path, help="The index folder.")
    search.add_argument("query", nargs="+", help="One or more queries.")
    search.add_argument("-k", type=positive, default=10, help="Documents to return (default 10).")
    search.add_argument("--shortlist", type=non_negative,
                        help="Candidates to rerank (default: the one the index was built for, else 100; 0: no "
                        "rerank).")
    search.add_argument("--model", help="Embed queries with this model (default: the one that built the index).")
    search.add_argument("--dsn", help="Connection string of the database server holding the index, when an index "
                        "engine's server moved (default: the one recorded in the index folder).")
    search.add_argument("--device", default="auto")
    search.add_argument("--json", action="store_true", help="Print JSON lines instead of a table.")


@dataclass(frozen=True)
class SearchRequest:
    """The queries and how to search them, the shortlist resolved (the index's own default)."""

    index: Path
    queries: tuple[str, ...]
    k: int
    shortlist: int
    """Candidates reranked; 0: the shortlist index's own top k."""
    model: str | None
    dsn: str | None
    device: str
    json: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SearchRequest:
        """Checks the whole index folder first (before torch or a model loads)."""
        from ..models.checks import device_problems
        from ..search.folder import check_index_folder

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
        return cls(args.index, tuple(args.query), args.k, shortlist, args.model, args.dsn, args.device, args.json)


def search(request: SearchRequest) -> int:
    """Print each query's hits: a table, or JSON lines."""
    from ..search.searcher import Searcher

    searcher = Searcher.open(request.index, model=request.model, device=request.device, dsn=request.dsn)
    found = searcher.search(request.queries, request.k, shortlist=request.shortlist)
    for query, hits in zip(request.queries, found):
        if request.json:
            docs = [{"id": h.id, "text": h.text, "score": h.score} for h in hits]
            print(json.dumps({"query": query, "hits": docs}, ensure_ascii=False))
            continue
        print(f"{query}")
        for rank, hit in enumerate(hits, 1):
            text = " ".join(hit.text.split())
            print(f"  {rank:>2}. {hit.score:.4f}  [{hit.id}]  {text[:100]}{'…' if len(text) > 100 else ''}")
    return 0


class Search(Command):
    """Search an index built by 'mrl-run index'."""

    name = "search"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        search_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        setup_logging(quiet=True)
        return search(SearchRequest.from_args(args))
