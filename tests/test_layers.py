"""The package's layers point one way, read from the source's imports (not by importing it).

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency), and the rules are transitive: validation reaching the report through a helper
breaks the rule as surely as importing it directly.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mrl_plugins"
PRESENTERS = {"mrl_plugins.report", "mrl_plugins.publish", "mrl_plugins.demo", "mrl_plugins.present"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}
PRESENTERS |= {m for m in MODULES if m.startswith("mrl_plugins.present")}


def _resolve(base: str, level: int, name: str | None, is_package: bool) -> str:
    parts = base.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join([*parts, *([name] if name else [])])


@cache
def direct_imports(module: str) -> frozenset[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.level, node.module, path.name == "__init__.py") if node.level else node.module
            found.add(base or "")
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from . import checks`
    return frozenset(m for m in found if m in MODULES)


def reach(module: str) -> dict[str, str]:
    """Every package module ``module`` imports, directly or not, each with the module that imports it."""
    seen: dict[str, str] = {}
    todo = [module]
    while todo:
        current = todo.pop()
        for dep in direct_imports(current):
            if dep not in seen and dep != module:
                seen[dep] = current
                todo.append(dep)
    return seen


def path_to(module: str, target: str, seen: dict[str, str]) -> str:
    chain = [target]
    while chain[-1] != module and chain[-1] in seen:
        chain.append(seen[chain[-1]])
    return " → ".join(reversed(chain))


def violations(module: str, forbidden: set[str] | str) -> list[str]:
    seen = reach(module)
    bad = [m for m in seen if (m.startswith(forbidden) if isinstance(forbidden, str) else m in forbidden)]
    return [path_to(module, m, seen) for m in sorted(bad)]


def test_the_import_reader_sees_lazy_and_relative_imports():
    # demo imports gradio lazily and the sections at function level; the reader must see both
    assert "mrl_plugins.present.sections" in direct_imports("mrl_plugins.demo")
    assert "mrl_plugins.checks" in direct_imports("mrl_plugins.recipe")  # `from . import checks`
    assert "mrl_plugins.run.pipeline" in reach("mrl_plugins.builtin.commands")  # `from ..run import run`, lazily


@pytest.mark.parametrize("module", ["mrl_plugins.recipe", "mrl_plugins.checks", "mrl_plugins.plugins"])
def test_validation_imports_no_presenter_or_publisher(module):
    assert violations(module, PRESENTERS) == []


@pytest.mark.parametrize("module", sorted(PRESENTERS))
def test_presenters_never_import_the_run(module):
    assert violations(module, "mrl_plugins.run.") == [] and "mrl_plugins.run" not in reach(module)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("mrl_plugins.evidence")))
def test_evidence_imports_neither_the_run_nor_validation_nor_presenters(module):
    forbidden = {"mrl_plugins.recipe", "mrl_plugins.checks", "mrl_plugins.run", *PRESENTERS}
    assert violations(module, forbidden) == [] and violations(module, "mrl_plugins.run.") == []


def test_the_hub_client_is_its_own_module():
    assert violations("mrl_plugins.hub", PRESENTERS | {"mrl_plugins.recipe"}) == []
    assert "mrl_plugins.hub" in direct_imports("mrl_plugins.checks")  # the token check, without the card


LAYOUT = {"results.json", "recipe.toml", "report.md", "metrics.png", "costs.png", "variants", "comparisons", "evaluation",
          "per_query.json", "per_query.npz"}


def test_only_the_run_folder_owner_spells_its_layout():
    owners = {"mrl_plugins.evidence.rundir", "mrl_plugins.evidence.results", "mrl_plugins.evaluation",
              "mrl_plugins.pytest_plugin"}  # the test kit names the recipe files it writes, not a run's
    found = []
    for module, path in MODULES.items():
        if module in owners:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in LAYOUT:
                found.append(f"{module}:{node.lineno} {node.value!r}")
    assert found == []


def test_the_core_names_no_builtin_index_backend():
    from typing import get_args

    from mrl_plugins.search.folder import StoreDtype
    from mrl_plugins.testing import isolated_registry

    # "int8" is also a dtype of the rerank store, which the core names (the store is the core's, not a backend)
    backends = set(isolated_registry().names("index")) - set(get_args(StoreDtype))
    core = [m for m in MODULES if not m.startswith(("mrl_plugins.builtin", "mrl_plugins.testing"))
            and m not in {"mrl_plugins.export", "mrl_plugins.cli"}]  # export's int8 is ONNX weight quantisation
    found = []
    for module in core:
        for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in backends:
                found.append(f"{module}:{node.lineno} {node.value!r}")
    assert found == []
