"""Tasks beyond retrieval at every width (issue #39): similarity against sentence-transformers'
evaluator, and what the quickstart's MRL model keeps on classification and clustering.

Real text only. **Similarity**: 1,500 pairs of Debian 12 texts from ``data/debian-sections.jsonl.xz``
and the catalogue in ../shared/data (a package's synopsis against a first description paragraph:
its own, gold 2; another package's of the same archive section, gold 1; of another section,
gold 0; 500 each, seeded). The gold scores are constructed from the archive's metadata, not
judged by people: good for checking that two implementations agree and for timing, not a
semantic-similarity benchmark. The ``similarity`` task (each text encoded once, every width from
it) against ``EmbeddingSimilarityEvaluator(truncate_dim=d)`` run once per width (as a user of
sentence-transformers would), timed side by side; the largest difference of Spearman over the
widths. **Classification and clustering**: the committed section set (1,000 packages, 10
sections, none from the quickstart's sample), MTEB's protocols (``classification``: 10
experiments of 8 training texts per section; ``clustering``: 10 k-means seeds), for the base
all-MiniLM-L6-v2 and the quickstart's MRL model (``--run``, default runs/bench-search-quickstart),
at 384/192/96/48 dims, with the 95% bootstrap intervals and paired tests a run reports (2,000
resamples of the test texts, the same for both models). **MTEB** (``plugins/mrl-mteb``): MTEB's
own Classification and Clustering task types run by the ``mteb`` package on the same file at
every width, for the same two models, and ``mteb``'s own run of the base model (a plain
``SentenceTransformer``) at full width beside the plugin's: they must be equal.

**Manual pages** (``--parts manpages``): clustering of the 1,890 manual-page descriptions of
``data/manpages-debian12-pairs.jsonl.xz`` by their section number (``open(2)`` → 2; seven
sections with more than one page, plus one page of section 6), cut out of the ``page`` column by
the task's ``label_pattern``, with the same intervals and test. Neither model trained on them.

**Retrieval on another domain** (``--parts docstrings``): the ``retrieval`` task on the 2,045
(summary, rest of the docstring) pairs of ``data/python311-docstrings-pairs.jsonl.xz`` (CPython's
standard library; neither model trained on it), MRR@10 per width with the same intervals and test.

    .venv/bin/python benchmarks/bench_tasks.py [--run runs/quickstart-…] [--validation 0.3]
        [--parts similarity,sections,mteb,manpages,docstrings]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ROOT / "data" / "debian-sections.jsonl.xz"
MANPAGES = ROOT / "data" / "manpages-debian12-pairs.jsonl.xz"
DOCSTRINGS = ROOT / "data" / "python311-docstrings-pairs.jsonl.xz"
CATALOGUE = ROOT.parent / "shared" / "data" / "debian-bookworm-Translation-en.xz"
DIMS = [384, 192, 96, 48]


def similarity_pairs(seed: int = 0, per_kind: int = 500) -> list[dict]:
    import json
    import lzma

    from mrl_plugins.builtin.debian import read_catalogue

    with lzma.open(SECTIONS, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    synopsis = {p.name: p.synopsis for p in read_catalogue(CATALOGUE)}
    rng = random.Random(seed)
    by_section: dict[str, list[dict]] = {}
    for r in rows:
        by_section.setdefault(r["section"], []).append(r)
    pairs = []
    for kind in (2, 1, 0):
        for _ in range(per_kind):
            a = rng.choice(rows)
            if kind == 2:
                b = a
            elif kind == 1:
                b = rng.choice([r for r in by_section[a["section"]] if r is not a])
            else:
                b = rng.choice([r for r in rows if r["section"] != a["section"]])
            pairs.append({"sentence1": synopsis[a["package"]], "sentence2": b["text"], "score": float(kind)})
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(ROOT / "runs" / "bench-search-quickstart"))
    parser.add_argument("--validation", type=float, default=0.0,
                        help="sections part: the tasks' validation share (choose widths there, report the rest)")
    parser.add_argument("--parts", default="similarity,sections,mteb,manpages,docstrings",
                        help="which parts to run (comma-separated): similarity, sections, mteb, manpages, docstrings")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    import torch

    from mrl_plugins.evidence.rundir import resolve_model_arg
    from mrl_plugins.models import load_model, resolve_model

    torch.set_num_threads(2)
    # the base model as the quickstart runs it ([model] max_seq_length = 128, what its MRL model keeps)
    base = load_model(resolve_model("sentence-transformers/all-MiniLM-L6-v2", ROOT), device="cpu", max_seq_length=128)
    mrl = load_model(resolve_model_arg(args.run)[0], device="cpu")
    work = ROOT / "runs" / "bench-tasks"
    work.mkdir(parents=True, exist_ok=True)
    if "similarity" in parts:
        similarity(base, work)
    if "sections" in parts:
        sections(base, mrl, args.validation)
    if "mteb" in parts:
        mteb_tasks(base, mrl)
    if "manpages" in parts:
        manpages(base, mrl)
    if "docstrings" in parts:
        docstrings(base, mrl)
    sys.stdout.flush()


def similarity(base, work: Path) -> None:
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    from mrl_plugins.builtin.tasks import Similarity
    from mrl_plugins.testkit import ModelsTaskContext, write_jsonl

    pairs = similarity_pairs()
    write_jsonl(work / "pairs.jsonl", pairs)
    print(f"similarity: {len(pairs)} pairs ({len({p['sentence1'] for p in pairs} | {p['sentence2'] for p in pairs})} "
          f"distinct texts), all-MiniLM-L6-v2, widths {DIMS}, 2 threads")
    ours_s, theirs_s, worst = [], [], 0.0
    for _ in range(3):  # interleaved rounds
        t0 = time.perf_counter()
        ours = Similarity(Similarity.Params(path="pairs.jsonl")).score(ModelsTaskContext({"m": base}, DIMS, work), "m")
        ours_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = {d: EmbeddingSimilarityEvaluator([p["sentence1"] for p in pairs], [p["sentence2"] for p in pairs],
                                                  [p["score"] for p in pairs], truncate_dim=d, name="x")(base)
                  for d in DIMS}
        theirs_s.append(time.perf_counter() - t0)
        worst = max(abs(ours[d]["spearman"] - theirs[d]["x_spearman_cosine"]) for d in DIMS)
    print(f"{'dim':>4} {'Spearman (task)':>16} {'Spearman (ST)':>14}")
    for d in DIMS:
        print(f"{d:>4} {ours[d]['spearman']:>16.6f} {theirs[d]['x_spearman_cosine']:>14.6f}")
    t_ours, t_theirs = sorted(ours_s)[1], sorted(theirs_s)[1]
    print(f"largest difference of Spearman over the widths: {worst:.1e}; time (median of 3): task {t_ours:.2f} s, "
          f"EmbeddingSimilarityEvaluator once per width {t_theirs:.2f} s ({t_theirs / t_ours:.1f}x the task's)")


def sections(base, mrl, validation: float = 0.0) -> None:
    from mrl_plugins.builtin.tasks import Classification, Clustering

    tasks = [("classification (accuracy)", "accuracy",
              Classification(Classification.Params(path=SECTIONS.name, label_column="section",
                                                   validation=validation))),
             ("clustering (V-measure)", "v_measure",
              Clustering(Clustering.Params(path=SECTIONS.name, label_column="section", validation=validation)))]
    print(f"\nsections: {SECTIONS.name}, 1,000 packages in 10 sections (none from the quickstart's sample)"
          + (f"; {validation:.0%} of the scored texts set apart to choose on, the tables held out" if validation
             else ""))
    table(base, mrl, tasks)


def manpages(base, mrl) -> None:
    import collections
    import json
    import lzma
    import re

    from mrl_plugins.builtin.tasks import Clustering

    pattern = r"\((\w+)\)$"
    with lzma.open(MANPAGES, "rt", encoding="utf-8") as fh:
        pages = [json.loads(line)["page"] for line in fh]
    counts = collections.Counter(re.search(pattern, p).group(1) for p in pages)
    print(f"\nmanual pages: {MANPAGES.name}, {len(pages):,} descriptions by section "
          f"({', '.join(f'{s}: {n}' for s, n in sorted(counts.items()))})")
    table(base, mrl, [("clustering (V-measure)", "v_measure",
                       Clustering(Clustering.Params(path=MANPAGES.name, text_column="document", label_column="page",
                                                    label_pattern=pattern)))])


def docstrings(base, mrl) -> None:
    from mrl_plugins.builtin.tasks import Retrieval

    task = Retrieval(Retrieval.Params(path=DOCSTRINGS.name))
    queries, documents, _ = task.ir(DOCSTRINGS.parent)
    print(f"\ndocstrings: {DOCSTRINGS.name}, {len(queries):,} queries, {len(documents):,} documents (never trained on)")
    table(base, mrl, [("retrieval (MRR@10)", "mrr", task)])


def table(base, mrl, tasks) -> None:
    from mrl_plugins.run.tasks import choices, uncertainty
    from mrl_plugins.testkit import ModelsTaskContext

    ctx = ModelsTaskContext({"base": base, "MRL": mrl}, DIMS, SECTIONS.parent)
    for title, metric, task in tasks:
        print(f"{title:<28} " + " ".join(f"{d:>15}" for d in DIMS))
        got = {name: task.score(ctx, name) for name in ("base", "MRL")}
        for name in ("base", "MRL"):
            top = got[name][DIMS[0]][metric]
            print(f"{name:<28} " + " ".join(f"{got[name][d][metric]:.4f} ({got[name][d][metric] / top:>5.1%})"
                                            for d in DIMS))
        # the run's own arithmetic (mrl_plugins.run.tasks): percentile intervals, a paired bootstrap test
        found = uncertainty({"base": got["base"].replicates, "mrl": got["MRL"].replicates},
                            {"base": got["base"], "mrl": got["MRL"]}, metric, DIMS)
        for name, key in (("base", "base"), ("MRL", "mrl")):
            print(f"{'  95% interval, ' + name:<28} " + " ".join(
                f"[{found['intervals'][key][d][0]:.3f}, {found['intervals'][key][d][1]:.3f}]" for d in DIMS))
        print(f"{'  MRL - base (paired p)':<28} " + " ".join(
            f"{found['versus_base']['mrl'][d].delta:+.3f} ({found['versus_base']['mrl'][d].p:.3f})" for d in DIMS))
        for name in ("base", "MRL"):
            on = got[name].validation
            if not on:
                continue
            print(f"{'  on validation, ' + name:<28} " + " ".join(
                f"{on[d][metric]:.4f} ({on[d][metric] / on[DIMS[0]][metric]:>5.1%})" for d in DIMS))
            picked = choices({name: {d: on[d][metric] for d in DIMS}}, {name: got[name].validation_replicates},
                             DIMS)[name]
            for share in (0.99, 0.95):
                chosen = picked[f"{share:.0%}"]
                for rule, width in (("on average", chosen.by_mean), ("with a margin", chosen.width)):
                    held = got[name][width][metric] / got[name][DIMS[0]][metric]
                    print(f"    {name}, >= {share:.0%} {rule}: {width}; held out it keeps {held:.1%}"
                          + (" (holds)" if held >= share else " (does not hold)"))


def mteb_tasks(base, mrl) -> None:
    import warnings

    import mteb

    from mrl_mteb import Mteb
    from mrl_plugins.testkit import ModelsTaskContext

    warnings.filterwarnings("ignore", category=FutureWarning)  # mteb's note on a renamed sentence-transformers method
    ctx = ModelsTaskContext({"base": base, "MRL": mrl}, DIMS, SECTIONS.parent)
    print(f"\nMTEB {mteb.__version__} (plugins/mrl-mteb): MTEB's task types on {SECTIONS.name}, main score per width")
    for kind in ("Classification", "Clustering"):
        task = Mteb(Mteb.Params(task=f"DebianSections{kind}", type=kind, path=SECTIONS.name,
                                columns={"label": "section"}))
        print(f"{task.label():<44} " + " ".join(f"{d:>15}" for d in DIMS))
        for name in ("base", "MRL"):
            t0 = time.perf_counter()
            got = task.score(ctx, name)
            took = time.perf_counter() - t0
            top = got[DIMS[0]]["main_score"]
            print(f"{name:<44} " + " ".join(f"{got[d]['main_score']:.4f} ({got[d]['main_score'] / top:>5.1%})"
                                            for d in DIMS) + f"   {took:.1f} s")
            if name == "base":
                own = got[DIMS[0]]["main_score"]
        t0 = time.perf_counter()
        result = mteb.evaluate(base, task.new_task(SECTIONS.parent), cache=None, overwrite_strategy="always",
                               show_progress_bar=False, encode_kwargs={"batch_size": 32})
        theirs = float(result.task_results[0].get_score())
        print(f"  mteb.evaluate(base) itself at {DIMS[0]}: {theirs:.6f} (the plugin's: {own:.6f}, difference "
              f"{abs(theirs - own):.1e}; {time.perf_counter() - t0:.1f} s for one width)")


if __name__ == "__main__":
    main()
