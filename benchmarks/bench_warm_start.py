"""MRL versus MRL with a PCA-rotation warm start versus post-hoc PCA, on the quickstart data.

Runs recipes/warm-start.toml (both trainings and all comparisons in one process, same seed and
data), then prints MRR@10 / nDCG@10 per dimension and which method wins at each. Usage:

    .venv/bin/python benchmarks/bench_warm_start.py [--output runs/bench-warm-start]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/bench-warm-start")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mrl_plugins.cli import main as mrl_run
    from mrl_plugins.evaluation.metrics import Metric
    from mrl_plugins.results import RunResults

    out = ROOT / args.output
    code = mrl_run([str(ROOT / "recipes" / "warm-start.toml"), "--set", f"output_dir='{out}'", "--overwrite", "-q"])
    if code:
        sys.exit(code)
    results = RunResults.load(out / "results.json")
    keys = list(results.models)
    for metric in (Metric.MRR, Metric.NDCG):
        print(f"\n{metric.key(results.k)} | " + " | ".join(results.models[k].label for k in keys) + " | best")
        print("---|" + "---|" * (len(keys) + 1))
        for d in results.dims:
            values = [results.value(k, d, metric) for k in keys]
            best = results.models[keys[values.index(max(values))]].label
            print(f"{d} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {best}")
    print(f"\nfull results: {out}/report.md")


if __name__ == "__main__":
    main()
