"""The test kit as a pytest plugin: installed with mrl-plugins (entry point ``pytest11``), so
this repository's tests and a third-party plugin's tests get the same fixtures, with no
conftest to copy.

Fixtures (the helpers behind them are in :mod:`mrl_plugins.testing`):

* ``tiny_model_dir`` (session): a tiny BERT sentence-transformer built on the spot (32 dims).
* ``pairs_file``, ``recipe_path``, ``tiny_recipe``: toy pairs in a temporary folder and a
  complete recipe over the tiny model that trains for a few steps (a :class:`RecipeBuilder`).
* ``finished_tiny_run`` (session): the output folder of one finished tiny run, trained once and
  shared by every test file that only reads a run (copy it before changing it). It has
  ``[publish] truncate_dim = 16`` and ``repo_id = "alice/tiny-mrl"``.

Marker: ``slow`` for a test that takes more than a few seconds (trains whole runs, starts
processes or a browser); ``pytest -m "not slow"`` is the fast lane.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .models import TOPICS, tiny_model
from .recipes import RecipeBuilder, run_recipe, toy_pairs, write_jsonl


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds: trains whole runs, starts processes or "
                                       "a browser (fast lane: -m 'not slow')")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny", dim=32, words=TOPICS)


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", toy_pairs())


@pytest.fixture
def recipe_path(tmp_path: Path) -> Path:
    """Where tests write their recipe: beside the data files it names."""
    return tmp_path / "recipe.toml"


@pytest.fixture
def tiny_recipe(tiny_model_dir: Path, pairs_file: Path, tmp_path: Path) -> RecipeBuilder:
    """A complete recipe over the tiny model and toy pairs, output in tmp_path/out."""
    data = {"name": "local", "path": pairs_file.name, "format": "pairs", "eval_queries": 20, "corpus_size": 60}
    return RecipeBuilder.tiny(
        tiny_model_dir, data, output_dir=tmp_path / "out", dims={"name": "explicit", "values": [32, 16, 8]}
    )


@pytest.fixture(scope="session")
def finished_tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """One finished tiny run, shared by the whole session: read it, or copy it to change it."""
    tmp = tmp_path_factory.mktemp("finished")
    write_jsonl(tmp / "pairs.jsonl", toy_pairs())
    recipe = RecipeBuilder.tiny(
        tiny_model_dir, {"name": "local", "path": "pairs.jsonl", "eval_queries": 20}, output_dir=tmp / "out",
        dims={"name": "explicit", "values": [32, 16, 8]}, max_steps=2,
    ).set("publish", {"truncate_dim": 16, "repo_id": "alice/tiny-mrl"})
    run_recipe(recipe.write(tmp / "recipe.toml"), "-q").assert_success()
    return tmp / "out"
