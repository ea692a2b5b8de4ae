"""``mrl-run search`` from the command line: a cold call with the index's query encoder (ONNX,
no torch) against one that loads the model (issue #37, item 4).

Real data: all-MiniLM-L6-v2 (the packaged weights) indexes the first ``--docs`` descriptions of
Debian 12's catalogue (../shared/data) twice, once with the query encoder (the default) and once
with ``--no-query-encoder``; both build times are printed (what writing and checking the encoder
costs). Then ``--calls`` cold calls of ``mrl-run search INDEX "synopsis" --json``, each a fresh
process, alternating between the two indexes (interleaved, so machine noise falls on both): wall
time per call, median and 90th percentile, their ratio, whether the two return the same top 10,
and whether the encoder's process imported torch. Last, ``--queries FILE`` with ``--many``
synopses in one process with the encoder: milliseconds per query, start-up included.

    .venv/bin/python benchmarks/bench_search_cold.py [--docs 3000] [--calls 10] [--many 500]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT.parent / "shared" / "data" / "debian-bookworm-Translation-en.xz"
MRL = [sys.executable, "-m", "mrl_plugins.cli"]
MODEL = "all-MiniLM-L6-v2"
PROBE = ("import json, sys\nfrom mrl_plugins.cli import main\ncode = main(sys.argv[1:])\n"
         "print(json.dumps({'torch': 'torch' in sys.modules}), file=sys.stderr)\nsys.exit(code)")


def run(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    return seconds, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--many", type=int, default=500)
    args = parser.parse_args()
    from mrl_plugins.builtin.debian import read_catalogue

    packages = read_catalogue(CATALOGUE)
    docs, rest = packages[: args.docs], packages[args.docs :]
    queries = [p.synopsis for p in rest[: max(args.calls, args.many)]]  # packages outside the corpus
    env = {**os.environ, "TQDM_DISABLE": "1"}
    print(f"{len(docs)} documents (Debian descriptions), model {MODEL}, {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpus = folder / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"id": p.name, "text": f"{p.synopsis}. {p.document}".strip()}) + "\n"
                                  for p in docs), encoding="utf-8")
        built = {}
        for name, extra in (("encoder", []), ("model", ["--no-query-encoder"])):
            built[name], _ = run([*MRL, "index", MODEL, str(corpus), "-o", str(folder / name), "--id-column", "id",
                                  "--dim", "384", "--index", "flat", *extra], env=env)
        record = json.loads((folder / "encoder" / "query_encoder" / "query_encoder.json").read_text())
        size = sum(p.stat().st_size for p in (folder / "encoder" / "query_encoder").iterdir()) / 1e6
        print(f"index build: {built['encoder']:.1f} s with the query encoder, {built['model']:.1f} s without "
              f"(+{built['encoder'] - built['model']:.1f} s to write and check it; {size:.0f} MB; largest "
              f"difference from the model on the probe texts {record['max_abs_difference']:.1e})", flush=True)
        times: dict[str, list[float]] = {"encoder": [], "model": []}
        same, torch_seen = 0, set()
        for i in range(args.calls):
            tops = {}
            for name in ("encoder", "model") if i % 2 == 0 else ("model", "encoder"):
                seconds, proc = run([sys.executable, "-c", PROBE, "search", str(folder / name), queries[i], "--json"],
                                    env=env)
                times[name].append(seconds)
                tops[name] = [h["id"] for h in json.loads(proc.stdout)["hits"]]
                if name == "encoder":
                    torch_seen.add(json.loads(proc.stderr.strip().splitlines()[-1])["torch"])
            same += tops["encoder"] == tops["model"]
        print(f"\ncold 'mrl-run search INDEX \"query\"', {args.calls} calls each, interleaved:")
        print(f"{'queries embedded by':<34} {'median s':>9} {'p90 s':>7}")
        labels = {"encoder": "the index's query encoder (ONNX)", "model": "the model (sentence-transformers)"}
        for name, label in labels.items():
            ordered = sorted(times[name])
            p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
            print(f"{label:<34} {statistics.median(ordered):>9.2f} {p90:>7.2f}")
        ratio = statistics.median(times["model"]) / statistics.median(times["encoder"])
        print(f"the encoder's call is {ratio:.1f}x faster (medians); same top 10 on {same} of {args.calls} queries; "
              f"torch imported with the encoder: {sorted(torch_seen)}")
        lines = folder / "queries.txt"
        lines.write_text("\n".join(queries[: args.many]) + "\n", encoding="utf-8")
        seconds, proc = run([*MRL, "search", str(folder / "encoder"), "--queries", str(lines)], env=env)
        answered = len(proc.stdout.splitlines())
        print(f"\n--queries with {answered} queries in one process (the encoder): {seconds:.2f} s in all, "
              f"{1000 * seconds / answered:.1f} ms per query, start-up included")


if __name__ == "__main__":
    main()
