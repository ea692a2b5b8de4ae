"""Hamming shortlists: FAISS ``IndexBinaryFlat`` with its heap (the default) or its counting
selection (``use_heap = False``), one query at a time and batched, per code width and shortlist
length (issue #37, item 3: the binary shortlist of the tuned setting at 135,000 documents).

Synthetic vectors (speed only: Gaussian, the variance falling with the dimension as a Matryoshka
model's does), at one thread, the two selections interleaved in the same rounds so that the
machine's noise falls on both. Prints milliseconds per query and heap ÷ counting, after the
time of exact search on the same vectors (FAISS ``IndexFlatIP``, float32 at full width, one
thread): a full scan of Hamming codes is a funnel's floor, so exact ÷ the scan's time bounds what
a binary funnel can gain over exact search before it reranks anything.

    .venv/bin/python benchmarks/bench_hamming.py [--n 135117] [--queries 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

WIDTHS = (96, 128, 192, 256, 384)
SHORTLISTS = (10, 50, 100, 200, 500, 1000)


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=135_117)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    scale = np.linspace(2.0, 0.5, 384, dtype=np.float32)
    corpus = rng.normal(size=(args.n, 384)).astype(np.float32) * scale
    queries = corpus[rng.choice(args.n, args.queries, replace=False)] + rng.normal(size=(args.queries, 384)).astype(
        np.float32) * scale * 0.5
    print(f"{args.n:,} synthetic vectors, {args.queries} queries, one thread; ms a query (median of {args.rounds} "
          "rounds, interleaved)")
    exact = faiss.IndexFlatIP(corpus.shape[1])
    exact.add(corpus)
    # batched with 1,000 queries, as issue #37's benchmark is: FAISS's flat search multiplies
    # matrices (BLAS) only from a batch of 128,000 / d queries (334 at 384 dims), below it it
    # scans as one query does
    batch_queries = corpus[rng.choice(args.n, 1000, replace=False)]
    one, batch = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for i in range(len(queries)):
            exact.search(queries[i : i + 1], 10)
        one.append((time.perf_counter() - t0) / len(queries) * 1e3)
        t0 = time.perf_counter()
        exact.search(batch_queries, 10)
        batch.append((time.perf_counter() - t0) / len(batch_queries) * 1e3)
    del exact
    print(f"exact search (FAISS flat, float32, {corpus.shape[1]} dims, top 10): {np.median(one):.3f} ms one query, "
          f"{np.median(batch):.3f} ms a query in a batch of 1,000\n")
    print("| bits | shortlist | heap, one query | counting, one query | heap ÷ counting | heap, batched | "
          "counting, batched | heap ÷ counting |\n|---|---|---|---|---|---|---|---|")
    for bits in WIDTHS:
        index = faiss.IndexBinaryFlat(bits)
        index.add(np.packbits(corpus[:, :bits] > 0, axis=1))
        codes = np.packbits(queries[:, :bits] > 0, axis=1)
        for k in SHORTLISTS:
            times: dict[tuple[bool, bool], list[float]] = {}
            for _ in range(args.rounds):
                for heap in (True, False):
                    index.use_heap = heap
                    t0 = time.perf_counter()
                    for i in range(len(codes)):
                        index.search(codes[i : i + 1], k)
                    times.setdefault((heap, False), []).append((time.perf_counter() - t0) / len(codes) * 1e3)
                    t0 = time.perf_counter()
                    index.search(codes, k)
                    times.setdefault((heap, True), []).append((time.perf_counter() - t0) / len(codes) * 1e3)
            ms = {key: float(np.median(v)) for key, v in times.items()}
            print(f"| {bits} | {k} | {ms[True, False]:.3f} | {ms[False, False]:.3f} | "
                  f"{ms[True, False] / ms[False, False]:.2f} | {ms[True, True]:.3f} | {ms[False, True]:.3f} | "
                  f"{ms[True, True] / ms[False, True]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
