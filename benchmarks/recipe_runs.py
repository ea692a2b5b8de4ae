"""What several benchmarks do: run a shipped recipe with some tables changed, into ``runs/``.

The changed recipe is written to ``runs/<name>.toml`` (``runs/`` sits beside ``data/`` as
``recipes/`` does, so the recipe's relative paths still hold) and run there with ``--overwrite``;
a failed run stops the benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_table(raw: dict[str, Any], name: str, what: str) -> Path:
    """Run the recipe ``raw`` (a parsed TOML table) as ``runs/<name>``; ``what`` is printed."""
    import tomli_w

    from mrl_plugins.cli import main as mrl_run

    out = ROOT / "runs" / name
    raw = {**raw, "output_dir": str(out)}
    recipe = ROOT / "runs" / f"{name}.toml"
    recipe.parent.mkdir(exist_ok=True)
    recipe.write_text(tomli_w.dumps(raw))
    print(f"\n=== {what} -> {out}", flush=True)
    if mrl_run([str(recipe), "--overwrite", "-q"]):
        sys.exit(f"the {name} run failed")
    return out
