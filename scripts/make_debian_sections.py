"""Cut the classification and clustering set of Debian package descriptions by archive section.

Two real Debian 12 (bookworm) files: the package-description catalogue ``main/i18n/
Translation-en`` (see ../shared/data/README.md) and the archive's package list
``main/binary-amd64/Packages`` (as apt keeps it, ``/var/lib/apt/lists/deb.debian.org_debian_dists_
bookworm_main_binary-amd64_Packages.lz4``; plain, .xz, .gz or .lz4), whose ``Section:`` field the
archive assigns to every package. Text = a package's first description paragraph, kept only when
the ``debian`` data source would use it (at least ``--min-chars`` characters, shared by no other
package); packages of the quickstart's sample (``data/debian-sample-Translation-en.xz``) are left
out, so that no text of the set is one the quickstart trains or evaluates on. ``--per-section``
packages are drawn (seeded) from each of ``--sections``; each section's first half is
``split = "train"``, the rest ``"test"``. Written as JSON lines, xz-compressed. Reproduce the
committed file with:

    python scripts/make_debian_sections.py ../shared/data/debian-bookworm-Translation-en.xz \\
        /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4 \\
        data/debian-sections.jsonl.xz --per-section 100 --seed 0
"""

from __future__ import annotations

import argparse
import json
import lzma
import random
import subprocess
from pathlib import Path

from mrl_plugins.builtin.debian import open_text, read_catalogue, usable_packages

SECTIONS = ("games", "science", "sound", "graphics", "fonts", "mail", "math", "electronics", "editors", "database")
"""Topical sections (what a package does), not packaging ones (libs, python, doc …)."""

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "debian-sample-Translation-en.xz"


def sections(path: Path) -> dict[str, str]:
    """Package name → its ``Section:`` (the component prefix, as in ``contrib/games``, dropped)."""
    if path.suffix == ".lz4":
        text = subprocess.run(["lz4cat", str(path)], check=True, capture_output=True).stdout.decode("utf-8")
    else:
        with open_text(path) as fh:
            text = fh.read()
    found = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if "Package" in fields and "Section" in fields:
            found.setdefault(fields["Package"], fields["Section"].rsplit("/", 1)[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("translation", type=Path)
    parser.add_argument("packages", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-section", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-chars", type=int, default=40)
    args = parser.parse_args()

    section_of = sections(args.packages)
    sample = {p.name for p in read_catalogue(SAMPLE)}
    usable = [p for p in usable_packages(read_catalogue(args.translation), args.min_chars) if p.name not in sample]
    rng = random.Random(args.seed)
    rows = []
    for section in SECTIONS:
        members = sorted((p for p in usable if section_of.get(p.name) == section), key=lambda p: p.name)
        if len(members) < args.per_section:
            raise SystemExit(f"section {section}: only {len(members)} usable packages")
        drawn = rng.sample(members, args.per_section)
        half = args.per_section // 2
        rows += [{"package": p.name, "section": section, "text": p.document, "split": "train" if i < half else "test"}
                 for i, p in enumerate(drawn)]
    with lzma.open(args.out, "wt", encoding="utf-8", preset=9) as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    print(f"{args.out}: {len(rows)} rows, {len(SECTIONS)} sections")


if __name__ == "__main__":
    main()
