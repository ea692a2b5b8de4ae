"""Cut a retrieval set out of Debian's manual pages: one page's purpose → its description.

The source is six Debian 12 (bookworm) packages whose manual pages differ in kind: the Linux
man-pages project (``manpages``: files, conventions, administration; ``manpages-dev``: system
calls and the C library), ``coreutils`` and ``util-linux`` (commands), ``systemd`` (services and
their configuration) and ``perl-doc`` (Perl's manuals and modules). Fetch them on a Debian 12
machine with

    apt-get download manpages=6.03-2 manpages-dev=6.03-2 coreutils=9.1-1 \\
        util-linux=2.38.1-5+deb12u3 systemd=252.39-1~deb12u2 perl-doc=5.36.0-7+deb12u4

and reproduce the committed file (data/README.md records the packages' checksums) with

    python scripts/make_manpages_sample.py manpages_6.03-2_all.deb manpages-dev_6.03-2_all.deb \\
        coreutils_9.1-1_amd64.deb util-linux_2.38.1-5+deb12u3_amd64.deb \\
        systemd_252.39-1~deb12u2_amd64.deb perl-doc_5.36.0-7+deb12u4_all.deb \\
        -o data/manpages-debian12-pairs.jsonl.xz

Each page gives one pair: the query is its NAME line's description (``open, openat, creat \\-
open and possibly create a file`` → "open and possibly create a file"), the document the first
paragraph of its DESCRIPTION, as plain text. Pages that only include another page (``.so``) are
skipped, as are documents shorter than ``--min-chars`` and descriptions or documents that several
pages share (so each query has one relevant document). The ``.deb`` files are read with Python's
standard library (an ``ar`` archive holding ``data.tar.xz``), and the groff markup the man-pages
project uses is converted to text here: no groff, no dpkg needed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import lzma
import re
import tarfile
from collections import Counter
from pathlib import Path

ESCAPES = {
    r"\-": "-", r"\(em": "—", r"\(en": "–", r"\(aq": "'", r"\(dq": '"', r"\(lq": "“", r"\(rq": "”", r"\e": "\\",
    r"\&": "", r"\%": "", r"\:": "", r"\ ": " ", r"\~": " ", r"\|": "", r"\^": "", r"\(bu": "•", r"\(co": "©",
    r"\(rg": "®", r"\(tm": "™", r"\(mu": "×", r"\(ti": "~", r"\(ha": "^", r"\(ga": "`", r"\(lh": "", r"\(rh": "",
}


BREAKS = (".PP", ".P ", ".LP", ".TP", ".IP", ".HP", ".SS", ".RS", ".RE", ".in", ".sp", ".br")
"""roff requests that end a paragraph."""


def members(deb: Path) -> dict[str, bytes]:
    """The files of a .deb's data archive (an ar archive holding data.tar.*)."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise SystemExit(f"{deb}: not a .deb (ar) archive")
    pos, out = 8, {}
    while pos < len(raw):
        name = raw[pos : pos + 16].decode().strip().rstrip("/")
        size = int(raw[pos + 48 : pos + 58].decode().strip())
        body = raw[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for info in tar.getmembers():
                    if info.isfile():
                        out[info.name.lstrip("./")] = tar.extractfile(info).read()
    return out


def inline(text: str) -> str:
    """Groff escapes and font changes to plain text."""
    text = re.sub(r'\\".*$', "", text)  # comment
    text = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", text)  # font changes
    text = re.sub(r"\\s[-+]?\d", "", text)  # size changes
    text = re.sub(r"\\\*\((..)|\\\*(.)", "", text)  # strings
    for escape, plain in ESCAPES.items():
        text = text.replace(escape, plain)
    text = re.sub(r"\\\[([^\]]*)\]", "", text)
    text = re.sub(r"\\\((..)", "", text)
    return text.replace("\\", "")


def macro_text(line: str) -> str:
    """The text of a font macro line (.B, .IR, …): its arguments, alternating fonts joined."""
    name, _, rest = line.partition(" ")
    args = re.findall(r'"([^"]*)"|(\S+)', rest)
    words = [a or b for a, b in args]
    if name in (".BR", ".RB", ".IR", ".RI", ".BI", ".IB"):
        return "".join(words)
    return " ".join(words)


def sections(source: str) -> dict[str, list[list[str]]]:
    """Section name → paragraphs (lists of text lines)."""
    out: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    para: list[str] = []
    nofill = False

    def close() -> None:
        nonlocal para
        if current is not None and para:
            current.append(para)
        para = []

    for raw in source.splitlines():
        line = raw.rstrip()
        if line.startswith(".SH"):
            close()
            name = inline(line[3:].strip().strip('"')).upper()
            current = out.setdefault(name, [])
            continue
        if current is None or line.startswith(('.\\"', "'\\\"")):
            continue
        if line.startswith((".nf", ".EX")):
            close()
            nofill = True
            continue
        if line.startswith((".fi", ".EE")):
            nofill = False
            continue
        if nofill:
            continue  # code examples are not prose
        if line.startswith(BREAKS) or line in (".P", ""):
            close()
            if line.startswith(".IP") and len(line.split()) > 1:
                para.append(inline(macro_text(line)))
            continue
        if re.match(r"\.(B|I|BR|RB|IR|RI|BI|IB|SM|SB)\b", line):
            para.append(inline(macro_text(line)))
        elif line.startswith("."):
            continue  # other requests carry no prose
        else:
            para.append(inline(line))
    close()
    return out


def pair(name: str, source: str, min_chars: int) -> dict[str, str] | None:
    if source.lstrip().startswith(".so"):
        return None
    parts = sections(source)
    names = " ".join(" ".join(p) for p in parts.get("NAME", []))
    if " - " not in names:
        return None
    query = names.split(" - ", 1)[1].strip()
    description = parts.get("DESCRIPTION", [])
    document = " ".join(" ".join(description[0]).split()) if description else ""
    if len(document) < min_chars or not query:
        return None
    return {"page": name, "query": query, "document": document}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("debs", type=Path, nargs="+")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--min-chars", type=int, default=40)
    args = parser.parse_args()
    pages = {}
    for deb in args.debs:
        for path, data in members(deb).items():
            m = re.match(r"usr/share/man/man(\d)/(.+)\.\d\w*\.gz$", path)
            if m:
                pages[f"{m.group(2)}({m.group(1)})"] = gzip.decompress(data).decode("utf-8", errors="replace")
    pairs = [p for name, src in sorted(pages.items()) if (p := pair(name, src, args.min_chars))]
    queries, documents = Counter(p["query"] for p in pairs), Counter(p["document"] for p in pairs)
    kept = [p for p in pairs if queries[p["query"]] == 1 and documents[p["document"]] == 1]
    with lzma.open(args.output, "wt", encoding="utf-8", preset=9) as fh:
        for p in kept:
            fh.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(f"{len(pages)} pages, {len(pairs)} with a NAME description and a DESCRIPTION paragraph, "
          f"{len(kept)} unique pairs written to {args.output}")


if __name__ == "__main__":
    main()
