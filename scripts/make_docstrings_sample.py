"""Cut a retrieval set out of the Python standard library's docstrings: a summary line → the rest.

The third real offline dataset, kept for **confirming** shipped defaults and advice: nothing in
mrl-plugins was chosen on it (docs/defaults.md says which data each default rests on). Every
function, method and class of the standard library with a docstring of at least two paragraphs
gives one pair: the query is the docstring's first paragraph (its summary, one line as a rule),
the document the rest, whitespace collapsed. Test suites, IDLE, lib2to3 and the turtle demos are
left out; so are summaries shorter than ``--min-query`` characters, documents shorter than
``--min-chars``, and summaries or documents that several objects share (each query then has one
relevant document). Documents are cut at ``--max-chars``.

The docstrings are the Python Software Foundation's, under the PSF License Agreement (the
``LICENSE`` file of every CPython distribution). The standard library differs between Python
versions, so the committed file records the version it was cut from; reproduce it with that
version (CPython 3.11 for ``data/python311-docstrings-pairs.jsonl.xz``) and

    python scripts/make_docstrings_sample.py -o data/python311-docstrings-pairs.jsonl.xz
"""

from __future__ import annotations

import argparse
import ast
import json
import lzma
import sys
import sysconfig
from collections import Counter
from pathlib import Path

SKIP = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages", "__pycache__"}


def docstring_pairs(root: Path, min_query: int, min_chars: int, max_chars: int) -> list[dict[str, str]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if SKIP & set(relative.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(relative.with_suffix("").parts)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            doc = ast.get_docstring(node)
            parts = doc.strip().split("\n\n", 1) if doc else []
            if len(parts) < 2:
                continue
            query, document = " ".join(parts[0].split()), " ".join(parts[1].split())
            if len(query) >= min_query and len(document) >= min_chars:
                found.append({"query": query, "document": document[:max_chars], "where": f"{module}.{node.name}"})
    queries = Counter(p["query"] for p in found)
    documents = Counter(p["document"] for p in found)
    return [p for p in found if queries[p["query"]] == 1 and documents[p["document"]] == 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="The .jsonl or .jsonl.xz file to write.")
    parser.add_argument("--root", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help="The standard library to read (default: this Python's).")
    parser.add_argument("--min-query", type=int, default=15)
    parser.add_argument("--min-chars", type=int, default=80)
    parser.add_argument("--max-chars", type=int, default=1000)
    args = parser.parse_args()
    pairs = docstring_pairs(args.root, args.min_query, args.min_chars, args.max_chars)
    opener = lzma.open if args.output.suffix == ".xz" else open
    with opener(args.output, "wt", encoding="utf-8") as fh:
        for pair in pairs:
            fh.write(json.dumps(pair, ensure_ascii=False) + "\n")
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"{len(pairs)} pairs from the standard library of Python {version} ({args.root}) -> {args.output}")


if __name__ == "__main__":
    main()
