"""MRL versus MRL with a PCA-rotation warm start versus post-hoc PCA, on the quickstart data.

Runs recipes/warm-start.toml (both trainings and all comparisons in one process, same seed and
data), then prints MRR@10 / nDCG@10 per dimension and which method wins at each. Usage:

    .venv/bin/python benchmarks/bench_warm_start.py [--output runs/bench-warm-start]
"""

from __future__ import annotations

import argparse
import json
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

    out = ROOT / args.output
    code = mrl_run([str(ROOT / "recipes" / "warm-start.toml"), "--set", f"output_dir='{out}'", "--overwrite", "-q"])
    if code:
        sys.exit(code)
    results = json.loads((out / "results.json").read_text())
    models = list(results["models"].values())
    for metric in ("mrr@10", "ndcg@10"):
        print(f"\n{metric} | " + " | ".join(m["label"] for m in models) + " | best")
        print("---|" + "---|" * (len(models) + 1))
        for d in results["dims"]:
            values = [m["metrics"][str(d)][metric] for m in models]
            best = models[values.index(max(values))]["label"]
            print(f"{d} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {best}")
    print(f"\nfull results: {out}/report.md")


if __name__ == "__main__":
    main()
