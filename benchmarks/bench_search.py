"""What truncation buys at search time: quality on the full Debian catalogue, speed at 1M vectors.

(a) Quality. The MRL model the quickstart recipe trains (``--run`` a finished quickstart run, or
    the recipe is run first) embeds every usable package of Debian 12's catalogue
    (../shared/data) as the corpus; 500 synopses of packages outside the quickstart's sample (so
    never trained on) are the queries, each with its own description as the one relevant
    document. Exact search at full dimension against, at 192/96/48 dims: truncated exact
    search, funnels (flat and HNSW shortlists, reranked at full dimension), and int8 / binary
    codes with and without rescoring. MRR@10, overlap@10 with the exact full-dimension top 10,
    memory per vector, and query time as a ratio to exact full-dimension search timed alongside.
(b) Speed. 1,000,000 vectors drawn from a Gaussian with the mean and covariance of the real
    corpus embeddings of (a), so the leading dimensions carry realistic variance, re-normalised;
    1,000 queries are corpus vectors plus half as much noise drawn the same way, re-normalised,
    so each has near neighbours to find. Exact 384-dim flat search against 48-dim funnels (flat and HNSW
    shortlists) and binary codes + rescoring: queries per second one at a time and batched,
    resident memory of each index, and the physical ratio (bytes scanned per query) beside the
    measured one.

    .venv/bin/python benchmarks/bench_search.py [--run runs/quickstart-…] [--vectors 1000000]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT.parent / "shared" / "data" / "debian-bookworm-Translation-en.xz"
SAMPLE = ROOT / "data" / "debian-sample-Translation-en.xz"


def quickstart_model(run: str | None) -> Path:
    from mrl_plugins.cli import main as mrl_run

    out = Path(run) if run else ROOT / "runs" / "bench-search-quickstart"
    if not (out / "model" / "modules.json").is_file():
        print(f"training the quickstart model into {out} (about 5 minutes)", flush=True)
        code = mrl_run([str(ROOT / "recipes" / "quickstart.toml"), "--set", f"output_dir='{out}'", "-q"])
        if code:
            sys.exit(code)
    return out / "model"


def debian_task(n_queries: int, seed: int) -> tuple[list[str], list[str], list[int]]:
    """Corpus = every usable package; queries = synopses of packages outside the quickstart sample."""
    from mrl_plugins.builtin.debian import read_catalogue, usable_packages

    usable = usable_packages(read_catalogue(CATALOGUE), 40)
    seen = {p.name for p in read_catalogue(SAMPLE)}
    outside = [i for i, p in enumerate(usable) if p.name not in seen]
    picked = sorted(random.Random(seed).sample(outside, n_queries))
    return [usable[i].synopsis for i in picked], [p.document for p in usable], picked


def mrr(ids: np.ndarray, relevant: list[int], k: int = 10) -> float:
    total = 0.0
    for row, rel in zip(ids, relevant):
        hit = np.nonzero(row[:k] == rel)[0]
        total += 1.0 / (hit[0] + 1) if len(hit) else 0.0
    return total / len(relevant)


def overlap(ids: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(ids, exact)]))


def backend(name: str, **params):
    from mrl_plugins.plugins import load_registry

    cls = load_registry().get("index", name)
    return cls(cls.Params(**params))


def part_a(model_dir: Path, n_queries: int, seed: int) -> np.ndarray:
    from mrl_plugins.evaluation import encode_texts
    from mrl_plugins.models import ResolvedModel, load_model
    from mrl_plugins.search import FunnelIndex, measure

    queries_text, docs, relevant = debian_task(n_queries, seed)
    model = load_model(ResolvedModel("mrl", str(model_dir), "local path"), device="cpu", max_seq_length=128)
    t0 = time.perf_counter()
    corpus = encode_texts(model, docs, role="document", batch_size=128, progress=True)
    queries = encode_texts(model, queries_text, role="query", batch_size=128)
    print(f"\n(a) {len(queries)} held-out synopses against {len(docs)} package descriptions, model {model_dir} "
          f"(encoded in {time.perf_counter() - t0:.0f} s)\n")
    full = corpus.shape[1]
    configs: dict[str, tuple[FunnelIndex, int | None]] = {}

    def add(name, dim, index_backend, shortlist=None, rerank_dim=None):
        index = FunnelIndex(full, dim, index_backend, rerank_dim=rerank_dim)
        index.add(corpus)
        configs[name] = (index, shortlist)

    add(f"exact {full}", full, backend("flat"))
    for d in (192, 96, 48):
        add(f"truncated exact {d}", d, backend("flat"))
        for n in (100, 200, 500, 1000):
            add(f"funnel {d}→{full}, shortlist {n} (flat)", d, backend("flat"), n)
        add(f"funnel {d}→{full}, shortlist 500 (hnsw)", d, backend("hnsw"), 500)
        for precision in ("int8", "binary"):
            add(f"{precision} {d}", d, backend(precision))
            add(f"{precision} {d} + rescore 40 at {d}", d, backend(precision), 40, d)
            add(f"{precision} {d} + rescore 500 at {full}", d, backend(precision), 500)
    ranked = {name: index.search(queries, 10, shortlist=n).ids for name, (index, n) in configs.items()}
    timings = measure({name: (lambda q, i=i, n=n: i.search(q, 10, shortlist=n)) for name, (i, n) in configs.items()},
                      queries, single=100, rounds=3)
    exact_name = f"exact {full}"
    base_mrr, exact_ids, ref = mrr(ranked[exact_name], relevant), ranked[exact_name], timings[exact_name]
    print("| method | MRR@10 | kept | overlap@10 | RAM B/vector | rerank B/vector | time × (1 query) "
          "| time × (batch) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (index, n) in configs.items():
        m = mrr(ranked[name], relevant)
        rerank = f"{index.rerank_bytes():,.0f}" if n else "-"
        print(f"| {name} | {m:.4f} | {m / base_mrr:.1%} | {overlap(ranked[name], exact_ids):.3f} | "
              f"{index.index_bytes():,.0f} | {rerank} | {timings[name].ms_single / ref.ms_single:.2f} | "
              f"{timings[name].ms_batch / ref.ms_batch:.2f} |")
    print(f"\nexact {full}: {ref.ms_single:.3f} ms per query one at a time, {ref.ms_batch:.4f} ms per query batched")
    best = [(name, mrr(ranked[name], relevant) / base_mrr) for name in configs if name.startswith("funnel 48")
            and int(name.split("shortlist ")[1].split()[0]) <= 500]
    name, kept = max(best, key=lambda x: x[1])
    print(f"target (a): a 48-dim funnel with shortlist ≤ 500 keeps ≥ 99% of exact MRR@10: best is {name}, "
          f"{kept:.1%} -> {'met' if kept >= 0.99 else 'MISSED'}")
    return corpus


def rss_mb() -> float:
    """Resident memory of this process now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_b(real: np.ndarray, n: int, n_queries: int, seed: int) -> None:
    from mrl_plugins.search import FunnelIndex, measure, normalise

    rng = np.random.default_rng(seed)
    full = real.shape[1]
    mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    transform = (vecs * np.sqrt(np.maximum(vals, 0))).T.astype(np.float32)

    def draw(count: int) -> np.ndarray:
        out = np.empty((count, full), np.float32)
        for s in range(0, count, 100_000):
            z = rng.standard_normal((min(100_000, count - s), full), dtype=np.float32)
            out[s : s + len(z)] = normalise(z @ transform + mean)
        return out

    t0 = time.perf_counter()
    corpus = draw(n)
    picked = rng.choice(n, n_queries, replace=False)
    queries = normalise(corpus[picked] + 0.5 * (draw(n_queries) - mean))
    print(f"\n(b) {n:,} vectors drawn from N(mean, covariance of the {len(real):,} real embeddings), "
          f"re-normalised; {n_queries:,} queries = corpus vectors + half-scale noise "
          f"({time.perf_counter() - t0:.0f} s)\n")
    configs = {}
    for name, dim, index_backend, shortlist in (
        (f"exact {full} flat", full, backend("flat"), None),
        (f"funnel 48→{full}, shortlist 200 (flat)", 48, backend("flat"), 200),
        (f"funnel 48→{full}, shortlist 200 (hnsw)", 48, backend("hnsw", m=16, ef_construction=64, ef_search=256), 200),
        (f"binary {full} + rescore 200 at {full}", full, backend("binary"), 200),
    ):
        before, t0 = rss_mb(), time.perf_counter()
        index = FunnelIndex(full, dim, index_backend)
        for s in range(0, n, 100_000):
            index.add(corpus[s : s + 100_000])
        index._chunks = []  # the benchmark reranks from `corpus` below; keep one copy of the vectors
        index._vectors = corpus
        configs[name] = (index, shortlist)
        print(f"built {name} in {time.perf_counter() - t0:.0f} s; resident memory {before:,.0f} -> {rss_mb():,.0f} MiB",
              flush=True)
    timings = measure({name: (lambda q, i=i, s=s: i.search(q, 10, shortlist=s)) for name, (i, s) in configs.items()},
                      queries, single=50, rounds=2, warmup=3)
    ref_name = f"exact {full} flat"
    ref = timings[ref_name]
    exact_ids = configs[ref_name][0].search(queries[:200], 10).ids
    print("\n| method | RAM / vector | index in RAM | bytes scanned per query | physical × | "
          "queries/s (1 at a time) | × exact | queries/s (batched) | × exact | source found@10 | overlap@10 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    exact_scan = full * 4 * n
    for name, (index, shortlist) in configs.items():
        ib = index.index_bytes()
        scanned = (ib * n if "hnsw" not in name else float("nan")) + (shortlist or 0) * full * 4
        phys = exact_scan / scanned if scanned == scanned else float("nan")
        t = timings[name]
        found_ids = index.search(queries[:200], 10, shortlist=shortlist).ids
        ov = overlap(found_ids, exact_ids)
        source = float(np.mean([src in row for src, row in zip(picked[:200], found_ids)]))
        print(f"| {name} | {ib:,.0f} B | {ib * n / 2**20:,.0f} MiB | "
              f"{'graph walk' if 'hnsw' in name else f'{scanned / 2**20:,.1f} MiB'} | "
              f"{'-' if phys != phys else f'{phys:.1f}'} | {1e3 / t.ms_single:,.1f} | "
              f"{ref.ms_single / t.ms_single:.1f} | "
              f"{1e3 / t.ms_batch:,.0f} | {ref.ms_batch / t.ms_batch:.1f} | {source:.3f} | {ov:.3f} |")
    flat = ref.ms_single / timings[f"funnel 48→{full}, shortlist 200 (flat)"].ms_single
    hnsw = ref.ms_single / timings[f"funnel 48→{full}, shortlist 200 (hnsw)"].ms_single
    print(f"\ntargets (b), one query at a time: 48-dim flat funnel {flat:.1f}x exact (target ≥ 5x: "
          f"{'met' if flat >= 5 else 'MISSED'}); 48-dim HNSW funnel {hnsw:.1f}x "
          f"(target ≥ 50x: {'met' if hnsw >= 50 else 'MISSED'})")
    print(f"resident memory at the end: {rss_mb():,.0f} MiB "
          "(every index above and one copy of the vectors, held at once)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="A finished quickstart run (default: run the quickstart recipe first).")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import faiss

    print(f"FAISS {faiss.__version__}, {os.cpu_count()} CPU cores, OpenMP threads {faiss.omp_get_max_threads()}")
    real = part_a(quickstart_model(args.run), args.queries, args.seed)
    part_b(real, args.vectors, 1000, args.seed)


if __name__ == "__main__":
    main()
