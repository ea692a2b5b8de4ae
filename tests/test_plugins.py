"""The plugin system: registration, attribution, duplicates, broken and incomplete plugins,
recipe-local modules, and what `mrl-run plugins` shows."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from mrl_plugins import hookimpl
from mrl_plugins.cli import main
from mrl_plugins.components import KINDS, Command, DataSource, Loss, param_infos
from mrl_plugins.errors import PluginError, UserError
from mrl_plugins.plugins import load_registry
from mrl_plugins.testkit.models import isolated_registry
from mrl_plugins.testkit.recipes import run_recipe


class EchoSource(DataSource):
    """A test data source."""

    name = "echo"
    produces = ("pairs",)

    def load(self, request):
        raise AssertionError("not loaded in these tests")


class EchoPlugin:
    @hookimpl
    def register_data_sources(self, register):
        register(EchoSource)


def test_builtins_register_through_hooks():
    registry = isolated_registry()
    assert registry.names("loss") == ["cached-mnr", "cosent", "gist", "mnr"]
    assert registry.names("dims") == ["explicit", "halving"]
    assert registry.names("data") == ["debian", "docstrings", "local", "manpages"]
    assert registry.names("compare") == ["adaptor", "export", "funnel", "no-mrl", "pca", "quantize", "truncate", "variant"]
    assert registry.names("objective") == ["binary-matryoshka", "matryoshka", "matryoshka-2d", "prefix-distill"]
    assert registry.names("warm_start") == ["pca-rotation"]
    assert registry.names("index") == ["binary", "flat", "hnsw", "int8", "ivf"]
    assert registry.owner("loss", "mnr") == "mrl_plugins.builtin.losses"
    assert registry.plugins["mrl_plugins.builtin.losses"].components == {"loss": ["mnr", "cached-mnr", "gist", "cosent"]}


def test_third_party_plugin_is_attributed():
    registry = isolated_registry(EchoPlugin())
    assert registry.get("data", "echo") is EchoSource
    assert registry.owner("data", "echo") == "test-plugin-0"


def test_duplicate_names_are_rejected_naming_both_plugins():
    class Again(EchoSource):
        name = "echo"

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

        def build(self, model):
            return None

    class Shadow:
        @hookimpl
        def register_losses(self, register):
            register(Mnr)

    registry = isolated_registry(Shadow())
    with pytest.raises(PluginError, match=r"'mrl_plugins\.builtin\.losses' and 'test-plugin-0'"):
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


def test_row_formats_are_checked_when_a_plugin_registers():
    class Odd(EchoSource):
        name = "odd"
        produces = ("pairz",)

    class Plugin:
        @hookimpl
        def register_data_sources(self, register):
            register(Odd)

    error = isolated_registry(Plugin()).plugins["test-plugin-0"].error
    assert "Odd.produces must be a tuple of row formats (pairs, triplets, scored-pairs)" in error


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


def test_broken_entry_point_is_reported_and_only_fails_its_users(fake_entry_points, capsys):
    fake_entry_points(_FakeEntryPoint("broken", _raise), _FakeEntryPoint("echo", EchoPlugin))
    registry = load_registry()
    assert registry.plugins["mrl-broken"].error == "ImportError: No module named 'torchvision'"
    assert registry.get("data", "echo") is EchoSource  # the healthy plugin still works
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "mrl-broken 9.9  [entry point]" in out and "BROKEN: ImportError" in out
    assert "mrl-echo 9.9  [entry point]" in out and "data source echo: A test data source." in out
    with pytest.raises(PluginError, match="failed to load and may provide it: mrl-broken"):
        registry.get("data", "msmarco")


class Hello(Command):
    """Say hello (a plugin's subcommand)."""

    name = "hello"

    def add_arguments(self, parser):
        parser.add_argument("who")
        parser.add_argument("--loud", action="store_true")

    def run(self, args):
        if args.who == "nobody":
            raise UserError("hello nobody: name somebody.")
        print(f"hello {args.who}" + ("!" if args.loud else ""))
        return 0


class HelloPlugin:
    @hookimpl
    def register_commands(self, register):
        register(Hello)


def test_an_installed_plugin_adds_a_subcommand(fake_entry_points, capsys):
    fake_entry_points(_FakeEntryPoint("hello", HelloPlugin))
    assert main(["hello", "world", "--loud"]) == 0
    assert capsys.readouterr().out == "hello world!\n"
    assert main(["hello", "nobody"]) == 2  # its UserError is one paragraph, like every built-in command's
    err = capsys.readouterr().err
    assert err == "mrl-run: error: hello nobody: name somebody.\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "hello               Say hello (a plugin's subcommand)." in capsys.readouterr().out
    assert main(["plugins"]) == 0
    assert "command hello: Say hello" in capsys.readouterr().out


def test_an_installed_plugin_can_be_switched_off(fake_entry_points, monkeypatch, capsys):
    fake_entry_points(_FakeEntryPoint("hello", HelloPlugin), _FakeEntryPoint("echo", EchoPlugin))
    monkeypatch.setenv("MRL_DISABLE_PLUGINS", "mrl-hello, unrelated")
    registry = load_registry()
    assert registry.plugins["mrl-hello"].disabled and "hello" not in registry.names("command")
    assert registry.get("data", "echo") is EchoSource  # the others still load
    assert main(["plugins"]) == 0
    assert "mrl-hello 9.9  [entry point]\n    DISABLED by MRL_DISABLE_PLUGINS" in capsys.readouterr().out
    assert main(["hello"]) == 2  # the subcommand is gone: a bare word is a recipe to run, and there is none
    assert "hello" in capsys.readouterr().err
    with pytest.raises(PluginError, match="Switched off by MRL_DISABLE_PLUGINS and may provide it: mrl-hello"):
        registry.get("command", "hello")
    monkeypatch.setenv("MRL_DISABLE_PLUGINS", "hello")  # the entry point's own name works too
    assert load_registry().plugins["mrl-hello"].disabled


# -- recipe-local modules --------------------------------------------------------------------
COMPARISON_MODULE = '''
from mrl_plugins import hookimpl
from mrl_plugins.components import Comparison


class Nothing(Comparison):
    """Scores nothing new: the base model's own numbers."""

    name = "nothing"
{run}

@hookimpl
def register_comparisons(register):
    register(Nothing)
'''
RUN = """
    def run(self, ctx):
        return ctx.score(*ctx.embeddings("base"))
"""


def test_recipe_local_plugin_module(tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "my_comparison.py").write_text(COMPARISON_MODULE.format(run=RUN))
    tiny_recipe.set("plugins", ["my_comparison.py"]).add_comparison("nothing")
    assert run_recipe(tiny_recipe.write(recipe_path), command="validate").code == 0


def test_component_missing_an_abstract_method_is_refused_at_validate(tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "my_comparison.py").write_text(COMPARISON_MODULE.format(run=""))  # forgot run()
    tiny_recipe.set("plugins", ["my_comparison.py"]).add_comparison("nothing")
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and "Traceback" not in outcome.err
    assert "comparison 'nothing' (plugin 'my_comparison.py') is incomplete: it does not implement run()" in outcome.err
    listed = run_recipe(recipe_path, "-v", command="plugins")
    assert "comparison nothing: INCOMPLETE, does not implement run()" in listed.out


def test_a_broken_recipe_module_does_not_hide_a_healthy_one(tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "good.py").write_text(COMPARISON_MODULE.format(run=RUN))
    (tmp_path / "bad.py").write_text("import no_such_module_here\n")
    tiny_recipe.set("plugins", ["bad.py", "good.py", "good.py"]).add_comparison("nothing")
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2 and "Traceback" not in outcome.err
    assert "1 problem:" in outcome.err
    assert "plugins: 'bad.py' is broken: failed to import: ModuleNotFoundError" in outcome.err
    assert "unknown comparison" not in outcome.err  # the healthy module's component was found


# -- mrl-run plugins -------------------------------------------------------------------------
def test_plugins_verbose_lists_every_builtin_parameter(capsys):
    assert main(["plugins", "-v"]) == 0
    out = capsys.readouterr().out
    registry = isolated_registry()
    for kind in KINDS:
        for name in registry.names(kind):
            cls = registry.get(kind, name)
            assert f"{KINDS[kind].noun} {name}: {cls.summary()}" in out
            for p in param_infos(cls):
                assert f"        {p.name}: {p.type} = {p.default}  {p.description}".rstrip() in out
    assert "        scale: float = 20.0  Multiplier of the cosine similarities" in out
    assert "        fit_on: Literal['train', 'eval-corpus'] = \"train\"" in out


def test_plugins_with_a_recipe_shows_its_local_modules(tiny_recipe, recipe_path, tmp_path):
    (tmp_path / "my_comparison.py").write_text(COMPARISON_MODULE.format(run=RUN))
    outcome = run_recipe(tiny_recipe.set("plugins", ["my_comparison.py"]).write(recipe_path), command="plugins")
    assert "my_comparison.py  [recipe]" in outcome.out
    assert "comparison nothing: Scores nothing new: the base model's own numbers." in outcome.out


def test_plugins_and_validate_do_not_import_torch(tmp_path):
    code = (
        "import sys; from mrl_plugins.cli import main; "
        "main(['plugins', '-v']); main(['validate', 'recipes/quickstart.toml']); "
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'datasets') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert "HEAVY []" in out


def test_output_read_only_in_part_ends_quietly(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(f"{sys.executable} -m mrl_plugins.cli plugins -v | head -1", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_a_required_test_fails_where_its_engine_is_missing_and_skips_elsewhere(monkeypatch):
    from mrl_plugins.testkit.required import require_modules

    monkeypatch.delenv("MRL_REQUIRE_NOTHING", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no_such_module_here is missing \(pip install it\)"):
        require_modules("MRL_REQUIRE_NOTHING", "these", "json", "no_such_module_here", hint="pip install it")
    monkeypatch.setenv("MRL_REQUIRE_NOTHING", "1")
    with pytest.raises(pytest.fail.Exception, match=r"these tests are required here \(MRL_REQUIRE_NOTHING=1\)"):
        require_modules("MRL_REQUIRE_NOTHING", "these", "no_such_module_here")
    require_modules("MRL_REQUIRE_NOTHING", "these", "json")  # present: nothing happens
