"""Docs stay true: every hook and component method is documented with its exact signature, and
the plugin guide's example installs and passes its own tests exactly as written."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mrl_plugins import hookspecs
from mrl_plugins.components import (
    KINDS,
    ComparisonContext,
    Component,
    Control,
    Engine,
    SearchIndex,
    ShortlistIndex,
    WarmStartContext,
)
from mrl_plugins.recipe.load import load_recipe

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "plugin-guide.md").read_text()


def _sig(fn) -> str:
    return str(inspect.signature(fn)).replace("'", "")


HOOKS = [(n, f) for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")]
DOCUMENTED = [Component, *(k.base for k in KINDS.values()), Control, ComparisonContext, WarmStartContext, ShortlistIndex,
              Engine, SearchIndex]
METHODS = [
    (cls.__name__, n, f)
    for cls in DOCUMENTED
    for n, f in vars(cls).items()
    if inspect.isfunction(f) and not n.startswith("_")
]


@pytest.mark.parametrize(("name", "fn"), HOOKS, ids=[n for n, _ in HOOKS])
def test_every_hook_is_documented_with_its_signature(name, fn):
    assert f"### `{name}{_sig(fn)}`" in GUIDE


def test_hooks_match_the_component_kinds():
    assert {n for n, _ in HOOKS} == {k.hook for k in KINDS.values()}


@pytest.mark.parametrize(("cls", "name", "fn"), METHODS, ids=[f"{c}.{n}" for c, n, _ in METHODS])
def test_every_component_method_is_documented(cls, name, fn):
    assert f"`{name}{_sig(fn)}`" in GUIDE, f"{cls}.{name}{_sig(fn)} is not in docs/plugin-guide.md"


def test_abstract_methods_are_marked_so_in_the_guide():
    for cls in DOCUMENTED:
        for name in getattr(cls, "__abstractmethods__", ()):
            if cls in (ComparisonContext, WarmStartContext) or name.startswith("__"):  # the runner implements these
                continue
            fn = vars(cls).get(name)
            if fn is not None and not isinstance(fn, property):  # properties: documented as such
                assert f"`{name}{_sig(fn)}` (abstract)" in GUIDE, f"{cls.__name__}.{name} is not marked abstract"


HUB_MODELS = {"msmarco.toml": "BAAI/bge-base-en-v1.5"}  # needs the Hub (or its cache) for the model


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates_offline(recipe, monkeypatch):
    from huggingface_hub import constants

    from mrl_plugins.errors import RecipeError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    if recipe.name not in HUB_MODELS:
        load_recipe(recipe)
        return
    with pytest.raises(RecipeError) as info:  # everything is valid except that, offline, the model is not here
        load_recipe(recipe)
    (problem,) = info.value.problems
    assert problem.startswith(f"[model] name: '{HUB_MODELS[recipe.name]}' is not a local folder") and "HF_HUB_OFFLINE" in problem


def guide_files() -> dict[str, str]:
    """The guide's code blocks that name a file: ```lang title="path"."""
    return dict(re.findall(r'```\w+ title="([^"]+)"\n(.*?)```', GUIDE, flags=re.S))


@pytest.mark.slow
def test_the_guides_plugin_installs_and_passes_its_tests_as_written(tmp_path):
    files = guide_files()
    assert set(files) == {"mrl-faq/pyproject.toml", "mrl-faq/src/mrl_faq/__init__.py", "mrl-faq/tests/test_faq.py"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    site = tmp_path / "site"
    # its own folder, not this environment: --target keeps the test from installing anything here
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
         str(tmp_path / "mrl-faq")],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "mrl-faq" / "tests")],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "5 passed" in tests.stdout


def test_the_guides_kind_table_and_the_readmes_hook_count_match_the_registry():
    rows = re.findall(r"^\| `(\w+)` \| `(register_\w+)` \| `(\w+)`", GUIDE, flags=re.M)
    assert {(key, hook, base) for key, hook, base in rows} == {(k.key, k.hook, k.base.__name__)
                                                            for k in KINDS.values()}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    words = {7: "seven", 8: "eight", 9: "nine", 10: "ten", 11: "eleven"}
    assert f"({words[len(HOOKS)]} typed `register_*` hooks" in readme
