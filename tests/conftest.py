from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from mrl_plugins.testing import tiny_model, write_jsonl

TOPICS = """audio video image text font game database network kernel editor compiler parser
server client terminal desktop plugin module library python perl java rust web http search
index query engine format converter runtime framework binding documentation""".split()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny", dim=32, words=TOPICS)


def synthetic_pairs(n: int = 160, seed: int = 0) -> list[dict]:
    """Distinct (anchor, positive, negative) rows whose anchor and positive share words."""
    rng = random.Random(seed)
    rows, seen = [], set()
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


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", synthetic_pairs())


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe into tmp_path from TOML text; returns its path."""

    def write(text: str, name: str = "recipe.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def tiny_recipe(write_recipe, tiny_model_dir, pairs_file, tmp_path):
    """A complete recipe over the tiny model and synthetic pairs; extra TOML is appended."""

    def make(extra: str = "", *, loss: str = "mnr", dims: str = "values = [32, 16, 8]", fmt: str = "pairs") -> Path:
        return write_recipe(
            f"""
            name = "tiny"
            seed = 1
            output_dir = "{tmp_path / 'out'}"

            [model]
            name = "{tiny_model_dir}"

            [data]
            name = "local"
            path = "{pairs_file.name}"
            format = "{fmt}"
            eval_queries = 20
            corpus_size = 60

            [loss]
            name = "{loss}"

            [dims]
            name = "explicit"
            {dims}

            [train]
            epochs = 1
            batch_size = 16
            max_steps = 3
            logging_steps = 1
            """
            + textwrap.dedent(extra)
        )

    return make
