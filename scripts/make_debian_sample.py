"""Cut the quickstart's sample out of Debian's package-description catalogue.

The source is Debian 12 (bookworm) ``main/i18n/Translation-en`` (see ../shared/data/README.md).
Only packages the ``debian`` data source would use are kept (a first paragraph of at least
``--min-chars`` characters that no other package shares); ``--packages`` of them are drawn with
a fixed seed and written back verbatim, in the same format, xz-compressed. Reproduce the
committed file with:

    python scripts/make_debian_sample.py ../shared/data/debian-bookworm-Translation-en.xz \
        data/debian-sample-Translation-en.xz --packages 6000 --seed 0
"""

from __future__ import annotations

import argparse
import lzma
import random
from pathlib import Path

from mrl_plugins.builtin.debian import open_text, parse_translation, usable_packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--packages", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-chars", type=int, default=40)
    args = parser.parse_args()

    with open_text(args.source) as fh:
        stanzas = [s for s in fh.read().split("\n\n") if s.strip()]
    packages = [next(parse_translation(iter(s.splitlines(keepends=True))), None) for s in stanzas]
    keep_docs = {p.document for p in usable_packages([p for p in packages if p], args.min_chars)}
    eligible = sorted(i for i, p in enumerate(packages) if p and p.document in keep_docs)
    chosen = sorted(random.Random(args.seed).sample(eligible, args.packages))
    text = "\n\n".join(stanzas[i].strip("\n") for i in chosen) + "\n"
    with lzma.open(args.out, "wt", encoding="utf-8", preset=9) as fh:
        fh.write(text)
    print(f"{len(stanzas)} packages, {len(eligible)} usable, {len(chosen)} written to {args.out}")


if __name__ == "__main__":
    main()
