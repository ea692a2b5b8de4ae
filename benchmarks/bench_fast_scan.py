"""Partitioned product-quantiser shortlists (FAISS's ``IVF,PQ32x4fs``, reranked at full width)
against binary codes of 256 dims, on real queries (issue #37's batched target).

The one target of issue #37 still missed is the batched one: at 135,117 Debian paragraphs the
setting ``mrl-run index`` tunes (binary codes of the first 256 dims, a float32 rerank of 200)
answers a batch 4.8× faster than exact FAISS flat search at one thread, not 5×: it scans every
code. FAISS's guidelines name, for a budget of a few tens of bytes a vector, inverted lists of
4-bit product-quantiser codes scanned in SIMD registers, reranked (``IVF…,PQ…x4fs,RFlat``), which
scan a few per cent of the corpus. This measures them on the corpora and the 1,000 real queries of
``bench_index_tuning.py`` (run that first: its embeddings are reused) with the project's funnel:
the ``ivf`` backend with ``pq_bits = 4`` over a Matryoshka prefix, nlist 4·√n of the 65,536 vectors
it trains on, 32 sub-vectors (16 bytes), ``nprobe`` × shortlist, against the tuned binary setting
and exact search, timed in the same interleaved rounds at one thread. Beside the real queries'
numbers, the recall of the exact top 10 for the pseudo-queries ``mrl-run index``'s tuning
measures with when it has no labels (the openings of 200 sampled documents): what tuning would
see of each setting.

    .venv/bin/python benchmarks/bench_fast_scan.py [--run runs/bench-search-quickstart] [--corpora 30k,all]
        [--dims 96,192] [--nprobe 16,64,256] [--shortlists 200,500]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_index_tuning import K, corpora, corpus_vectors, mrr, recall, timed  # noqa: E402


def evaluate(name: str, run_dir: Path, docs: list[dict], relevant: list[int], queries: list[str],
             grid: tuple[list[int], list[int], list[int]]) -> None:
    import faiss

    from mrl_plugins.evaluation.encode import encode_texts, normalise
    from mrl_plugins.evaluation.retrieval import overlap_at_k
    from mrl_plugins.evidence.rundir import resolve_model_arg
    from mrl_plugins.models import load_model
    from mrl_plugins.plugins import load_registry
    from mrl_plugins.search.index import FunnelIndex
    from mrl_plugins.search.tuning import exact_top, make_probes

    work = ROOT / "runs" / "bench-index-tuning"
    emb, tuned = work / f"{name}-{len(docs)}-emb", work / f"{name}-{len(docs)}-0"
    if not (emb / "manifest.json").is_file() or not (tuned / "manifest.json").is_file():
        sys.exit(f"{emb} or {tuned}: not there; run benchmarks/bench_index_tuning.py --corpora {name} first (it "
                 "embeds the corpus and tunes an index on it)")
    unit = corpus_vectors(emb)
    model = load_model(resolve_model_arg(str(run_dir))[0], device="cpu")
    q = normalise(encode_texts(model, queries, role="query"))
    flat = faiss.IndexFlatIP(unit.shape[1])
    flat.add(unit)
    exact_ids = flat.search(q, K)[1]
    exact_mrr = mrr(exact_ids, relevant)
    # what mrl-run index's tuning sees without labels: the pseudo-queries it made for the tuned index
    # (the openings of a seeded sample of its documents) and their recall of the exact top 10, ties
    # counted as found
    probes = make_probes(tuned, unit, lambda texts: encode_texts(model, texts, role="query"), None)
    if probes.source != "pseudo-queries":
        sys.exit(f"{tuned}: no texts to make pseudo-queries from ({probes.detail})")
    pseudo = probes.vectors
    pseudo_exact = exact_top(unit, pseudo)
    registry = load_registry()
    searches, rows = {"exact": lambda x: flat.search(x, K)}, []
    binary = FunnelIndex.over(unit, registry.build("index", "binary", {}), 256)
    settings = [("binary 256", binary, 200)]
    dims, nprobes, shortlists = grid
    for dim in dims:
        for nprobe in nprobes:
            params = {"pq": 32, "pq_bits": 4, "nprobe": nprobe}
            index = FunnelIndex.over(unit, registry.build("index", "ivf", params), dim)
            settings += [(f"ivf {dim} PQ32x4fs, nprobe {nprobe}", index, s) for s in shortlists]
    for label, index, shortlist in settings:
        ids = index.search(q, K, shortlist=shortlist).ids
        tuning_sees = overlap_at_k(index.search(pseudo, K, shortlist=shortlist).ids, pseudo_exact, K, queries=pseudo,
                                   corpus=unit)
        rows.append((label, shortlist, mrr(ids, relevant) / exact_mrr, recall(ids, exact_ids), tuning_sees,
                     index.index_bytes()))
        searches[(label, shortlist)] = lambda x, i=index, s=shortlist: i.search(x, K, shortlist=s)
    times = timed(searches, q)
    one, batch = times["exact"]
    print(f"\n== corpus '{name}': {len(unit):,} paragraphs, {len(q)} real queries; exact: {one:.3f} ms one query, "
          f"{batch:.4f} ms a query batched (one thread)")
    print("| setting | shortlist | MRR@10 kept | recall@10 vs exact | pseudo-queries' recall | bytes/vector | "
          "× exact, one query | × exact, batched |")
    print("|---|---|---|---|---|---|---|---|")
    for label, shortlist, kept, found, seen, size in rows:
        t1, tb = times[(label, shortlist)]
        print(f"| {label} | {shortlist} | {kept:.1%} | {found:.3f} | {seen:.3f} | {size:.1f} | {one / t1:.1f} | "
              f"{batch / tb:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(ROOT / "runs" / "bench-search-quickstart"))
    parser.add_argument("--corpora", default="30k,all")
    parser.add_argument("--dims", default="96,192", help="Prefix widths of the fast-scan cells (32 must divide them).")
    parser.add_argument("--nprobe", default="16,64,256")
    parser.add_argument("--shortlists", default="200,500")
    args = parser.parse_args()
    grid = tuple([int(x) for x in value.split(",")] for value in (args.dims, args.nprobe, args.shortlists))
    queries, _, sets = corpora(1000, 0)
    print(f"model: {args.run}; 1000 queries (synopses of packages outside the quickstart sample)")
    for name in args.corpora.split(","):
        docs, relevant = sets[name]
        evaluate(name, Path(args.run), docs, relevant, queries, grid)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
