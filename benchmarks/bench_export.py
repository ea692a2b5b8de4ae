"""What an ONNX export keeps at each width, and what it buys on a CPU.

The MRL model the quickstart recipe trains (``--run`` a finished quickstart run, or the recipe is
run first; or ``--model`` any saved model) is exported with ``mrl-run export`` three times: ONNX
float32, ONNX int8 (onnxruntime's dynamic quantisation) and OpenVINO int8 (NNCF's static
quantisation, calibrated on 300 real descriptions that are neither queries' documents nor in the
corpus; run with OpenVINO's default precision hint, as a user would), at full width, plus the
float32 OpenVINO IR run with that default hint (bfloat16 on a CPU that has it); each width
is then the graph's full-width output truncated and re-normalised, which is what ``--dim`` puts
inside the graph (the tests check the two agree).

Quality: 500 synopses of Debian packages outside the quickstart's sample (never trained on) are
the queries, each with its own description as the one relevant document, searched among a corpus
of those 500 documents plus ``--distractors`` other real descriptions of Debian 12's catalogue.
MRR@10 per width for torch float32 and each export, with 95% bootstrap intervals and
a paired sign-flip test against torch float32 over the same queries.

Speed: documents per second on the same ``--speed-docs`` corpus documents, one process, batches
of 64, each engine timed ``--rounds`` times in turn (interleaved: the machine is noisy), best round
kept. Torch, onnxruntime and OpenVINO all use this machine's cores (their own thread pools). The
CPU's int8 and bfloat16 instructions (VNNI, AMX, AVX-512 BF16) decide what int8 buys: they are
printed with the results.

    .venv/bin/python benchmarks/bench_export.py [--run runs/quickstart-… | --model DIR] [--distractors 4500]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search import debian_task, quickstart_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="A finished quickstart run (default: train one into runs/).")
    parser.add_argument("--model", help="Any saved model folder instead of the quickstart's.")
    parser.add_argument("--task", choices=["debian", "run"], default="debian",
                        help="debian: the Debian synopsis task below; run: the --run's own held-out evaluation set "
                        "(e.g. a manpages run's), its model, and 300 Debian descriptions outside it to calibrate on.")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--distractors", type=int, default=4500)
    parser.add_argument("--speed-docs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from mrl_plugins.evaluation.encode import normalise
    from mrl_plugins.evaluation.retrieval import score_dims
    from mrl_plugins.evidence.stats import bootstrap_interval, paired_p_value
    from mrl_plugins.export.onnx import export
    from mrl_plugins.export.runtimes import OnnxEmbedder, OpenVinoEmbedder

    model_dir = Path(args.model) if args.model else quickstart_model(args.run)
    queries, documents, relevant_rows = debian_task(args.queries, args.seed)
    others = sorted(set(range(len(documents))) - set(relevant_rows))
    extra = random.Random(args.seed).sample(others, args.distractors)
    corpus_rows = relevant_rows + extra
    calibration = [documents[i] for i in sorted(set(others) - set(extra))[:300]]
    corpus = [documents[i] for i in corpus_rows]
    relevant = [{i} for i in range(len(queries))]  # query i's document is corpus row i
    if args.task == "run":
        from mrl_plugins.evaluation.encode import index_ir_set
        from mrl_plugins.evidence.saved import load_evaluation

        if not args.run:
            parser.error("--task run needs --run RUN_DIR")
        ir = load_evaluation(Path(args.run)).ir
        query_ids, corpus_ids, relevant = index_ir_set(ir)
        queries, corpus = [ir.queries[q] for q in query_ids], [ir.corpus[c] for c in corpus_ids]
        seen = set(corpus) | set(queries)
        calibration = [d for d in documents if d not in seen][:300]

    model = SentenceTransformer(str(model_dir), device="cpu")
    dims = [384, 192, 96, 48]
    with tempfile.TemporaryDirectory() as tmp:
        fp32_dir, int8_dir, ov_dir = Path(tmp) / "fp32", Path(tmp) / "int8", Path(tmp) / "ov"
        export(model_dir, fp32_dir)
        record = export(model_dir, int8_dir, quantize="int8")
        ov_record = export(model_dir, ov_dir, fmt="openvino", quantize="int8", calibration=calibration)
        export(model_dir, Path(tmp) / "ov32", fmt="openvino")
        default_hint = OpenVinoEmbedder(Path(tmp) / "ov32" / ov_record["graph"], model, float32=False)
        engines = {
            "torch fp32": lambda texts: model.encode(texts, batch_size=64, normalize_embeddings=True),
            "ONNX fp32": OnnxEmbedder(fp32_dir / "model.onnx", model),
            "ONNX int8": OnnxEmbedder(int8_dir / "model.onnx", model),
            "OpenVINO int8": OpenVinoEmbedder(ov_dir / ov_record["graph"], model, float32=False),
            "OpenVINO fp32 IR, default hint": default_hint,
        }
        speed_docs = corpus[: args.speed_docs]
        best = {name: 0.0 for name in engines}
        for _ in range(args.rounds):  # speed first, interleaved, before the long quality encodes
            for name, embed in engines.items():
                start = time.perf_counter()
                embed(speed_docs)
                best[name] = max(best[name], len(speed_docs) / (time.perf_counter() - start))
        print("docs/s: " + ", ".join(f"{name} {value:.1f}" for name, value in best.items()), flush=True)
        scores, largest, largest_ov = {}, 0.0, 0.0
        for name, embed in engines.items():
            q, c = normalise(embed(queries)), normalise(embed(corpus))
            scores[name] = score_dims(q, c, relevant, dims, k=10, corpus_chunk=4096)
            if name in ("ONNX fp32", "OpenVINO fp32 IR, default hint"):
                gap = float(np.abs(c[:200] - normalise(engines["torch fp32"](corpus[:200]))).max())
                largest, largest_ov = (gap, largest_ov) if name == "ONNX fp32" else (largest, gap)

    import torch

    what = "real Debian descriptions" if args.task == "debian" else f"documents of {args.run}'s held-out evaluation set"
    print(f"model {model_dir}; {len(queries)} queries, corpus {len(corpus)} {what}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; int8 mean cosine to fp32 on the export's "
          f"probe sentences: ONNX {record['mean_cosine_int8_to_fp32']:.4f}, OpenVINO "
          f"{ov_record['mean_cosine_int8_to_fp32']:.4f} (precision hint {ov_record['openvino_precision_hint']})")
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() else set()
    print("CPU int8/bf16 instructions: " + (", ".join(sorted(f for f in flags if "vnni" in f or f.startswith("amx")
                                                               or f == "avx512_bf16")) or "none of VNNI, AMX, BF16"))
    print(f"max |difference| from torch fp32 over 200 corpus vectors: ONNX fp32 {largest:.2e}; the float32 OpenVINO IR "
          f"run with OpenVINO's default precision hint ({default_hint.precision}) {largest_ov:.2e}\n")
    header = f"{'engine':<31}" + "".join(f"{'MRR@10 at ' + str(d):>34}" for d in dims) + f"{'docs/s':>10}{'× torch':>9}"
    print(header)
    reference = scores["torch fp32"]
    for name, by_dim in scores.items():
        cells = []
        for d in dims:
            pq = by_dim.per_query[d]["mrr@10"]
            low, high = bootstrap_interval(pq, seed=args.seed)
            cell = f"{np.mean(pq):.4f} [{low:.3f}, {high:.3f}]"
            if name != "torch fp32":
                delta = np.mean(pq) - np.mean(reference.per_query[d]["mrr@10"])
                p = paired_p_value(pq, reference.per_query[d]["mrr@10"], seed=args.seed)
                cell += f" {delta:+.4f}{'*' if p < 0.05 else '≈'}"
            cells.append(f"{cell:>34}")
        print(f"{name:<31}" + "".join(cells) + f"{best[name]:>10.1f}{best[name] / best['torch fp32']:>9.2f}")
    print("\n* significant (paired sign-flip test, p < 0.05) against torch fp32 at the same width; ≈ not.")


if __name__ == "__main__":
    main()
