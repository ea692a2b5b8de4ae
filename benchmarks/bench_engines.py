"""The funnel in PostgreSQL + pgvector beside FAISS, everything side by side in one run.

(a) Quality on real data: the MRL model the quickstart recipe trains embeds every usable package of Debian
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

(b) The largest real set: every distinct paragraph (≥ 40 characters) of every Debian 12 package
description and every distinct synopsis (the queries' own left out), embedded once by the same
model and cached beside it; the same 500 queries, recall@10 against exact 384-dim search (no
relevance judgements at this size), the same measures, wider sweeps.

(c) Speed at scale on synthetic vectors (speed only, said so): ``--synthetic`` vectors drawn from
a Gaussian with the real embeddings' mean and covariance, re-normalised (``bench_search.py``'s);
recall on them is not a quality measure.

    .venv/bin/python benchmarks/bench_engines.py [--run runs/quickstart-…] [--queries 500] [--parts abc]
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
    from mrl_plugins.search.index import funnel_index

    backend = load_registry().build("index", "pgvector", params)
    t0 = time.perf_counter()
    index = funnel_index(backend, corpus.shape[1], dim, store_dtype=store)
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
    from mrl_plugins.search.index import funnel_index

    backend = load_registry().build("index", backend_name, params)
    t0 = time.perf_counter()
    index = funnel_index(backend, corpus.shape[1], dim)
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


def pg_suite(corpus: np.ndarray, folder: Path, *, funnels=((48, (100, 200, 500)), (96, (100, 200, 500))),
             efs=(40, 100, 200, 400), extras: bool = True) -> list[Config]:
    """pgvector's settings: full-width HNSW with an ef_search sweep (one index), the subvector funnels
    with a shortlist sweep (one index per width), halfvec and binary_quantize + rerank."""
    full = corpus.shape[1]
    configs: list[Config] = []
    base = pg(f"pgvector hnsw {full}, ef_search {efs[0]}", corpus, full, None, folder, ef_search=efs[0])
    configs.append(base)
    for ef in efs[1:]:  # the same table and index, searched with another ef_search
        configs.append(Config(f"pgvector hnsw {full}, ef_search {ef}", "pgvector", _with_ef(base.index, ef), None,
                              base.build_s, base.index_mb, _with_ef(base.reopen, ef), base.extra))
    for d, shortlists in funnels:
        first = pg(f"pgvector funnel {d}→{full}, shortlist {shortlists[0]}", corpus, d, shortlists[0], folder)
        configs.append(first)
        for n in shortlists[1:]:
            configs.append(Config(f"pgvector funnel {d}→{full}, shortlist {n}", "pgvector", first.index, n,
                                  first.build_s, first.index_mb, first.reopen, first.extra))
    if extras:
        configs.append(pg(f"pgvector funnel 48→{full}, shortlist 200, halfvec", corpus, 48, 200, folder,
                          store="float16"))
        configs.append(pg(f"pgvector binary_quantize {full} + rerank, shortlist 200", corpus, full, 200, folder,
                          quantize="binary"))
        configs.append(pg("pgvector binary_quantize 96 + rerank, shortlist 500", corpus, 96, 500, folder,
                          quantize="binary"))
    return configs


def faiss_suite(corpus: np.ndarray, shortlists=(100, 200, 500), widths=(48, 96)) -> list[Config]:
    full = corpus.shape[1]
    configs = [faiss_funnel(f"FAISS exact {full} (flat)", corpus, full, None)]
    for d in widths:
        for n in shortlists:
            configs.append(faiss_funnel(f"FAISS flat funnel {d}→{full}, shortlist {n}", corpus, d, n))
    configs.append(faiss_funnel(f"FAISS hnsw funnel 48→{full}, shortlist 200", corpus, 48, 200, "hnsw"))
    return configs


def run_suite(title: str, corpus: np.ndarray, queries: np.ndarray, relevant: list[int] | None, suites,
              latency_queries: int = 200) -> list[dict]:
    """Build every configuration, measure it, print the table and the targets; drop the tables."""
    full = corpus.shape[1]
    exact = exact_top(queries, corpus)
    exact_mrr = bench_search.mrr(exact, relevant) if relevant is not None else None
    print(f"\n{title}" + (f"; exact {full}-dim MRR@10 {exact_mrr:.4f}" if exact_mrr else ""), flush=True)
    configs: list[Config] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for make in suites:
                configs += make(Path(tmp))
            rows = [measure(c, queries, exact, relevant, exact_mrr, latency_queries) for c in configs]
            memory = next((c.index.server_memory() for c in configs if c.engine == "pgvector"), None)
        finally:  # the committed tables are dropped, whatever happened
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
        quality = f"{r['mrr']:.4f} | {r['kept']:.1%}" if r["mrr"] is not None else "- | -"
        print(f"| {r['name']}{'' if r['index_used'] else ' (planner: no index)'} | {quality} | "
              f"{r['recall']:.3f} | {r['qps1']:,.0f} | {r['qps2']:,.0f} | {r['p50']:.2f} | {r['p95']:.2f} | "
              f"{r['mb']:.1f} | {r['build']:.1f} |")
    print(f"\nembedded server memory after the searches (unique set size of its processes): "
          f"{(memory or 0) / 2**20:,.0f} MiB", flush=True)
    return rows


def measure(c: Config, queries: np.ndarray, exact: np.ndarray, relevant: list[int] | None,
            exact_mrr: float | None, latency_queries: int) -> dict:
    ids = search(c.index, queries, c.shortlist)
    lat = latencies(c, queries[:latency_queries])
    one, two = throughput(c, queries, 1), throughput(c, queries, 2)
    m = bench_search.mrr(ids, relevant) if relevant is not None else None
    print(f"  measured {c.name}", flush=True)
    return {"name": c.name, "mrr": m, "kept": m / exact_mrr if m is not None and exact_mrr else None,
            "recall": bench_search.recall(ids, exact), "qps1": one, "qps2": two,
            "p50": statistics.median(lat) * 1e3, "p95": float(np.percentile(lat, 95)) * 1e3,
            "mb": c.index_mb, "build": c.build_s, "engine": c.engine,
            "index_used": "Index Scan" in c.extra.get("explain", "Index Scan")}


def exact_top(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    out = np.empty((len(queries), K), np.int64)
    for s in range(0, len(queries), 100):
        scores = queries[s : s + 100] @ corpus.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        out[s : s + 100] = np.take_along_axis(top, order, 1)
    return out


def large_real_corpus(model_dir: Path, query_texts: list[str]) -> np.ndarray:
    """Every distinct paragraph (≥ 40 characters) of every Debian 12 package description and every
    distinct synopsis, the queries' own synopses left out: the largest real text this machine
    embeds in reasonable time. Embedded once by the quickstart model, cached beside it."""
    from mrl_plugins.builtin.debian import read_catalogue
    from mrl_plugins.evaluation.encode import encode_texts, normalise
    from mrl_plugins.models import ResolvedModel, load_model

    packages = read_catalogue(bench_search.CATALOGUE)
    skip = set(query_texts)
    texts = sorted({x for p in packages for x in p.paragraphs if len(x) >= 40}
                   | {p.synopsis for p in packages if p.synopsis and p.synopsis not in skip})
    cache = model_dir.parent / f"bench-engines-corpus-{len(texts)}.npy"
    if cache.is_file() and cache.stat().st_mtime > (model_dir / "model.safetensors").stat().st_mtime:
        return np.load(cache)
    print(f"encoding {len(texts):,} real texts (cached in {cache})", flush=True)
    t0 = time.perf_counter()
    model = load_model(ResolvedModel("mrl", str(model_dir), "local path"), device="cpu", max_seq_length=128)
    order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
    vectors = normalise(encode_texts(model, [texts[i] for i in order], role="document", batch_size=128,
                                     progress=True))
    corpus = np.empty_like(vectors)
    corpus[order] = vectors
    np.save(cache, corpus)
    print(f"encoded in {time.perf_counter() - t0:.0f} s", flush=True)
    return corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="A finished quickstart run (default: trained first).")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="ab", help="a: quality on the catalogue; b: the largest real set; "
                                                      "c: synthetic vectors (speed only). Default: ab.")
    parser.add_argument("--synthetic", type=int, default=1_000_000, help="Vectors in part c.")
    args = parser.parse_args()
    model_dir = bench_search.quickstart_model(args.run)
    cache = model_dir.parent / f"bench-search-embeddings-1000-{args.seed}.npz"
    if not cache.is_file():
        bench_search.part_a(model_dir, 1000, args.seed)  # encodes and caches the embeddings
    query_texts, _, relevant = bench_search.debian_task(1000, args.seed)
    saved = np.load(cache)
    corpus, queries = saved["corpus"], saved["queries"][: args.queries]
    relevant = relevant[: args.queries]
    full = corpus.shape[1]
    if "a" in args.parts:
        rows = run_suite(f"(a) {len(queries)} held-out synopses against {len(corpus):,} package descriptions, model "
                         f"{model_dir}", corpus, queries, relevant,
                         [lambda _: faiss_suite(corpus), lambda folder: pg_suite(corpus, folder)])
        judge_a(rows, full)
    if "b" in args.parts:
        big = large_real_corpus(model_dir, query_texts)
        rows = run_suite(f"(b) the same {len(queries)} synopses against {len(big):,} real texts (every distinct "
                         "description paragraph and synopsis of Debian 12); recall against exact search", big,
                         queries, None,
                         [lambda _: faiss_suite(big, (200, 500, 1000), (48,)),
                          lambda folder: pg_suite(big, folder, funnels=((48, (100, 200, 500, 1000)),
                                                                        (96, (100, 200, 500))),
                                                  efs=(40, 80, 160, 320), extras=True)])
        judge_b(rows, full, "(b)")
    if "c" in args.parts:
        vectors, fake_queries = bench_search.gaussian_like(corpus, args.synthetic, args.queries, args.seed)
        rows = run_suite(f"(c) {args.synthetic:,} synthetic vectors (N(mean, covariance) of the real corpus "
                         "embeddings, re-normalised): speed only", vectors, fake_queries, None,
                         [lambda _: faiss_suite(vectors, (200,), (48,)),
                          lambda folder: pg_suite(vectors, folder, funnels=((48, (100, 200, 500)),),
                                                  efs=(40, 100, 200), extras=False)], latency_queries=100)
        judge_b(rows, full, "(c)")


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


def judge_a(rows: list[dict], full: int) -> None:
    small = [r for r in rows if r["name"].startswith("pgvector funnel 48") and "halfvec" not in r["name"]]
    best = max(small, key=lambda r: r["kept"])
    print(f"\nTarget (a): a pgvector 48-dim funnel with a shortlist ≤ 500 keeps ≥ 99% of exact {full}-dim MRR@10: "
          f"best {best['name']}: {best['kept']:.1%} → {'met' if best['kept'] >= 0.99 else 'MISSED'}")


def judge_b(rows: list[dict], full: int, part: str) -> None:
    hnsw = [r for r in rows if r["name"].startswith(f"pgvector hnsw {full}")]
    for width in (48, 96):
        funnel = [r for r in rows if r["name"].startswith(f"pgvector funnel {width}→{full}")
                  and "halfvec" not in r["name"]]
        if not funnel:
            continue
        good_hnsw = [r for r in hnsw if r["recall"] >= 0.95]
        good_funnel = [r for r in funnel if r["recall"] >= 0.95]
        if not good_hnsw or not good_funnel:
            print(f"Target {part}, {width}→{full}: recall@10 ≥ 0.95 reached by full-width HNSW: {bool(good_hnsw)} "
                  f"(best {max(r['recall'] for r in hnsw):.3f}), by the funnel: {bool(good_funnel)} (best "
                  f"{max(r['recall'] for r in funnel):.3f}); no equal-recall comparison → MISSED")
            continue
        h = max(good_hnsw, key=lambda r: r["qps1"])
        f = max(good_funnel, key=lambda r: r["qps1"])
        speed, size = f["qps1"] / h["qps1"], h["mb"] / f["mb"]
        print(f"Target {part}, {width}→{full}, at recall@10 ≥ 0.95, fastest of each: {f['name']} ({f['recall']:.3f}, "
              f"{f['qps1']:,.0f} q/s, {f['mb']:.1f} MB) vs {h['name']} ({h['recall']:.3f}, {h['qps1']:,.0f} q/s, "
              f"{h['mb']:.1f} MB): {speed:.2f}× the queries/s (≥ 2×: {'met' if speed >= 2 else 'MISSED'}), "
              f"index {size:.2f}× smaller (≥ 4×: {'met' if size >= 4 else 'MISSED'})")


if __name__ == "__main__":
    main()
