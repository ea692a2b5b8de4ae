"""Recipes in tests: toy pairs, a recipe built as tables and written as TOML, and ``mrl-run``
run on it in process (or in a subprocess) with an outcome to assert on."""

from __future__ import annotations

import contextlib
import io
import json
import random
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import TOPICS

if TYPE_CHECKING:

    from ..evidence.results import RunResults


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def toy_pairs(n: int = 160, seed: int = 0) -> list[dict[str, str]]:
    """Distinct (anchor, positive, negative) rows whose anchor and positive share words, all of
    them in ``tiny_model``'s vocabulary."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[tuple[str, ...]] = set()
    while len(rows) < n:
        a, b, c = rng.sample(TOPICS, 3)
        if (a, b, c) in seen:
            continue
        seen.add((a, b, c))
        d, e = rng.sample([t for t in TOPICS if t not in (a, b, c)], 2)
        rows.append({
            "anchor": f"{a} {b} {c}",
            "positive": f"the {a} {b} {c} package with tools",
            "negative": f"the {d} {e} library for {c}",
        })
    return rows


def toy_scored_pairs(n: int = 80, seed: int = 0) -> list[dict]:
    """CoSENT-style rows (``sentence1``, ``sentence2``, ``score``) in ``tiny_model``'s words: pairs
    sharing more words score higher, texts long and varied enough that no two pairs tie on cosine
    (ties make Spearman a coin toss). For a similarity task's tests."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        left = rng.sample(TOPICS, 5)
        shared = rng.randint(0, 4)
        right = left[:shared] + rng.sample([t for t in TOPICS if t not in left], 5 - shared)
        rows.append({"sentence1": " ".join(left), "sentence2": " ".join(right), "score": shared + rng.random()})
    return rows


def toy_labelled(n_per: int = 12, seed: int = 0) -> list[dict]:
    """Rows (``text``, ``label``, ``split``) of three groups of ``tiny_model``'s words, ``n_per``
    each, the first half of each group ``"train"``, the rest ``"test"``. For classification and
    clustering tasks' tests."""
    rng = random.Random(seed)
    groups = [TOPICS[:6], TOPICS[6:12], TOPICS[12:18]]
    rows = []
    for label, words in enumerate(groups):
        for i in range(n_per):
            rows.append({"text": " ".join(rng.sample(words, 3)), "label": f"group {label}",
                         "split": "train" if i < n_per // 2 else "test"})
    return rows


# -- recipes ---------------------------------------------------------------------------------
@dataclass
class RecipeBuilder:
    """A recipe as nested tables: change it with :meth:`set` and :meth:`add_comparison`, then
    :meth:`write` it as TOML. Relative paths in it are relative to where it is written."""

    table: dict[str, Any]

    @classmethod
    def tiny(
        cls, model: str | Path, data: dict[str, Any], *, output_dir: str | Path, loss: str = "mnr",
        dims: dict[str, Any] | None = None, max_steps: int = 3,
    ) -> RecipeBuilder:
        """A complete recipe that trains for a few steps: made for ``tiny_model`` and small data."""
        return cls({
            "name": "tiny",
            "seed": 1,
            "output_dir": str(output_dir),
            "model": {"name": str(model)},
            "data": dict(data),
            "loss": {"name": loss},
            "dims": dict(dims or {"name": "halving", "floor": 8}),
            "train": {"epochs": 1, "batch_size": 16, "max_steps": max_steps, "logging_steps": 1},
        })

    def set(self, key: str, value: Any) -> RecipeBuilder:
        """Set a dotted key (``"train.max_steps"``), creating tables on the way; ``None`` removes it."""
        *parents, last = key.split(".")
        node = self.table
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
        return self

    def add_comparison(self, name: str, **params: Any) -> RecipeBuilder:
        self.table.setdefault("compare", []).append({"name": name, **params})
        return self

    def text(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.table)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.text(), encoding="utf-8")
        return path


@dataclass
class RunOutcome:
    """What ``mrl-run`` did: exit code, printed output, and the run's folder and results."""

    code: int
    out: str
    err: str
    output_dir: Path | None

    @property
    def results(self) -> RunResults:
        from ..evidence.rundir import RunDir

        assert self.output_dir is not None, "the recipe's output_dir has a {timestamp}; use a fixed one in tests"
        return RunDir.open(self.output_dir).results()

    def assert_success(self) -> RunOutcome:
        assert self.code == 0, f"mrl-run exited {self.code}\nstdout:\n{self.out[-3000:]}\nstderr:\n{self.err[-3000:]}"
        return self


def run_recipe(recipe: str | Path, *args: str, command: str = "run", in_process: bool = True) -> RunOutcome:
    """Run ``mrl-run COMMAND RECIPE ARGS…`` and return its outcome. In-process by default (fast,
    and monkeypatches apply); ``in_process=False`` starts a fresh interpreter instead."""
    recipe = Path(recipe)
    argv = [command, str(recipe), *args]
    if in_process:
        from ..cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        stdout, stderr = out.getvalue(), err.getvalue()
    else:
        proc = subprocess.run([sys.executable, "-m", "mrl_plugins.cli", *argv], capture_output=True, text=True)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    return RunOutcome(code, stdout, stderr, _output_dir(recipe, args))


def run_cli(*args: Any) -> tuple[int, str, str]:
    """``mrl-run ARGS…`` in this process: ``(exit code, stdout, stderr)``; a usage error
    (argparse's exit) is its exit code, as from a shell."""
    from ..cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return code, out.getvalue(), err.getvalue()


def _output_dir(recipe: Path, args: Sequence[str]) -> Path | None:
    import tomllib

    from ..recipe.schema import apply_override

    try:
        raw = tomllib.loads(recipe.read_text(encoding="utf-8"))
        overrides = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--set"]
        for assignment in overrides:
            apply_override(raw, assignment)
    except Exception:  # the run itself reports a broken recipe
        return None
    out = raw.get("output_dir")
    if not isinstance(out, str) or "{" in out:
        return None
    from ..recipe.load import output_path

    return output_path(recipe.parent, out)


