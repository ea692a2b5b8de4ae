"""Quality at the smallest widths: objectives, warm start, adaptor and PCA on two datasets, with
intervals and paired tests.

For each dataset (the quickstart's Debian descriptions: recipes/quickstart.toml; the manual
pages: recipes/manpages.toml) ONE run trains plain MRL (the recipe's model) and, as columns of
the same run, MRL with the prefix-distill objective, with the 2D Matryoshka objective and after
the pca-rotation warm start, and scores post-hoc PCA and the post-hoc adaptor of the base model,
of MRL and of the warm-started MRL (each adaptor is also tested against PCA of the model it
adapts). Everything is scored on the same held-out queries, so every difference gets a paired
sign-flip test (mrl_plugins.evidence.stats) and a 95% bootstrap interval.

    .venv/bin/python benchmarks/bench_quality.py [--datasets debian manpages] [--validation-queries 0]

The tables in docs/benchmarks.md were measured by mrl-plugins 0.2, before runs had a validation
split: ``--validation-queries 0`` reproduces them (the adaptor then trains its fixed 30 epochs).
By default each run carves its validation split from the rows beyond ``train_pairs`` (so the
trained models are the same) and the adaptor keeps its best epoch there.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"debian": ROOT / "recipes" / "quickstart.toml", "manpages": ROOT / "recipes" / "manpages.toml"}
COMPARE = [
    {"name": "variant", "objective": "prefix-distill"},
    {"name": "variant", "objective": "matryoshka-2d"},
    {"name": "variant", "warm_start": "pca-rotation"},
    {"name": "pca", "model": "base"},
    {"name": "pca", "model": "mrl"},
    {"name": "pca", "model": "mrl-pca-rotation"},
    {"name": "adaptor", "model": "base"},
    {"name": "adaptor", "model": "mrl"},
    {"name": "adaptor", "model": "mrl-pca-rotation"},
]
BASELINES = {"base", "mrl", "pca(base)", "pca(mrl)", "pca(mrl-pca-rotation)"}


def run_dataset(name: str, validation_queries: int | None = None) -> Path:
    import tomli_w

    from mrl_plugins.cli import main as mrl_run

    raw = tomllib.loads(RECIPES[name].read_text())
    raw["compare"] = COMPARE
    if validation_queries is not None:
        raw.setdefault("validation", {})["queries"] = validation_queries
    out = ROOT / "runs" / f"bench-quality-{name}"
    raw["output_dir"] = str(out)
    recipe = ROOT / "runs" / f"bench-quality-{name}.toml"
    recipe.parent.mkdir(exist_ok=True)
    recipe.write_text(tomli_w.dumps(raw).replace("../data/", "../data/"))  # runs/ sits beside data/ like recipes/
    print(f"\n=== {name}: {RECIPES[name].name} + {len(COMPARE)} comparisons -> {out}", flush=True)
    code = mrl_run([str(recipe), "--overwrite", "-q"])
    if code:
        sys.exit(code)
    return out


def analyse(name: str, out: Path) -> dict[str, dict[int, float]]:
    from mrl_plugins.evidence.saved import load_per_query
    from mrl_plugins.evidence.stats import ALPHA, bootstrap_interval, paired_p_value
    from mrl_plugins.results import RunResults

    results, per_query = RunResults.load(out / "results.json"), load_per_query(out)
    key, dims, small, full = "mrr@10", results.dims, results.dims[-1], results.dims[0]
    columns = [k for k in results.models if k in per_query]
    print(f"\n{name}: {results.data.train_rows} training pairs, {results.data.eval_queries} queries, "
          f"{results.data.corpus} documents; MRR@10 [95% interval]; Δ vs MRL (paired p)\n")
    print("| method | " + " | ".join(f"{d} dims" for d in dims) + " |")
    print("|---|" + "---|" * len(dims))
    for col in columns:
        cells = []
        for d in dims:
            v, (lo, hi) = results.value(col, d), bootstrap_interval(per_query[col][d][key])
            cell = f"{v:.4f} [{lo:.3f}, {hi:.3f}]"
            if col != "mrl":
                p = paired_p_value(per_query[col][d][key], per_query["mrl"][d][key])
                cell += f" {v - results.value('mrl', d):+.4f} (p {p:.3f}{'' if p < ALPHA else ', ≈'})"
            cells.append(cell)
        print(f"| {results.models[col].label} | " + " | ".join(cells) + " |")

    def versus(a: str, b: str, d: int) -> tuple[float, float]:
        return (results.value(a, d) - results.value(b, d),
                paired_p_value(per_query[a][d][key], per_query[b][d][key]))

    print(f"\nat {small} dims, each candidate against plain MRL and against post-hoc PCA of MRL; "
          f"at {full} against MRL:")
    for col in columns:
        if col in BASELINES:
            continue
        (dm, pm), (dp, pp) = versus(col, "mrl", small), versus(col, "pca(mrl)", small)
        df, pf = versus(col, "mrl", full)
        print(f"- {results.models[col].label}: {dm:+.4f} vs MRL (p {pm:.3f}), {dp:+.4f} vs MRL · PCA (p {pp:.3f}); "
              f"at {full}: {df:+.4f} (p {pf:.3f})")
    for adapted, pca in (("adaptor(base)", "pca(base)"),
                         ("adaptor(mrl-pca-rotation)", "pca(mrl-pca-rotation)")):
        if adapted in per_query and pca in per_query:
            d_ab, p_ab = versus(adapted, pca, small)
            print(f"- {results.models[adapted].label} vs {results.models[pca].label} (the same model's PCA) "
                  f"at {small}: {d_ab:+.4f} (p {p_ab:.3f})")
    if "adaptor(base)" in per_query:
        d_bf, p_bf = versus("adaptor(base)", "base", full)
        print(f"- base · adaptor vs base (not fine-tuned) at {full}: {d_bf:+.4f} (p {p_bf:.3f})")
    return {col: {d: results.value(col, d) for d in dims} for col in columns} | {"_p": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--reuse", action="store_true", help="Analyse finished runs in runs/ without training again.")
    parser.add_argument("--validation-queries", type=int, help="[validation] queries (0: none, as in mrl-plugins 0.2)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    scores = {}
    for name in args.datasets:
        out = ROOT / "runs" / f"bench-quality-{name}"
        if not (args.reuse and (out / "results.json").is_file()):
            out = run_dataset(name, args.validation_queries)
        scores[name] = analyse(name, out)
    if len(scores) > 1:
        small = min(next(iter(scores.values()))["mrl"])
        candidates = [c for c in next(iter(scores.values())) if c not in BASELINES and c != "_p"
                      and all(c in s for s in scores.values())]
        mean = {c: sum(s[c][small] for s in scores.values()) / len(scores) for c in candidates}
        best = max(mean, key=mean.get)
        print(f"\nbest at {small} dims on average over {', '.join(scores)}: {best} ({mean[best]:.4f}); "
              + ", ".join(f"{c} {v:.4f}" for c, v in sorted(mean.items(), key=lambda x: -x[1])))


if __name__ == "__main__":
    main()
