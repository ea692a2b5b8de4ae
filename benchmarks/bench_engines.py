"""The funnel in PostgreSQL + pgvector beside FAISS, everything side by side in one run.

Real data only: the MRL model the quickstart recipe trains embeds every usable package of Debian
12's catalogue (../shared/data, 32,169 package descriptions) as the corpus, and 500 synopses of
packages outside the quickstart's sample (never trained on) are the queries, each with its own
description as the one relevant document (the embeddings of ``bench_search.py``, cached beside
the model: its first 500 queries). The database is the embedded PostgreSQL 18 + pgvector 0.8 of
``mrl-pgvector`` (a Unix socket on this machine, as ``mrl-run index --index pgvector`` starts it).

Per configuration: MRR@10 and the share of exact 384-dim MRR@10 it keeps; recall@10 of the exact
384-dim top 10; queries/s over one connection and over two (two threads, a connection each,
the queries split between them); p50 and p95 latency of one query at a time; the shortlist
index's size (``pg_relation_size``, or FAISS's bytes) and its build time; the server's memory
(the embedded server's processes, unique set size) after the searches. pgvector: full-width HNSW
with an ``ef_search`` sweep (recall against speed as a curve), the 48→384 and 96→384 subvector
funnels with shortlists 100/200/500, the halfvec store, binary_quantize + rerank. FAISS: the flat
funnels at the same widths and shortlists, an HNSW funnel and exact search, in process.

    .venv/bin/python benchmarks/bench_engines.py [--run runs/quickstart-…] [--queries 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_search

K = 10


@dataclass
class Config:
    name: str
    engine: str
    index: Any
    shortlist: int | None
    build_s: float
    index_mb: float
    reopen: Any = None
    """A second connection to the same table (pgvector): the two-connection throughput."""
    extra: dict = field(default_factory=dict)


def pg(name, corpus, dim, shortlist, folder, store="float32", **params):
    from mrl_plugins.plugins import load_registry

    backend = load_registry().build("index", "pgvector", params)
    t0 = time.perf_counter()
    index = backend.funnel(corpus.shape[1], dim, store_dtype=store)
    index.add(corpus)
    index.build_index()
    build = time.perf_counter() - t0
    import json

    saved = index.save(folder / f"index-{len(list(folder.iterdir()))}")  # committed: a second connection sees it
    second = backend.open(saved, json.loads((saved / "manifest.json").read_text()))
    return Config(name, "pgvector", index, shortlist, build, index.index_bytes() * len(corpus) / 2**20, second,
                  {"explain": index.explain(corpus[0], shortlist or K)})


def faiss_funnel(name, corpus, dim, shortlist, backend_name="flat", **params):
    from mrl_plugins.plugins import load_registry

    backend = load_registry().build("index", backend_name, params)
    t0 = time.perf_counter()
    index = backend.funnel(corpus.shape[1], dim)
    index.add(corpus)
    build = time.perf_counter() - t0
    return Config(name, "FAISS", index, shortlist, build, index.index_bytes() * len(corpus) / 2**20)


def search(index, queries, shortlist):
    return index.search(queries, K, shortlist=shortlist).ids


def latencies(config: Config, queries: np.ndarray) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        config.index.search(q[None, :], K, shortlist=config.shortlist)
        out.append(time.perf_counter() - t0)
    return out


def throughput(config: Config, queries: np.ndarray, connections: int) -> float:
    """Queries per second: the batch split across ``connections`` threads (FAISS: one process,
    its own threads; the second 'connection' is a second thread on the same index)."""
    indexes = [config.index, config.reopen or config.index][:connections]
    parts = np.array_split(queries, connections)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=search, args=(ix, part, config.shortlist)) for ix, part in zip(indexes, parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(queries) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="A finished quickstart run (default: trained first).")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model_dir = bench_search.quickstart_model(args.run)
    cache = model_dir.parent / f"bench-search-embeddings-1000-{args.seed}.npz"
    if not cache.is_file():
        bench_search.part_a(model_dir, 1000, args.seed)  # encodes and caches the embeddings
    _, _, relevant = bench_search.debian_task(1000, args.seed)
    saved = np.load(cache)
    corpus, queries = saved["corpus"], saved["queries"][: args.queries]
    relevant = relevant[: args.queries]
    full = corpus.shape[1]
    exact = np.argsort(-(queries @ corpus.T), axis=1)[:, :K]
    exact_mrr = bench_search.mrr(exact, relevant)
    print(f"{len(queries)} held-out synopses against {len(corpus)} package descriptions, model {model_dir}; "
          f"exact {full}-dim MRR@10 {exact_mrr:.4f}", flush=True)

    configs: list[Config] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        configs.append(faiss_funnel(f"FAISS exact {full} (flat)", corpus, full, None))
        for d in (48, 96):
            for n in (100, 200, 500):
                configs.append(faiss_funnel(f"FAISS flat funnel {d}→{full}, shortlist {n}", corpus, d, n))
        configs.append(faiss_funnel(f"FAISS hnsw funnel 48→{full}, shortlist 200", corpus, 48, 200, "hnsw"))
        for ef in (40, 100, 200, 400):
            name = f"pgvector hnsw {full}, ef_search {ef}"
            if ef == 40:
                base = pg(name, corpus, full, None, folder, ef_search=ef)
                configs.append(base)
            else:  # the same table and index, searched with another ef_search
                configs.append(Config(name, "pgvector", _with_ef(base.index, ef), None, base.build_s, base.index_mb,
                                      _with_ef(base.reopen, ef), base.extra))
        for d in (48, 96):
            for n in (100, 200, 500):
                name = f"pgvector funnel {d}→{full}, shortlist {n}"
                if n == 100:
                    first = pg(name, corpus, d, n, folder)
                    configs.append(first)
                else:
                    configs.append(Config(name, "pgvector", first.index, n, first.build_s, first.index_mb,
                                          first.reopen, first.extra))
        configs.append(pg(f"pgvector funnel 48→{full}, shortlist 200, halfvec", corpus, 48, 200, folder,
                          store="float16"))
        configs.append(pg(f"pgvector binary_quantize {full} + rerank, shortlist 200", corpus, full, 200, folder,
                          quantize="binary"))
        configs.append(pg("pgvector binary_quantize 96 + rerank, shortlist 500", corpus, 96, 500, folder,
                          quantize="binary"))

        rows = []
        for c in configs:
            ids = search(c.index, queries, c.shortlist)
            lat = latencies(c, queries[:200])
            one = throughput(c, queries, 1)
            two = throughput(c, queries, 2)
            m = bench_search.mrr(ids, relevant)
            rows.append({"name": c.name, "mrr": m, "kept": m / exact_mrr, "recall": bench_search.recall(ids, exact),
                         "qps1": one, "qps2": two, "p50": statistics.median(lat) * 1e3,
                         "p95": float(np.percentile(lat, 95)) * 1e3, "mb": c.index_mb, "build": c.build_s,
                         "engine": c.engine, "index_used": "Index Scan" in c.extra.get("explain", "Index Scan")})
            print(f"  measured {c.name}", flush=True)
        memory = next((c.index.server_memory() for c in configs if c.engine == "pgvector"), None)
        for c in configs:
            if c.engine == "pgvector" and not c.index.conn.closed:
                c.index.close()
                c.reopen.close()
                _drop(c.index)
    print()
    print("| configuration | MRR@10 | kept | recall@10 vs exact | q/s, 1 conn | q/s, 2 conns | p50 ms | p95 ms | "
          "index MB | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']}{'' if r['index_used'] else ' (planner: no index)'} | {r['mrr']:.4f} | {r['kept']:.1%} | "
              f"{r['recall']:.3f} | {r['qps1']:,.0f} | {r['qps2']:,.0f} | {r['p50']:.2f} | {r['p95']:.2f} | "
              f"{r['mb']:.1f} | {r['build']:.1f} |")
    print(f"\nembedded server memory after the searches (unique set size of its processes): "
          f"{(memory or 0) / 2**20:,.0f} MiB")
    judge(rows, full)


def _with_ef(index, ef):
    """The same table searched with another ef_search (a shallow copy with its own setting)."""
    import copy

    clone = copy.copy(index)
    clone.params = index.params.model_copy(update={"ef_search": ef})
    clone._session = None
    return clone


def _drop(index) -> None:
    try:
        from mrl_pgvector.server import Server

        server = Server(index.server.dsn, index.server.data_dir)
        with server.connect(autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{index.sql.table}"')
    except Exception as exc:
        print(f"could not drop {index.sql.table}: {exc}")


def judge(rows: list[dict], full: int) -> None:
    small = [r for r in rows if r["name"].startswith("pgvector funnel 48") and "halfvec" not in r["name"]]
    best = max(small, key=lambda r: r["kept"])
    print(f"\nTarget (a): a pgvector 48-dim funnel with a shortlist ≤ 500 keeps ≥ 99% of exact {full}-dim MRR@10: "
          f"best {best['name']}: {best['kept']:.1%} → {'met' if best['kept'] >= 0.99 else 'MISSED'}")
    hnsw = [r for r in rows if r["name"].startswith(f"pgvector hnsw {full}")]
    funnel = [r for r in rows if r["name"].startswith(f"pgvector funnel 48→{full}") and "halfvec" not in r["name"]]
    good_hnsw = [r for r in hnsw if r["recall"] >= 0.95]
    good_funnel = [r for r in funnel if r["recall"] >= 0.95]
    if not good_hnsw or not good_funnel:
        print(f"Target (b): at recall@10 ≥ 0.95 — full-width HNSW reaches it: {bool(good_hnsw)} (best "
              f"{max(r['recall'] for r in hnsw):.3f}); the 48→{full} funnel reaches it: {bool(good_funnel)} (best "
              f"{max(r['recall'] for r in funnel):.3f}); no equal-recall comparison → MISSED")
        return
    h = max(good_hnsw, key=lambda r: r["qps1"])
    f = max(good_funnel, key=lambda r: r["qps1"])
    speed, size = f["qps1"] / h["qps1"], h["mb"] / f["mb"]
    print(f"Target (b): at recall@10 ≥ 0.95, fastest of each: {f['name']} ({f['recall']:.3f}, {f['qps1']:,.0f} q/s, "
          f"{f['mb']:.1f} MB) vs {h['name']} ({h['recall']:.3f}, {h['qps1']:,.0f} q/s, {h['mb']:.1f} MB): "
          f"{speed:.2f}× the queries/s (target ≥ 2×: {'met' if speed >= 2 else 'MISSED'}), index {size:.2f}× smaller "
          f"(target ≥ 4×: {'met' if size >= 4 else 'MISSED'})")


if __name__ == "__main__":
    main()
