"""Docs stay true: every hook and component method is documented with its exact signature."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from mrl_plugins import hookspecs
from mrl_plugins.components import KINDS, Component
from mrl_plugins.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "plugin-guide.md").read_text()


def _sig(fn) -> str:
    return str(inspect.signature(fn)).replace("'", "")


HOOKS = [(n, f) for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")]
METHODS = [
    (cls.__name__, n, f)
    for cls in [Component, *(k.base for k in KINDS.values())]
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


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates_offline(recipe):
    load_recipe(recipe)
