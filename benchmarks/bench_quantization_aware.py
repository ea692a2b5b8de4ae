"""Binary-aware Matryoshka training against plain MRL, where the codes are served (issue #38).

Real data only. Two models trained on the same data with the same seed and settings: the
quickstart's plain MRL model (``--run``, a finished quickstart run; default
runs/bench-search-quickstart, the run whose 30,000-paragraph measurement issue #37 quotes) and the
same recipe with ``[objective] name = "binary-matryoshka"`` (the base loss also on the binary codes
of the first 256/128/96/64/48 dimensions or ``--binary-dims``, ``binary_weight``
``--binary-weight``, default 1;
trained here into ``--work``/binary-run[-wW] unless it is there, about as long as the
quickstart's training). Both are scored, at 384 (full), 256, 128, 96,
64 and 48 dimensions:

- **float truncation**: exact search of the re-normalised prefix;
- **binary codes + int8 rescore**: the project's own funnel (``binary`` backend over the prefix's
  sign bits, Hamming distance, a shortlist of ``--shortlist`` 200, reranked with the full vector
  stored as int8), as ``mrl-run index --dim d --index binary --store int8`` serves it;

on two held-out sets: the quickstart's evaluation set (500 queries, 3,000 documents, the same for
both runs), and the 30,000-paragraph Debian corpus of ``bench_index_tuning.py`` (every paragraph
of 30,000 descriptions; 1,000 synopses of packages outside the quickstart's sample as queries,
each relevant to its package's first paragraph). Per width: MRR@10 as a share of the same model's
exact full-width MRR@10, recall@10 of that exact top 10, and the binary-aware model's MRR@10
against plain MRL's, paired over queries (sign-flip test, p).

With ``--binary-weight 0 --seed S`` the second model is plain MRL again, trained with another
seed: the control that shows how far two trainings of one objective differ, which the paired
test over queries (each model held fixed) does not see.

    .venv/bin/python benchmarks/bench_quantization_aware.py [--run runs/bench-search-quickstart]
        [--binary-weight W] [--binary-dims 128,96] [--seed S]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_growth import embeddings  # noqa: E402
from bench_index_tuning import corpora  # noqa: E402

DEFAULT_RUN = ROOT / "runs" / "bench-search-quickstart"
"""The plain run: the model whose 30k embeddings ``bench_index_tuning.py`` keeps."""
DIMS = [384, 256, 128, 96, 64, 48]
BINARY_DIMS = [256, 128, 96, 64, 48]
K = 10


def train(plain: Path, work: Path, weight: float = 1.0, dims: list[int] = BINARY_DIMS, seed: int | None = None) -> Path:
    """The plain run's recipe, its comparisons left out, with the binary-aware objective (at
    ``weight`` 0 that is plain MatryoshkaLoss: with another ``seed``, the control for training noise)."""
    out = work / ("binary-run" + ("" if weight == 1.0 else f"-w{weight:g}")
                  + ("" if dims == BINARY_DIMS else "-d" + "-".join(map(str, dims)))
                  + ("" if seed is None else f"-s{seed}"))
    if (out / "results.json").is_file():
        return out
    text = (plain / "recipe.toml").read_text(encoding="utf-8").split("[[compare]]")[0]
    text = re.sub(r"^output_dir = .*$", f'output_dir = "{out}"', text, flags=re.M)
    if seed is not None:
        text = re.sub(r"^seed = .*$", f"seed = {seed}", text, count=1, flags=re.M)
    text = text.replace('path = "../data/', f'path = "{ROOT}/data/')
    text += f'\n[objective]\nname = "binary-matryoshka"\nbinary_dims = {dims}\nbinary_weight = {weight}\n'
    recipe = work / f"{out.name}.toml"
    recipe.write_text(text, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "mrl_plugins.cli", str(recipe), "-q"], check=True)
    return out


def reciprocal_ranks(ids: np.ndarray, relevant: list[set[int]]) -> np.ndarray:
    out = np.zeros(len(ids))
    for i, (row, rel) in enumerate(zip(ids, relevant)):
        hits = [r for r, doc in enumerate(row[:K].tolist()) if doc in rel]
        out[i] = 1.0 / (hits[0] + 1) if hits else 0.0
    return out


def top(q: np.ndarray, c: np.ndarray, d: int) -> np.ndarray:
    from mrl_plugins.evaluation.encode import normalise

    scores = normalise(q[:, :d]) @ normalise(c[:, :d]).T
    return np.argsort(-scores, axis=1)[:, :K]


def served(q: np.ndarray, c: np.ndarray, d: int, shortlist: int) -> np.ndarray:
    """Binary codes of the first d dims (Hamming), shortlist reranked with int8 full vectors."""
    from mrl_plugins.plugins import load_registry
    from mrl_plugins.search.index import funnel_index

    registry = load_registry()
    index = funnel_index(registry.build("index", "binary", {}), c.shape[1], d, store_dtype="int8")
    index.add(c)
    ids = index.search(q, K, shortlist=shortlist).ids
    index.close()
    return ids


def measure(q: np.ndarray, c: np.ndarray, relevant: list[set[int]], shortlist: int) -> dict:
    exact = top(q, c, c.shape[1])
    full = reciprocal_ranks(exact, relevant)
    out = {"full": full}
    for d in DIMS:
        for kind, ids in (("float", top(q, c, d)), ("binary", served(q, c, d, shortlist))):
            rr = reciprocal_ranks(ids, relevant)
            overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(ids, exact)])
            out[(kind, d)] = (rr, float(overlap))
    return out


def report(title: str, plain: dict, aware: dict) -> None:
    from mrl_plugins.evidence.stats import paired_p_value

    print(f"\n{title}")
    print(f"exact {DIMS[0]}: MRR@10 plain MRL {plain['full'].mean():.4f}, binary-aware {aware['full'].mean():.4f} "
          f"(p {paired_p_value(aware['full'], plain['full']):.3f})")
    print(f"{'dim':>4} {'setting':<16} {'kept: plain':>11} {'aware':>7} {'recall@10: plain':>16} {'aware':>7} "
          f"{'MRR@10 aware - plain':>20} {'p':>6}")
    for kind in ("float", "binary"):
        for d in DIMS:
            (rp, op), (ra, oa) = plain[(kind, d)], aware[(kind, d)]
            setting = "float prefix" if kind == "float" else "binary + int8"
            kept_plain, kept_aware = rp.mean() / plain["full"].mean(), ra.mean() / aware["full"].mean()
            print(f"{d:>4} {setting:<16} {kept_plain:>11.1%} {kept_aware:>7.1%} "
                  f"{op:>16.3f} {oa:>7.3f} {ra.mean() - rp.mean():>+20.4f} {paired_p_value(ra, rp):>6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(DEFAULT_RUN))
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-quantization-aware"))
    parser.add_argument("--shortlist", type=int, default=200)
    parser.add_argument("--binary-weight", type=float, default=1.0, help="the objective's binary_weight")
    parser.add_argument("--binary-dims", default=",".join(map(str, BINARY_DIMS)),
                        help="the objective's binary_dims, comma-separated")
    parser.add_argument("--seed", type=int, help="train the binary-aware model with this seed instead of the plain "
                        "run's (with --binary-weight 0: plain MRL again, the control for training noise)")
    parser.add_argument("--skip-30k", action="store_true", help="the quickstart's evaluation set only")
    args = parser.parse_args()

    import torch

    from mrl_plugins.evaluation.encode import encode_texts, normalise
    from mrl_plugins.evidence.rundir import resolve_model_arg
    from mrl_plugins.evidence.saved import load_evaluation
    from mrl_plugins.models import load_model

    torch.set_num_threads(2)
    plain_run, work = Path(args.run), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    aware_run = train(plain_run, work, args.binary_weight, [int(d) for d in args.binary_dims.split(",")], args.seed)
    runs = {"plain": plain_run, "aware": aware_run}

    saved = {name: load_evaluation(run) for name, run in runs.items()}
    first_set = saved["plain"]
    assert (saved["aware"].query_ids, saved["aware"].corpus_ids) == (first_set.query_ids, first_set.corpus_ids), \
        "the two runs must share their evaluation set"
    relevant = first_set.relevant_rows
    got = {name: measure(*s.embeddings["mrl"], relevant, args.shortlist) for name, s in saved.items()}
    report(f"quickstart evaluation set: {len(relevant)} queries, {len(first_set.corpus_ids):,} documents (held out); "
           f"shortlist {args.shortlist}", got["plain"], got["aware"])
    sys.stdout.flush()
    if args.skip_30k:
        return

    queries, _, found = corpora(1000, 0)
    docs, first = found["30k"]
    rel30 = [{r} for r in first]
    # bench_index_tuning's embeddings of the default run's model, if there: another --run embeds its own
    plain_corpus = ROOT / "runs" / "bench-index-tuning" / f"30k-{len(docs)}-emb"
    reuse = plain_corpus.is_dir() and plain_run.resolve() == DEFAULT_RUN.resolve()
    folders = {"plain": plain_corpus if reuse else work / f"30k-{len(docs)}-{plain_run.name}-emb",
               "aware": work / f"30k-{len(docs)}-{aware_run.name.replace('binary-run', 'aware')}-emb"}
    got = {}
    for name, run in runs.items():
        c = embeddings(run, docs, folders[name])
        q = normalise(encode_texts(load_model(resolve_model_arg(str(run))[0], device="cpu"), queries, role="query"))
        got[name] = measure(q, c, rel30, args.shortlist)
    report(f"Debian 30k: {len(queries)} queries, {len(docs):,} paragraphs (never trained on); shortlist "
           f"{args.shortlist}", got["plain"], got["aware"])


if __name__ == "__main__":
    main()
