from __future__ import annotations

from pathlib import Path

import pytest

from mrl_plugins.testing import TOPICS, RecipeBuilder, tiny_model, toy_pairs, write_jsonl


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny", dim=32, words=TOPICS)


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", toy_pairs())


@pytest.fixture
def recipe_path(tmp_path) -> Path:
    """Where tests write their recipe: beside the data files it names."""
    return tmp_path / "recipe.toml"


@pytest.fixture
def tiny_recipe(tiny_model_dir, pairs_file, tmp_path) -> RecipeBuilder:
    """A complete recipe over the tiny model and toy pairs, output in tmp_path/out."""
    data = {"name": "local", "path": pairs_file.name, "format": "pairs", "eval_queries": 20, "corpus_size": 60}
    return RecipeBuilder.tiny(
        tiny_model_dir, data, output_dir=tmp_path / "out", dims={"name": "explicit", "values": [32, 16, 8]}
    )
