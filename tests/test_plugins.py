"""The plugin system: registration, attribution, duplicates, broken plugins, local modules."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from mrl_plugins import hookimpl
from mrl_plugins.cli import main
from mrl_plugins.components import DataSource, Loss
from mrl_plugins.errors import PluginError
from mrl_plugins.plugins import load_registry
from mrl_plugins.testing import isolated_registry


class EchoSource(DataSource):
    """A test data source."""

    name = "echo"
    produces = ("pairs",)


class EchoPlugin:
    @hookimpl
    def register_data_sources(self, register):
        register(EchoSource)


def test_builtins_register_through_hooks():
    registry = isolated_registry()
    assert registry.names("loss") == ["cosent", "mnr"]
    assert registry.names("dims") == ["explicit", "halving"]
    assert registry.names("data") == ["debian", "local"]
    assert registry.names("compare") == ["no-mrl", "pca", "truncate"]
    assert registry.names("warm_start") == ["pca-rotation"]
    assert registry.owner("loss", "mnr") == "mrl_plugins.builtin.losses"
    assert registry.plugins["mrl_plugins.builtin.losses"].components == {"loss": ["mnr", "cosent"]}


def test_third_party_plugin_is_attributed():
    registry = isolated_registry(EchoPlugin())
    assert registry.get("data", "echo") is EchoSource
    assert registry.owner("data", "echo") == "test-plugin-0"


def test_duplicate_names_are_rejected_naming_both_plugins():
    class Again(DataSource):
        name = "echo"
        produces = ("pairs",)

    class Other:
        @hookimpl
        def register_data_sources(self, register):
            register(Again)

    registry = isolated_registry(EchoPlugin(), Other())
    with pytest.raises(PluginError, match="registered by both 'test-plugin-0' and 'test-plugin-1'"):
        registry.get("data", "echo")
    # a built-in name taken again is ambiguous too, rather than silently shadowed
    class Mnr(Loss):
        name = "mnr"
        accepts = ("pairs",)

    class Shadow:
        @hookimpl
        def register_losses(self, register):
            register(Mnr)

    registry = isolated_registry(Shadow())
    with pytest.raises(PluginError, match="'mrl_plugins.builtin.losses' and 'test-plugin-0'"):
        registry.get("loss", "mnr")


def test_misspelt_hook_marks_plugin_broken_with_suggestion():
    class Typo:
        @hookimpl
        def register_data_source(self, register):  # missing the final "s"
            register(EchoSource)

    registry = isolated_registry(Typo())
    info = registry.plugins["test-plugin-0"]
    assert "register_data_source" in info.error and "did you mean 'register_data_sources'" in info.error
    assert "echo" not in registry.names("data")
    # the others are unaffected
    assert "mnr" in registry.names("loss")


def test_plugin_registering_a_non_component_is_broken():
    class Bad:
        @hookimpl
        def register_losses(self, register):
            register(object)

    registry = isolated_registry(Bad())
    assert "not a subclass of Loss" in registry.plugins["test-plugin-0"].error


class _FakeEntryPoint:
    def __init__(self, name, loader):
        self.name, self._loader = name, loader
        self.dist = type("Dist", (), {"name": f"mrl-{name}", "version": "9.9"})()

    def load(self):
        return self._loader()


@pytest.fixture
def fake_entry_points(monkeypatch):
    def install(*eps):
        real = importlib.metadata.entry_points

        def entry_points(**kw):
            return list(eps) if kw.get("group") == "mrl_plugins" else real(**kw)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    return install


def _raise():
    raise ImportError("No module named 'torchvision'")


def test_broken_entry_point_is_reported_and_only_fails_its_users(fake_entry_points, capsys, write_recipe):
    fake_entry_points(_FakeEntryPoint("broken", _raise), _FakeEntryPoint("echo", EchoPlugin))
    registry = load_registry()
    assert registry.plugins["mrl-broken"].error == "ImportError: No module named 'torchvision'"
    assert registry.get("data", "echo") is EchoSource  # the healthy plugin still works
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "mrl-broken 9.9  [entry point]" in out and "BROKEN: ImportError" in out
    assert "mrl-echo 9.9  [entry point]" in out and "data source: echo" in out
    with pytest.raises(PluginError, match="failed to load and may provide it: mrl-broken"):
        registry.get("data", "msmarco")


def test_recipe_local_plugin_module(tiny_recipe, tmp_path):
    (tmp_path / "my_source.py").write_text(
        "from mrl_plugins import hookimpl\n"
        "from mrl_plugins.components import Comparison\n"
        "class Nothing(Comparison):\n"
        "    name = 'nothing'\n"
        "@hookimpl\n"
        "def register_comparisons(register):\n"
        "    register(Nothing)\n"
    )
    recipe = tiny_recipe('[[compare]]\nname = "nothing"\n')
    text = recipe.read_text().replace('name = "tiny"', 'name = "tiny"\nplugins = ["my_source.py"]')
    recipe.write_text(text)
    assert main(["validate", str(recipe)]) == 0


def test_plugins_and_validate_do_not_import_torch(tmp_path):
    code = (
        "import sys; from mrl_plugins.cli import main; "
        "main(['plugins']); main(['validate', 'recipes/quickstart.toml']); "
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'datasets') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert "HEAVY []" in out
