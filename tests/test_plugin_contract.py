"""Third-party plugins as first-class citizens (issue #21): validation reaches the index backends
named inside comparisons and reports every problem in one pass, refused parameters are named by
their key path with what they take, indexes record which distribution built them (and say what
to install), a library missing is said as such, a failure inside another plugin's code blames
that plugin, ``validate --data`` prints the data's counts, and what a data source contributes to
the published files is filtered (absolute paths) and extended (card front matter)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mrl_plugins import __version__, hookimpl
from mrl_plugins.components import IndexBackend, Params
from mrl_plugins.errors import PluginError, UserError
from mrl_plugins.evidence.results import RunResults
from mrl_plugins.plugins import load_registry
from mrl_plugins.search.build import open_index, record_provenance
from mrl_plugins.search.index import funnel_index
from mrl_plugins.testkit.conformance import unit_vectors
from mrl_plugins.testkit.models import isolated_registry
from mrl_plugins.testkit.recipes import run_cli, run_recipe, toy_pairs, write_jsonl
from tests.test_conformance import NumpyIndex

PLUGIN = '''
from mrl_plugins import hookimpl
from mrl_plugins.builtin.index_backends import Flat


class NeedsLibrary(Flat):
    """A backend whose library is not installed here."""

    name = "needs-lib"

    def check(self, ctx):
        return ["the Python package 'usearch' is not installed; pip install usearch"]


@hookimpl
def register_index_backends(register):
    register(NeedsLibrary)
'''


@pytest.fixture
def recipe(tmp_path, tiny_model_dir):
    from mrl_plugins.testkit.recipes import RecipeBuilder

    write_jsonl(tmp_path / "pairs.jsonl", toy_pairs())
    (tmp_path / "needs_lib.py").write_text(PLUGIN)
    return (RecipeBuilder.tiny(tiny_model_dir, {"name": "local", "path": "pairs.jsonl", "eval_queries": 20},
                               output_dir=tmp_path / "out")
            .set("plugins", ["needs_lib.py"]))


def test_validate_reaches_backends_inside_comparisons_and_reports_everything_in_one_pass(recipe, tmp_path):
    recipe.set("train.bogus", 3)
    recipe.add_comparison("funnel", index="needs-lib")
    recipe.add_comparison("funnel", index="hnsw", index_params={"m": "x", "efs": 3}, shortlist=[20])
    outcome = run_recipe(recipe.write(tmp_path / "r.toml"), command="validate")
    assert outcome.code == 2 and "Traceback" not in outcome.err
    err = " ".join(outcome.err.split())
    assert "[train] bogus: unknown key. Allowed keys:" in err  # a schema problem ...
    # ... and, in the same pass, the backend's own check(), naming the backend's plugin
    assert ("[[compare]] #1 index 'needs-lib' (plugin 'needs_lib.py'): the Python package 'usearch' is not "
            "installed; pip install usearch") in err
    # refused backend parameters by key path, with what the key takes; never pydantic's URL
    assert ("[[compare]] #2 index_params.m (index backend 'hnsw'): input should be a valid integer, unable to parse "
            "string as an integer (got 'x'); m is int, default 32 (Graph neighbours per vector (M)") in err
    assert ("[[compare]] #2 index_params.efs (index backend 'hnsw'): unknown key. Index backend 'hnsw' takes: m, "
            "ef_construction, ef_search, storage.") in err
    assert "errors.pydantic.dev" not in err


def test_two_funnels_with_different_backends_are_two_columns_of_one_run(recipe, tmp_path):
    recipe.add_comparison("funnel", shortlist=[20]).add_comparison("funnel", index="hnsw", shortlist=[20])
    outcome = run_recipe(recipe.write(tmp_path / "r.toml"), command="validate")
    assert outcome.code == 0, outcome.err
    compared = next(line for line in outcome.out.splitlines() if line.strip().startswith("compare"))
    assert compared.count("funnel") == 2


def test_component_params_errors_name_each_key_and_what_it_takes():
    registry = load_registry()
    with pytest.raises(UserError) as caught:
        registry.build("compare", "funnel", {"store": "int4", "shortlistt": [50]})
    problems = dict(caught.value.problems)
    assert problems["store"].startswith("input should be 'float32', 'float16' or 'int8' (got 'int4'); store is")
    assert problems["shortlistt"].startswith("unknown key; did you mean 'shortlist'? Comparison 'funnel' takes: ")
    assert "errors.pydantic.dev" not in str(caught.value)


def test_validate_data_prints_the_counts_the_run_prints(recipe, tmp_path):
    outcome = run_recipe(recipe.write(tmp_path / "r.toml"), "--data", command="validate")
    assert outcome.code == 0, outcome.err
    assert "training rows (pairs), 20 evaluation queries" in outcome.out
    assert "validation queries" in outcome.out and "every choice of the run is made on them" in outcome.out


# -- provenance of an index's engine --------------------------------------------------------------
class Library:
    missing = False


class UsearchLike(IndexBackend):
    """A backend whose library may be missing when an index is opened."""

    name = "usearch-like"

    def create(self, dim):
        return NumpyIndex(dim)

    def load(self, path, dim):
        if Library.missing:
            raise ModuleNotFoundError("No module named 'usearch'", name="usearch")
        index = NumpyIndex(dim)
        index.x = np.load(path.with_suffix(".npy"))
        return index


class UsearchPlugin:
    @hookimpl
    def register_index_backends(self, register):
        register(UsearchLike)


def saved_index(folder: Path, registry, name: str) -> Path:
    backend = registry.build("index", name)
    index = funnel_index(backend, 32, 8)
    index.add(unit_vectors(40, 32))
    index.save(folder)
    record_provenance(folder, backend)
    return folder


def test_an_index_records_the_distribution_that_built_it(tmp_path):
    folder = saved_index(tmp_path / "idx", load_registry(), "flat")
    recorded = json.loads((folder / "manifest.json").read_text())["index"]["provided_by"]
    assert recorded == {"plugin": "mrl_plugins.builtin.index_backends", "distribution": "mrl-plugins",
                        "version": __version__}
    # an installed plugin's: its distribution and version
    assert load_registry().provenance("index", "pgvector")["distribution"] == "mrl-pgvector"
    assert open_index(folder).index.count == 40


def test_an_index_whose_plugin_is_missing_says_what_to_install(tmp_path):
    registry = isolated_registry(UsearchPlugin())
    folder = saved_index(tmp_path / "idx", registry, "usearch-like")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["index"]["provided_by"].update(distribution="mrl-usearch", version="0.3.1")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError) as caught:
        open_index(folder, registry=isolated_registry())  # the plugin is not installed here
    text = str(caught.value)
    assert "index backend 'usearch-like' from mrl-usearch 0.3.1" in text
    assert "pip install 'mrl-usearch==0.3.1'" in text and "The index itself is fine" in text
    code, _, err = run_cli("search", folder, "a query")
    assert code == 2 and "pip install 'mrl-usearch==0.3.1'" in err and "Traceback" not in err


def test_an_index_whose_backends_library_is_missing_says_so_not_rebuild(tmp_path, monkeypatch):
    registry = isolated_registry(UsearchPlugin())
    folder = saved_index(tmp_path / "idx", registry, "usearch-like")
    assert open_index(folder, registry=registry).index.count == 40
    monkeypatch.setattr(Library, "missing", True)
    with pytest.raises(UserError) as caught:
        open_index(folder, registry=registry)
    text = str(caught.value)
    assert "index backend 'usearch-like'" in text and "needs the Python package 'usearch'" in text
    assert "rebuild" not in text and "The index itself is fine" in text


def test_a_failure_inside_another_plugins_code_blames_that_plugin(monkeypatch):
    import importlib.metadata

    from mrl_plugins.component_errors import PluginFailed
    from mrl_plugins.recipe.load import ComponentSpec

    cls = load_registry().get("compare", "funnel")
    fake = SimpleNamespace(module=__name__, name="usearch", dist=SimpleNamespace(name="mrl-usearch"))
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [fake])
    spec = ComponentSpec("compare", "funnel", cls, cls.Params(), "mrl_plugins.builtin.search_comparisons",
                         "[[compare]] #1")
    try:
        NumpyIndex(4).search(np.zeros((1, 5), np.float32), 3)  # the tests package is the "installed plugin"
    except ValueError as exc:
        message = str(PluginFailed(spec, "run", exc))
    assert "failed in run() inside plugin 'mrl-usearch' (tests.test_conformance.search)" in message
    assert "a bug in plugin 'mrl-usearch'" in message
    assert "a bug in plugin 'mrl_plugins.builtin.search_comparisons'" not in message


# -- what a data source reaches in published files -------------------------------------------------
def test_published_files_carry_card_metadata_and_no_absolute_paths(finished_tiny_run, tmp_path):
    from huggingface_hub import ModelCard

    from mrl_plugins.publish.model import write_publication

    model = tmp_path / "model"
    shutil.copytree(finished_tiny_run / "model", model)
    results = RunResults.load(finished_tiny_run / "results.json")
    results.data.summary["read"] = "3 rows skipped in /home/someone/corpora/pairs.jsonl"
    results.data.card = {"datasets": ["someone/faq-pairs"], "license": "cc-by-4.0", "tags": ["faq"]}
    write_publication(model, results, None, None)
    card = ModelCard.load(model / "README.md")
    assert card.data["datasets"] == ["someone/faq-pairs"] and card.data["license"] == "cc-by-4.0"
    assert "faq" in card.data["tags"] and "sentence-transformers" in card.data["tags"]
    assert card.data.get("base_model") is None  # the run's model is a local folder: no Hub id to link
    meta = json.loads((model / "mrl.json").read_text())
    assert meta["data"]["summary"]["read"] == "3 rows skipped in pairs.jsonl"
    assert "/home/someone" not in (model / "mrl.json").read_text()
    results.model.origin = "hub"
    results.model.name = "sentence-transformers/all-MiniLM-L6-v2"
    write_publication(model, results, None, None)
    assert ModelCard.load(model / "README.md").data["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_data_sources_card_metadata_is_checked():
    from mrl_plugins.components import DataSource
    from mrl_plugins.recipe.load import ComponentSpec
    from mrl_plugins.run.pipeline import card_metadata

    class Source(DataSource):
        name = "src"
        produces = ("pairs",)
        given: dict = {}

        def load(self, request):
            raise AssertionError

        def card_metadata(self):
            return self.given

    def recipe(given):
        Source.given = given
        return SimpleNamespace(data=ComponentSpec("data", "src", Source, Params(), "my-plugin", "[data]"))

    assert card_metadata(recipe({"datasets": ["a/b"], "language": "en"})) == {"datasets": ["a/b"], "language": "en"}
    with pytest.raises(PluginError, match="gave 'base_model', which a card does not take from a data source"):
        card_metadata(recipe({"base_model": "x/y"}))
    with pytest.raises(PluginError, match="gave license = \\['mit'\\]; it must be a licence id"):
        card_metadata(recipe({"license": ["mit"]}))


# -- near-copies and families ----------------------------------------------------------------------
def test_near_copies_are_found_that_the_exact_leak_check_misses():
    from mrl_plugins.data.near_duplicates import find_near_duplicates
    from mrl_plugins.data.split import find_leaks
    from mrl_plugins.data.types import IRSet

    train = ["This package provides the command line tools for editing audio files on the desktop.",
             "A library for parsing JSON documents in C.", "Fonts for the Tamil script."]
    held = IRSet({"q0": "command line tools for editing audio files on the desktop (version 2)",
                  "q1": "a library for parsing json documents in C."},
                 {"d0": "This package provides the command line tools for editing audio files on the desktops.",
                  "d1": "Bindings to a spreadsheet engine for Rust programs."},
                 {"q0": {"d0"}, "q1": {"d1"}})
    assert find_leaks(train, held) == (1, 0)  # only the case-and-punctuation copy is exact
    found = find_near_duplicates(train, held)
    assert (found.queries, found.documents) == (1, 1)  # the exact copy, and a document one letter off
    assert found.examples[0]["jaccard"] == 1.0
    assert found.examples[1]["side"] == "document" and found.examples[1]["jaccard"] >= 0.8
    assert find_near_duplicates(train, held, threshold=0.99).documents == 0


def test_a_grouped_split_holds_out_whole_families():
    from mrl_plugins.data.split import split_by_query

    rows = [{"anchor": f"q{f}-{i}", "positive": f"doc {f}-{i}", "family": f"f{f}"} for f in range(12) for i in range(5)]
    split = split_by_query(rows, eval_queries=8, seed=3, groups=lambda r: r["family"])
    held = {q.split("-")[0] for q in split.eval.queries.values()}
    assert len(split.eval.queries) == 8 and len(held) == 2  # two whole families (5 + 3 of 5, the rest dropped)
    assert not {r["family"] for r in split.train_rows} & {f"f{q[1:]}" for q in held}
    assert split.dropped_for_family == 2 and len(split.train_rows) == 50
    by_query = split_by_query(rows, eval_queries=8, seed=3)
    assert len({q.split("-")[0] for q in by_query.eval.queries.values()}) > 2  # by query: siblings train


def test_on_real_docstrings_a_family_hold_out_leaves_no_near_copy_in_training(tmp_path):
    """Python's tkinter has docstrings that differ by a default value; held out by query, one
    sibling trains while the other is evaluated."""
    from mrl_plugins.data.near_duplicates import find_near_duplicates
    from mrl_plugins.data.types import DataRequest, RowFormat

    data = Path(__file__).resolve().parents[1] / "data" / "python311-docstrings-pairs.jsonl.xz"
    found = {}
    for hold_out in ("query", "family"):
        source = load_registry().build("data", "docstrings", {"path": str(data), "hold_out": hold_out})
        bundle = source.load(DataRequest(RowFormat.PAIRS, 42, tmp_path))
        found[hold_out] = find_near_duplicates(bundle.training_texts(), bundle.eval)
    # the numbers docs/plugin-guide.md gives (seed 42, 500 evaluation docstrings)
    assert (found["query"].queries, found["query"].documents) == (0, 4)
    assert found["family"].queries + found["family"].documents == 0
    assert "tkinter" in json.dumps(found["query"].examples) or "Tcl" in json.dumps(found["query"].examples)


def test_output_dir_is_relative_to_the_recipe_wherever_it_is_run_from(tmp_path, tiny_model_dir, monkeypatch):
    from mrl_plugins.recipe.load import load_recipe
    from mrl_plugins.testkit.recipes import RecipeBuilder

    recipes = tmp_path / "project" / "recipes"
    recipes.mkdir(parents=True)
    write_jsonl(recipes / "pairs.jsonl", toy_pairs())
    path = RecipeBuilder.tiny(tiny_model_dir, {"name": "local", "path": "pairs.jsonl", "eval_queries": 20},
                              output_dir="../runs/tiny").write(recipes / "r.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(path)
    assert recipe.output_dir.resolve() == (tmp_path / "project" / "runs" / "tiny").resolve()
    assert recipe.resolved()["output_dir"] == str((tmp_path / "project" / "runs" / "tiny").resolve())
    outcome = run_recipe(path, command="validate")
    assert outcome.code == 0 and f"output    {recipe.output_dir}" in outcome.out
    assert outcome.output_dir.resolve() == recipe.output_dir.resolve()  # the test kit reads it the same way
