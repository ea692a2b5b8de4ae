"""The test kit: helpers for testing mrl-plugins and plugins written for it (as tox ships
``tox.pytest``), importable as ``mrl_plugins.testing`` (and ``mrl_plugins.conformance``).

* ``tiny_model(path)``: a randomly initialised BERT sentence-transformer of a few thousand
  parameters with its own vocabulary; no download, loads in milliseconds.
* ``toy_pairs(n)``: distinct (anchor, positive, negative) rows in words the tiny model knows;
  ``toy_scored_pairs(n)`` and ``toy_labelled(n_per)`` rows for similarity, classification and
  clustering tasks.
* ``RecipeBuilder``: a recipe as nested tables, changed with ``set()``/``add_comparison()``
  and written as TOML, so tests never edit recipe text.
* ``run_recipe(path, *args) -> RunOutcome``: ``mrl-run`` on a recipe, with ``.code``, ``.out``,
  ``.err``, ``.results`` and ``assert_success()``.
* ``isolated_registry(*plugins)``: the built-ins plus the plugin objects you pass, ignoring
  whatever else is installed.
* ``ArrayComparisonContext`` / ``TextsWarmStartContext`` / ``ModelsTaskContext``: the contexts a
  comparison, a warm start or an evaluation task receives, over plain arrays, texts and models,
  to test one without a run.
* ``assert_index_backend_conforms``, ``assert_data_source_conforms``,
  ``assert_comparison_conforms``, ``assert_objective_conforms``: each kind's whole contract in one
  call (:mod:`.conformance`, re-exported here with the rest of the kit).

* ``required.require_modules(env_var, what, *modules)`` / ``required.missing(...)``: skip a test
  whose engine is not installed, or fail it where CI requires it (``MRL_REQUIRE_<NAME>=1``).

``models``, ``recipes``, ``contexts``, ``conformance`` and ``required`` hold them; ``pytest_plugin`` makes them
fixtures (entry point ``pytest11``) for this repository's tests and any plugin's.
"""

from __future__ import annotations

from typing import Any

from .contexts import ArrayComparisonContext, ModelsTaskContext, TextsWarmStartContext
from .models import TOPICS, isolated_registry, tiny_model
from .recipes import (
    RecipeBuilder,
    RunOutcome,
    run_cli,
    run_recipe,
    toy_labelled,
    toy_pairs,
    toy_scored_pairs,
    write_jsonl,
)

_CONFORMANCE = ("ConformanceError", "assert_comparison_conforms", "assert_data_source_conforms",
                "assert_index_backend_conforms", "assert_objective_conforms", "unit_vectors")
__all__ = ["TOPICS", "ArrayComparisonContext", "ModelsTaskContext", "RecipeBuilder", "RunOutcome",
           "TextsWarmStartContext", "isolated_registry", "run_cli", "run_recipe", "tiny_model", "toy_labelled",
           "toy_pairs", "toy_scored_pairs", "write_jsonl", *_CONFORMANCE]


def __getattr__(name: str) -> Any:
    """The conformance checks, imported on first use (they import numpy and, for objectives,
    torch; the pytest plugin imports this package in every session)."""
    if name in _CONFORMANCE:
        from . import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'mrl_plugins.testkit' has no attribute {name!r}")
