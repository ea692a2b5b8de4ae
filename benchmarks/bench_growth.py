"""Does the run's scaling of each funnel setting hold at a corpus it never saw? (issue #37, item 2)

Real data only. A finished quickstart run (``--run``; run since the funnel measures growth, so
that its ``funnel`` measured its growth on validation: the 1,000-document validation corpus grown
with the Debian sample's later description paragraphs) states, for every funnel setting at every
width, the shortlist that keeps the recall of the exact top 10 it had on validation, extrapolated
to a larger corpus. This script measures that shortlist on a real corpus of that size the run
never saw: the 30,550 paragraphs of ``bench_index_tuning.py``'s "30k" corpus (every paragraph of
1,000 packages outside the quickstart's sample and of random others, from Debian 12's catalogue in
../shared/data), searched by those 1,000 packages' synopses, embedded by the run's own model
(``mrl-run embed``; kept between runs, refused if another model made them).

For each setting: its recall on validation (1,000 documents, 200 queries), its recall at 30,550
with the same shortlist, the shortlist measured to keep the validation recall there (ranks of the
exact top 10 in the setting's own shortlist ranking, as the run measures them), and the run's
extrapolation, with their ratio (> 1: the run asks for more than needed).

    .venv/bin/python benchmarks/bench_growth.py --run runs/quickstart-…
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_index_tuning import corpora  # noqa: E402

LONGEST = 8000
K = 10


def embeddings(run: Path, docs: list[dict], folder: Path) -> np.ndarray:
    """The corpus embedded by the run's model, unit length, reusing ``folder`` when that model made it."""
    from mrl_plugins.embed.folder import EmbeddingsDir
    from mrl_plugins.embed.stamp import ModelStamp
    from mrl_plugins.evaluation.encode import normalise
    from mrl_plugins.evidence.rundir import resolve_model_arg
    from mrl_plugins.models import load_model

    model = load_model(resolve_model_arg(str(run))[0], device="cpu")
    stamp = ModelStamp.of(model, str(run / "model"))
    manifest = folder / "manifest.json"
    if manifest.is_file():
        made = json.loads(manifest.read_text())["model"]
        if not stamp.matches(ModelStamp(made["name"], tuple(made["probe"]))):
            sys.exit(f"{folder} was embedded by another model ({made['name']}); remove it or pass --work elsewhere")
    else:
        corpus = folder.with_suffix(".jsonl")
        corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "mrl_plugins.cli", "embed", str(run / "model"), str(corpus), "-o",
                        str(folder), "--overwrite"], check=True)
    shards = EmbeddingsDir(folder)
    return np.concatenate([normalise(np.asarray(v, dtype=np.float32)) for v, _ in shards.shards(shards.open())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="A finished quickstart run whose funnel measured its growth.")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-growth"), help="Where embeddings are kept.")
    args = parser.parse_args()

    from mrl_plugins.evaluation.encode import encode_texts, normalise
    from mrl_plugins.evidence.results import RunResults
    from mrl_plugins.evidence.rundir import resolve_model_arg
    from mrl_plugins.models import load_model
    from mrl_plugins.plugins import load_registry
    from mrl_plugins.search.growth import Growth, needed, recall_at, shortlist_ranks
    from mrl_plugins.search.index import funnel_index

    run = Path(args.run)
    results = RunResults.load(run / "results.json")
    settings = [(key, column, int(d), Growth.from_json(g)) for key, column in results.validation.items()
                for d, g in (column.facts.get("growth") or {}).items()]
    if not settings:
        sys.exit(f"{run}: its results.json has no funnel growth (a run with a funnel, since it measures growth)")
    queries, _, found = corpora(1000, 0)
    docs, _ = found["30k"]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    unit = embeddings(run, docs, work / f"30k-{len(docs)}-emb")
    n = len(unit)
    q = normalise(encode_texts(load_model(resolve_model_arg(str(run))[0], device="cpu"), queries, role="query"))
    registry = load_registry()
    exact = funnel_index(registry.build("index", registry.exact_index(), {}), unit.shape[1], unit.shape[1])
    exact.add(unit)
    exact_ids = exact.search(q, K, shortlist=n).ids
    print(f"run: {run}; validation: {results.data.validation_queries} queries, {results.data.validation_corpus:,} "
          f"documents, grown to {settings[0][3].sizes[-1]:,}; here: {len(q):,} queries, {n:,} documents "
          f"(Debian paragraphs the run never saw); shortlists searched up to {LONGEST:,}")
    header = (f"{'setting':<40} {'dim':>4} {'recall val':>10} {'recall here':>11} {'needed here':>11} "
              f"{'run says':>9} {'run / needed':>12} {'exponent':>8}")
    print(header)
    ranks_of: dict[tuple, np.ndarray] = {}
    for _key, column, d, growth in sorted(settings, key=lambda s: (s[1].label, -s[2])):
        p = column.params
        index_name = str(p.get("index") or "flat")
        params = dict(p.get("index_params") or {})
        cache = (index_name, repr(sorted(params.items())), d)
        if cache not in ranks_of:
            index = funnel_index(registry.build("index", index_name, params), unit.shape[1], d)
            index.add(unit)
            ranks_of[cache] = shortlist_ranks(index, q, exact_ids, min(n, LONGEST))
            index.close()
        ranks = ranks_of[cache]
        target = growth.recall[0]
        here = needed(ranks, target, min(n, LONGEST), K)
        says = growth.at(n)
        ratio = f"{says / here:.2f}" if here else "-"
        print(f"{column.label:<40} {d:>4} {target:>10.3f} {recall_at(ranks, growth.shortlist):>11.3f} "
              f"{(f'> {LONGEST:,}' if here is None else f'{here:,}'):>11} {says:>9,} {ratio:>12} "
              f"{'-' if growth.exponent is None else f'{growth.exponent:.2f}':>8}")


if __name__ == "__main__":
    main()
