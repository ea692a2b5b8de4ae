"""``mrl-run embed`` and ``mrl-run index`` from shards: throughput, memory, resume (issue #19).

(a) Throughput on real text: the first 50,000 packages of Debian 12's catalogue
(../shared/data: each package's synopsis and the first paragraph of its description) embedded by the packaged
all-MiniLM-L6-v2, one after another in one run, each in a fresh process:

  - ``plain``: a script that reads the JSON lines and calls ``model.encode`` on all of them
    (sentence-transformers' own length-sorted batches), then saves the array: the floor;
  - ``embed``: ``mrl-run embed`` in one process (read pass, checks, shards, over-length check);
  - ``embed --processes 2``: sentence-transformers' multi-process pool;
  - ``embed --executor ray``: a local Ray instance, 2 model actors of 1 CPU each;
  - ``embed --executor spark``: a local Spark (``local[2]``, plugins/mrl-spark), 2 one-thread tasks.

  Documents/s from the wall time of the whole command (model load included in every one), and
  each one's ratio to ``plain``; start-up: the wall time of the same command on 16 documents
  (interpreter, model load, the engine's start and stop); whether each folder equals the
  in-process one byte for byte.

(b) Memory against corpus size: peak RSS (the process and everything it waited for) of
``mrl-run embed`` at 100,000 and 1,000,000 documents, and of ``mrl-run index EMBEDDINGS --dim
48`` at 100,000 and 1,000,000 vectors of 384 dims. The embed runs the test kit's tiny model (32
dims, one layer: the pipeline's memory, not the model's, is what is measured; 1M documents through
MiniLM would take 2 hours here) over the Debian texts cycled to the size, each numbered; the index
step reads synthetic vectors (random unit vectors: memory only, said so) from shards written in
the embed layout. Beside it, the index built the way it was before this issue (every full vector
held in memory until the end), the same vectors through the same ``FunnelIndex``.

(c) Resume: ``mrl-run embed`` of the first 10,000 documents of (a) killed when half its shards
are done, resumed, and compared byte for byte with an uninterrupted run.

    .venv/bin/python benchmarks/bench_embed.py [--parts abc] [--docs 50000] [--no-embed]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT.parent / "shared" / "data" / "debian-bookworm-Translation-en.xz"
PY = sys.executable
MRL = [PY, "-m", "mrl_plugins.cli"]


def debian_texts(n: int) -> list[str]:
    from mrl_plugins.builtin.debian import read_catalogue

    packages = read_catalogue(CATALOGUE)
    texts = [f"{p.synopsis}. {p.document}".strip() for p in packages]
    return texts[:n]


def write_corpus(path: Path, texts: list[str], n: int | None = None) -> Path:
    """JSON lines of ``n`` documents (the texts cycled and numbered when ``n`` is larger)."""
    n = n or len(texts)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            text = texts[i % len(texts)] if n <= len(texts) else f"{i}: {texts[i % len(texts)]}"
            fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return path


def peak(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``command`` run to the end in a fresh wrapper process
    (``RUSAGE_CHILDREN``: the largest process it waited for, the command's own children included)."""
    wrapper = ("import resource, subprocess, sys, time, json; t = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
               "w = time.perf_counter() - t; "
               "sys.stderr.write(r.stderr[-2000:] if r.returncode else ''); "
               "print(json.dumps([r.returncode, w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    out = subprocess.run([PY, "-c", wrapper, *command], capture_output=True, text=True, env=env)
    code, wall, rss_kib = json.loads(out.stdout.strip().splitlines()[-1])
    if code:
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{out.stderr}")
    return wall, rss_kib / 1024


PLAIN = """
import json, sys, numpy as np
from mrl_plugins.models import resolve_model, load_model
from mrl_plugins.evaluation import encode_texts
model = load_model(resolve_model(sys.argv[1]), device="cpu")
texts = [json.loads(line)["text"] for line in open(sys.argv[2], encoding="utf-8")]
np.save(sys.argv[3], encode_texts(model, texts, role="document", batch_size=256))
"""


def part_a(tmp: Path, n: int) -> None:
    corpus = write_corpus(tmp / "debian.jsonl", debian_texts(n))
    model = "all-MiniLM-L6-v2"
    runs = [
        ("plain model.encode, one process", [PY, "-c", PLAIN, model, str(corpus), str(tmp / "plain.npy")]),
        ("mrl-run embed, one process", [*MRL, "embed", model, str(corpus), "-o", str(tmp / "a-local")]),
        ("mrl-run embed --processes 2", [*MRL, "embed", model, str(corpus), "-o", str(tmp / "a-pool"),
                                         "--processes", "2"]),
        ("mrl-run embed --executor ray (2 workers)", [*MRL, "embed", model, str(corpus), "-o", str(tmp / "a-ray"),
                                                      "--executor", "ray", "--executor-param", "local_cpus=2",
                                                      "--executor-param", "workers=2"]),
        ("mrl-run embed --executor spark (local[2])", [*MRL, "embed", model, str(corpus), "-o",
                                                       str(tmp / "a-spark"), "--executor", "spark",
                                                       "--executor-param", "local_cores=2"]),
    ]
    print(f"(a) throughput: {n:,} Debian package descriptions, {model}, {os.cpu_count()} CPU cores")
    print(f"{'path':<44} {'wall s':>8} {'docs/s':>8} {'× plain':>8} {'peak RSS MiB':>13} {'start-up s':>11}")
    base = None
    small = write_corpus(tmp / "small.jsonl", debian_texts(16))
    for name, command in runs:
        wall, rss = peak(command)
        base = base or wall
        start = [str(small) if part == str(corpus) else part for part in command]
        start = [str(tmp / "start-up.npy") if part.endswith("plain.npy") else part for part in start]
        if "-o" in start:
            start[start.index("-o") + 1] = str(tmp / f"start-up-{len(name)}")
        startup, _ = peak(start)
        shutil.rmtree(tmp / f"start-up-{len(name)}", ignore_errors=True)
        print(f"{name:<44} {wall:>8.1f} {n / wall:>8.1f} {base / wall:>8.2f} {rss:>13.0f} {startup:>11.1f}",
              flush=True)
    plain = np.load(tmp / "plain.npy")
    plain /= np.linalg.norm(plain, axis=1, keepdims=True)
    local = {p.name: p.read_bytes() for p in sorted((tmp / "a-local").iterdir())}
    for folder in ("a-local", "a-pool", "a-ray", "a-spark"):
        manifest = json.loads((tmp / folder / "manifest.json").read_text())
        got = np.concatenate([np.load(tmp / folder / f"shard-{s['shard']:05d}.npy") for s in manifest["shards"]])
        same = {p.name: p.read_bytes() for p in sorted((tmp / folder).iterdir())} == local
        print(f"  {folder}: {manifest['count']:,} vectors, max |difference| to plain {np.abs(got - plain).max():.1e}; "
              f"checks {json.dumps({k: v['count'] for k, v in manifest['checks'].items()})}; "
              f"{'byte-for-byte equal to' if same else 'differs from'} a-local")


def synthetic_embeddings(folder: Path, n: int, dim: int = 384, shard_rows: int = 50_000) -> Path:
    """An embeddings folder in ``mrl-run embed``'s layout holding ``n`` random unit vectors."""
    from mrl_plugins.embed.folder import FORMAT, VERSION, EmbeddingsDir, json_bytes, npy_bytes, write_atomic

    out = EmbeddingsDir(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    plan = {"format": FORMAT, "version": VERSION, "created_by": "bench_embed.py (synthetic)",
            "model": {"name": "synthetic", "probe": [0.0] * 16}, "full_dim": dim, "dtype": "float32",
            "normalised": True, "max_seq_length": 256, "shard_rows": shard_rows,
            "corpus": {"root": "", "format": "jsonl", "text_column": "text", "id_column": None, "encoding": "utf-8",
                       "max_chars": None, "files": []}}
    write_atomic(out.plan_file, json_bytes(plan))
    shards = []
    for number, start in enumerate(range(0, n, shard_rows)):
        rows = min(shard_rows, n - start)
        vectors = rng.standard_normal((rows, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out.vectors(number).write_bytes(npy_bytes(vectors))
        out.texts(number).write_text("".join(json.dumps({"id": str(start + i), "text": f"document {start + i}"}) + "\n"
                                             for i in range(rows)))
        shards.append({"shard": number, "first_row": start, "rows": rows, "texts_sha256": "", "vectors_sha256": ""})
    manifest = {**plan, "count": n, "rows_read": n, "shards": shards, "checks": {}}
    write_atomic(out.manifest_file, json_bytes(manifest))
    return folder


HELD = """
import sys, numpy as np
from pathlib import Path
from mrl_plugins.plugins import load_registry
from mrl_plugins.search.embeddings import EmbeddingsDir
from mrl_plugins.search.index import FunnelIndex
folder = EmbeddingsDir(Path(sys.argv[1]))
manifest = folder.open()
index = FunnelIndex(manifest["full_dim"], 48, load_registry().build("index", "flat"))
for vectors, _ in folder.shards(manifest):
    for start in range(0, len(vectors), 256):
        index.add(np.asarray(vectors[start:start + 256], dtype=np.float32))
index.save(Path(sys.argv[2]))
"""


def part_b(tmp: Path, sizes: tuple[int, ...] = (100_000, 1_000_000), *, embed: bool = True) -> None:
    from mrl_plugins.testkit.models import tiny_model

    model = tiny_model(tmp / "tiny-model")
    texts = debian_texts(60_000) if embed else []
    print("(b) peak RSS against corpus size (embed: the test kit's tiny model over Debian texts cycled and numbered; "
          "index: synthetic 384-dim unit vectors, memory only)")
    print(f"{'step':<58} {'size':>10} {'wall s':>8} {'peak RSS MiB':>13}")
    results: dict[str, dict[int, float]] = {}
    for n in sizes:
        if embed:
            corpus = write_corpus(tmp / f"b-{n}.jsonl", texts, n)
            wall, rss = peak([*MRL, "embed", str(model), str(corpus), "-o", str(tmp / f"b-emb-{n}")])
            results.setdefault("mrl-run embed (tiny model)", {})[n] = rss
            print(f"{'mrl-run embed (tiny model)':<58} {n:>10,} {wall:>8.1f} {rss:>13.0f}", flush=True)
            corpus.unlink()
            shutil.rmtree(tmp / f"b-emb-{n}")
        emb = synthetic_embeddings(tmp / f"b-syn-{n}", n)
        for name, command in (
            ("mrl-run index EMBEDDINGS --dim 48 (flat, streamed)",
             [*MRL, "index", str(emb), "-o", str(tmp / f"b-idx-{n}"), "--dim", "48"]),
            ("mrl-run index EMBEDDINGS --dim 48 --index binary",
             [*MRL, "index", str(emb), "-o", str(tmp / f"b-bin-{n}"), "--dim", "48", "--index", "binary"]),
            ("the same index, full vectors held in memory (before #19)",
             [PY, "-c", HELD, str(emb), str(tmp / f"b-held-{n}")]),
        ):
            wall, rss = peak(command)
            results.setdefault(name, {})[n] = rss
            print(f"{name:<58} {n:>10,} {wall:>8.1f} {rss:>13.0f}", flush=True)
        for folder in (emb, tmp / f"b-idx-{n}", tmp / f"b-bin-{n}", tmp / f"b-held-{n}"):
            shutil.rmtree(folder)
    small, large = sizes
    for name, by in results.items():
        print(f"  {name}: {large:,} / {small:,} peak = {by[large] / by[small]:.2f}×")


def part_c(tmp: Path, n: int = 10_000) -> None:
    corpus = write_corpus(tmp / "c.jsonl", debian_texts(n))
    common = [str(corpus), "--shard-rows", str(n // 10)]
    out = tmp / "c-killed"
    proc = subprocess.Popen([*MRL, "embed", "all-MiniLM-L6-v2", *common, "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "shard-00004.json").exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("shard-*.json")))
    t = time.perf_counter()
    subprocess.run([*MRL, "embed", "all-MiniLM-L6-v2", *common, "-o", str(out), "--resume"], check=True,
                   capture_output=True)
    resumed = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([*MRL, "embed", "all-MiniLM-L6-v2", *common, "-o", str(tmp / "c-whole")], check=True,
                   capture_output=True)
    whole = time.perf_counter() - t
    a = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    b = {p.name: p.read_bytes() for p in sorted((tmp / "c-whole").iterdir())}
    print(f"(c) resume: {n:,} documents in 10 shards, killed with {done} done; the resume took {resumed:.0f} s, "
          f"an uninterrupted run "
          f"{whole:.0f} s; the two folders are {'byte-for-byte equal' if a == b else 'DIFFERENT'} ({len(a)} files)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="abc")
    parser.add_argument("--docs", type=int, default=50_000, help="(a)'s corpus size")
    parser.add_argument("--sizes", default="100000,1000000", help="(b)'s two corpus sizes")
    parser.add_argument("--resume-docs", type=int, default=10_000, help="(c)'s corpus size")
    parser.add_argument("--no-embed", action="store_true",
                        help="(b): the index steps only (the 1M embed takes ~16 min)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT / "runs") as tmp:
        if "a" in args.parts:
            part_a(Path(tmp), args.docs)
        if "b" in args.parts:
            part_b(Path(tmp), tuple(int(x) for x in args.sizes.split(",")), embed=not args.no_embed)
        if "c" in args.parts:
            part_c(Path(tmp), args.resume_docs)


if __name__ == "__main__":
    main()
