"""The package's layers point one way, read from the source's imports (not by importing it).

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency); imports under ``if TYPE_CHECKING:`` do not (they never run). The rules are
transitive where they say "reaches": validation reaching the report through a helper breaks the
rule as surely as importing it directly. docs/architecture.md draws the same map.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mrl_plugins"
PKG = "mrl_plugins"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def _resolve(base: str, level: int, name: str | None, is_package: bool) -> str:
    parts = base.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join([*parts, *([name] if name else [])])


def _type_checking_only(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return skipped


@cache
def direct_imports(module: str) -> frozenset[str]:
    """The package modules ``module`` imports, lazily or not (a ``from pkg import name`` counts as
    importing ``pkg.name`` when that is a module, else ``pkg``)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.level, node.module, path.name == "__init__.py") if node.level else node.module
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base or ""]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):
                found.add(target)
    return frozenset(found)


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


def within(module: str, *prefixes: str) -> bool:
    """Whether ``module`` is one of ``mrl_plugins.<prefix>`` or inside it."""
    return any(module == f"{PKG}.{p}" or module.startswith(f"{PKG}.{p}.") for p in prefixes)


def violations(module: str, *forbidden: str, allowed: tuple[str, ...] = ()) -> list[str]:
    seen = reach(module)
    bad = [m for m in seen if within(m, *forbidden) and not within(m, *allowed)]
    return [path_to(module, m, seen) for m in sorted(bad)]


def modules_in(*prefixes: str) -> list[str]:
    return sorted(m for m in MODULES if within(m, *prefixes))


# -- the reader itself ---------------------------------------------------------------------------
def test_the_import_reader_sees_lazy_relative_and_module_imports_and_skips_type_checking():
    assert "mrl_plugins.present.sections" in direct_imports("mrl_plugins.present.demo")  # at function level
    assert "mrl_plugins.recipe.checks" in direct_imports("mrl_plugins.recipe.load")  # `from . import checks`
    assert "mrl_plugins.run.pipeline" in reach("mrl_plugins.commands.run")  # `from ..run import run`, lazily
    assert "mrl_plugins.recipe.load" not in direct_imports("mrl_plugins.component_errors")  # TYPE_CHECKING only


# -- the shape -----------------------------------------------------------------------------------
def test_there_is_no_import_cycle():
    """Tarjan's strongly connected components over every import, lazy ones included."""
    sys.setrecursionlimit(10_000)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in direct_imports(v):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(MODULES):
        if module not in index:
            strong(module)
    assert cycles == []


def test_the_package_root_keeps_at_most_twelve_modules():
    """The contract, the registry and a few shared leaves; every feature has a folder."""
    root = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    assert len(root) <= 12, root
    folders = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file())
    assert {"commands", "data", "embed", "evaluation", "evidence", "export", "present", "publish", "recipe", "run",
            "search", "testkit"} <= set(folders)
    for folder in folders:  # each folder's docstring maps it
        assert ast.get_docstring(ast.parse((SRC / folder / "__init__.py").read_text(encoding="utf-8"))), folder


def test_the_architecture_page_names_every_folder_and_every_root_module():
    page = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    folders = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file())
    assert [f for f in folders if f"`{f}/`" not in page] == []
    root = sorted(p.name for p in SRC.glob("*.py") if p.name != "__init__.py")
    assert [m for m in root if f"`{m}`" not in page] == []


CONTRACT = ("hookspecs", "components", "contexts", "indexes")


@pytest.mark.parametrize("module", [f"{PKG}.{m}" for m in CONTRACT])
def test_the_contract_imports_no_implementation(module):
    """What a plugin author reads imports only other contract modules and plain data types."""
    seen = reach(module)
    allowed = (*CONTRACT, "errors", "data.types", "evaluation.metrics", "evaluation", "data")
    assert [path_to(module, m, seen) for m in sorted(seen) if not within(m, *allowed)] == []


@pytest.mark.parametrize("package", ["evaluation", "data"])
def test_the_packages_the_contract_stands_on_import_nothing_eagerly_above_them(package):
    """A package's ``__init__`` runs whenever one of its modules is imported: ``evaluation``'s
    re-exports are lazy, ``data``'s import only its own modules (no torch, no datasets)."""
    assert violations(f"{PKG}.{package}", "embed", "search", "run", "recipe", "plugins", "evidence") == []
    assert "import torch" not in (SRC / package / "__init__.py").read_text(encoding="utf-8")


def test_the_results_schema_imports_no_contract_and_no_run_module():
    seen = reach(f"{PKG}.evidence.results")
    assert sorted(seen) == ["mrl_plugins.errors", "mrl_plugins.evaluation.metrics", "mrl_plugins.evidence.upgrade"]


def test_nothing_imports_upward_into_commands():
    """Commands are the top: they import features; no feature imports a command."""
    found = [f"{m} → {d}" for m in MODULES if not within(m, "commands")
             for d in direct_imports(m) if within(d, "commands")]
    assert found == []


def test_only_commands_and_publishers_import_presenters():
    """The report, the card and the demo are written for people from evidence: the engine that
    produces the evidence, the recipe, the data, the search side and the evidence itself never
    import them (the run is handed what to write by its caller)."""
    found = [f"{m} → {d}" for m in MODULES if not within(m, "present", "commands", "publish")
             for d in direct_imports(m) if within(d, "present")]
    assert found == []


@pytest.mark.parametrize("module", modules_in("run"))
def test_the_engine_imports_no_presenter_publisher_or_command(module):
    assert violations(module, "present", "publish", "commands", "sweep", allowed=("publish.hub",)) == []


VALIDATION = (*modules_in("recipe"), f"{PKG}.plugins", f"{PKG}.component_errors")


@pytest.mark.parametrize("module", VALIDATION)
def test_validation_imports_no_presenter_or_publisher(module):
    """``mrl-run validate`` loads these: no report, card or push (the Hub client, for the token
    check, is no publisher)."""
    assert violations(module, "present", "publish", "run", "commands", allowed=("publish.hub",)) == []


@pytest.mark.parametrize("module", modules_in("present"))
def test_presenters_never_import_the_run(module):
    assert violations(module, "run", "commands", "sweep", "publish") == []


@pytest.mark.parametrize("module", modules_in("evidence"))
def test_evidence_imports_neither_the_run_nor_validation_nor_presenters(module):
    assert violations(module, "run", "recipe", "plugins", "present", "publish", "commands", "search", "embed") == []


GROUND = ("errors", "data", "models", "outputs", "evaluation")


@pytest.mark.parametrize("module", modules_in(*GROUND))
def test_the_ground_floor_imports_no_feature_above_it(module):
    """Data, models, output folders and the scorers are what features stand on."""
    assert violations(module, "embed", "search", "export", "publish", "present", "run", "recipe", "commands",
                      "sweep", "evidence", "plugins", "builtin", "testkit") == []


@pytest.mark.parametrize("module", modules_in("embed"))
def test_embedding_stands_below_search(module):
    """``mrl-run index`` reads embeddings folders; embedding never needs an index."""
    assert violations(module, "search", "run", "present", "publish", "commands", "recipe") == []


def test_the_hub_client_is_its_own_module():
    assert sorted(reach(f"{PKG}.publish.hub")) == ["mrl_plugins.errors"]
    assert f"{PKG}.publish.hub" in reach(f"{PKG}.recipe.checks")  # the token check, without the card


# -- what code may say ---------------------------------------------------------------------------
LAYOUT = {"results.json", "recipe.toml", "report.md", "metrics.png", "costs.png", "variants", "comparisons", "evaluation",
          "per_query.json", "per_query.npz", "validation_queries.json.gz"}


def test_only_the_run_folder_owner_spells_its_layout():
    owners = {"mrl_plugins.evidence.rundir", "mrl_plugins.evidence.results", "mrl_plugins.evidence.saved",
              "mrl_plugins.evaluation", "mrl_plugins.testkit.pytest_plugin"}  # the kit names the recipe files it writes
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
    core = [m for m in MODULES if not within(m, "builtin", "testkit", "export") and m != "mrl_plugins.cli"]
    found = []  # export's int8 is ONNX weight quantisation, not a backend
    for module in core:
        for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in backends:
                found.append(f"{module}:{node.lineno} {node.value!r}")
    assert found == []


def argument_writes(tree: ast.AST, where: str) -> list[str]:
    """Every assignment to an attribute of a parsed-arguments namespace (``args``, or a parameter
    annotated ``argparse.Namespace``), and every ``setattr``/``delattr`` on one."""
    namespaces = {"args"}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            namespaces |= {a.arg for a in node.args.args
                           if a.annotation is not None and "Namespace" in ast.unparse(a.annotation)}
    writes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("setattr", "delattr") and node.args \
                and isinstance(node.args[0], ast.Name) and node.args[0].id in namespaces:
            writes.append(f"{where}:{node.lineno} {ast.unparse(node)}")
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del) \
                and isinstance(node.value, ast.Name) and node.value.id in namespaces:
            writes.append(f"{where}:{node.lineno} {ast.unparse(node)}")
    return writes


@pytest.mark.parametrize("module", modules_in("commands"))
def test_commands_read_their_arguments_and_never_write_them(module):
    """A command turns its parsed arguments into a frozen request once; helpers read the request,
    never a namespace changed on the way (``args.dim = …`` hid where a value came from)."""
    assert argument_writes(ast.parse(MODULES[module].read_text(encoding="utf-8")), module) == []


def test_the_rule_against_writing_arguments_finds_every_way_of_writing():
    source = ("def cmd(args):\n    args.dim = 3\n    a, args.store = 1, 2\n    setattr(args, 'x', 1)\n"
              "def helper(ns: argparse.Namespace):\n    ns.k += 1\n    del ns.k\n    print(args.dim)\n")
    assert len(argument_writes(ast.parse(source), "m")) == 5
