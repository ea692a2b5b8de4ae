"""Encode-once evaluation versus sentence-transformers' InformationRetrievalEvaluator per dimension.

Both score the same model on the same Debian evaluation set at the same dimensions, in the same
process, interleaved (A, B, A, B, …) so that machine noise hits both alike. Reports the time
ratio and the largest metric difference. Usage:

    .venv/bin/python benchmarks/bench_evaluation.py [--queries 300] [--corpus 1500] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--corpus", type=int, default=1500)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 192, 96, 48])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    except ImportError:
        from sentence_transformers.evaluation import InformationRetrievalEvaluator

    from mrl_plugins.builtin.debian import DebianSource
    from mrl_plugins.data.types import DataRequest
    from mrl_plugins.evaluation.retrieval import evaluate
    from mrl_plugins.models import resolve_model

    torch.set_num_threads(torch.get_num_threads())
    source = DebianSource(DebianSource.Params(
        path="data/debian-sample-Translation-en.xz", eval_queries=args.queries, corpus_size=args.corpus, train_pairs=1,
    ))
    ir = source.load(DataRequest("pairs", seed=0, recipe_dir=ROOT)).eval
    model = SentenceTransformer(resolve_model("sentence-transformers/all-MiniLM-L6-v2").location, device="cpu")
    model.max_seq_length = 128

    def ours():
        return evaluate(model, ir, args.dims)

    def theirs():
        out = {}
        for d in args.dims:
            ev = InformationRetrievalEvaluator(
                ir.queries, ir.corpus, ir.relevant, truncate_dim=d, write_csv=False, batch_size=64,
                mrr_at_k=[10], ndcg_at_k=[10], precision_recall_at_k=[10], accuracy_at_k=[10], map_at_k=[10],
            )
            r = ev(model)
            out[d] = {m: r[f"cosine_{m}"] for m in ("mrr@10", "recall@10", "ndcg@10")}
        return out

    times = {"ours": [], "theirs": []}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            t0 = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "ours":
                a = result
            else:
                b = result
    diff = max(abs(a[d][m] - b[d][m]) for d in args.dims for m in a[d])
    ratios = [t / o for o, t in zip(times["ours"], times["theirs"])]
    print(f"eval set: {len(ir.queries)} queries x {len(ir.corpus)} documents, dims {args.dims}, "
          f"all-MiniLM-L6-v2, CPU threads {torch.get_num_threads()}")
    print(f"| run | encode-once (s) | InformationRetrievalEvaluator x{len(args.dims)} (s) | ratio |")
    print("|---|---|---|---|")
    for i, (o, t) in enumerate(zip(times["ours"], times["theirs"]), 1):
        print(f"| {i} | {o:.1f} | {t:.1f} | {t / o:.2f}x |")
    print(f"median ratio: {statistics.median(ratios):.2f}x; largest metric difference: {diff:.2e}")


if __name__ == "__main__":
    main()
