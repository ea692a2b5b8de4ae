"""Property-based tests (Hypothesis) for every reader of user or disk input: the recipe (TOML and
``--set``), an index folder (manifest, text store, arrays), ``results.json`` and a run's saved
evaluation arrays. Whatever the mutation or truncation, the reader gives a correct result or one
:class:`~mrl_plugins.errors.UserError` (exit 2 at the CLI), never another exception."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrl_plugins.errors import UserError

# CI runs a fixed sample (derandomised, so a failure reproduces); MRL_HYPOTHESIS_EXAMPLES=2000 searches wider.
EXAMPLES = int(os.environ.get("MRL_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                    derandomize="MRL_HYPOTHESIS_EXAMPLES" not in os.environ)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def paths_of(value, prefix=()):
    """Every path into a JSON value (dict keys and list indexes)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths_of(item, (*prefix, i))


def mutated(value, path, replacement, delete=False):
    out = copy.deepcopy(value)
    if not path:
        return replacement
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return out


@st.composite
def json_mutation(draw, value):
    paths = list(paths_of(value))
    path = draw(st.sampled_from(paths))
    return mutated(value, path, draw(json_values), delete=draw(st.booleans()))


# -- index folders --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def index_folder(tmp_path_factory) -> Path:
    from mrl_plugins.evaluation.encode import normalise
    from mrl_plugins.search.folder import TextStore
    from mrl_plugins.search.index import FunnelIndex
    from mrl_plugins.testkit.models import isolated_registry

    folder = tmp_path_factory.mktemp("index") / "idx"
    folder.mkdir()
    rng = np.random.default_rng(0)
    corpus = normalise(rng.normal(size=(40, 16)).astype(np.float32))
    flat = isolated_registry().get("index", "flat")()
    index = FunnelIndex(16, 4, flat)
    index.add(corpus)
    store = TextStore(folder)
    list(store.write((str(i), f"document {i}") for i in range(40)))
    index.save(folder, texts=store.path)
    return folder


def open_and_search(folder: Path) -> None:
    from mrl_plugins.search.build import open_index
    from mrl_plugins.search.searcher import Searcher
    from mrl_plugins.testkit.models import isolated_registry

    corpus = open_index(folder, registry=isolated_registry())
    hits = corpus.index.search(np.ones((2, corpus.index.full_dim), dtype=np.float32), 5, shortlist=10)
    Searcher(corpus.index, corpus.texts).hits(hits, 0)


def restored(folder: Path, name: str, change) -> None:
    original = (folder / name).read_bytes()
    try:
        change(folder / name, original)
        try:
            open_and_search(folder)
        except UserError:
            pass
    finally:
        (folder / name).write_bytes(original)


MANIFEST_KEYS = ["format", "version", "model", "full_dim", "shortlist_dim", "rerank_dim", "index", "count",
                 "store_dtype", "texts"]


@SETTINGS
@given(key=st.sampled_from(MANIFEST_KEYS), value=json_values)
def test_any_manifest_value_opens_or_is_one_message(index_folder, key, value):
    def change(path, original):
        manifest = json.loads(original)
        manifest[key] = value
        path.write_text(json.dumps(manifest))

    restored(index_folder, "manifest.json", change)


@SETTINGS
@given(name=st.sampled_from(["manifest.json", "vectors.npy", "offsets.npy", "texts.jsonl", "shortlist.index"]),
       cut=st.floats(0.0, 0.999))
def test_any_truncated_index_file_opens_or_is_one_message(index_folder, name, cut):
    restored(index_folder, name, lambda path, original: path.write_bytes(original[: int(len(original) * cut)]))


@SETTINGS
@given(name=st.sampled_from(["vectors.npy", "offsets.npy"]), rows=st.integers(0, 60), cols=st.integers(0, 20),
       dtype=st.sampled_from(["float32", "float16", "int64", "int8"]))
def test_an_array_of_another_shape_opens_or_is_one_message(index_folder, name, rows, cols, dtype):
    def change(path, original):
        shape = (rows,) if name == "offsets.npy" else (rows, cols)
        np.save(path, np.arange(int(np.prod(shape))).reshape(shape).astype(dtype))

    restored(index_folder, name, change)


# -- results.json ----------------------------------------------------------------------------------------------
RESULTS = json.loads((Path(__file__).parent / "data" / "run-v0.1" / "results.json").read_text())


@SETTINGS
@given(data=st.data())
def test_any_results_json_loads_and_renders_or_is_one_message(data):
    from mrl_plugins.present.report import format_table, report_markdown
    from mrl_plugins.results import RunResults

    raw = data.draw(json_mutation(RESULTS))
    try:
        results = RunResults.from_json_dict(raw)
    except UserError:
        return
    report_markdown(results)  # a file that loads renders whole
    format_table(results)


# -- a run's saved evaluation arrays ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evaluation_folder(tmp_path_factory) -> Path:
    from mrl_plugins.data.types import IRSet
    from mrl_plugins.evaluation.encode import EncodedIRSet
    from mrl_plugins.evidence.saved import save_evaluation

    run = tmp_path_factory.mktemp("run")
    ir = IRSet({f"q{i}": f"query {i}" for i in range(5)}, {f"d{i}": f"doc {i}" for i in range(8)},
               {f"q{i}": {f"d{i}"} for i in range(5)})
    rng = np.random.default_rng(1)
    enc = EncodedIRSet(rng.normal(size=(5, 6)).astype(np.float32), rng.normal(size=(8, 6)).astype(np.float32),
                       list(ir.queries), list(ir.corpus), [{i} for i in range(5)])
    save_evaluation(run, ir, {"mrl": enc})
    return run


@SETTINGS
@given(name=st.sampled_from(["mrl.queries.npy", "mrl.corpus.npy", "eval_set.json.gz"]), cut=st.floats(0.0, 0.999),
       shape=st.none() | st.tuples(st.integers(0, 9), st.integers(0, 7)))
def test_saved_evaluation_arrays_load_or_are_one_message(evaluation_folder, name, cut, shape):
    from mrl_plugins.evidence.saved import load_evaluation

    path = evaluation_folder / "evaluation" / name
    original = path.read_bytes()
    try:
        if shape is not None and name.endswith(".npy"):
            np.save(path, np.zeros(shape, dtype=np.float32))
        else:
            path.write_bytes(original[: int(len(original) * cut)])
        try:
            saved = load_evaluation(evaluation_folder)
            assert saved.embeddings["mrl"][0].shape[0] == len(saved.query_ids)
        except UserError:
            pass
    finally:
        path.write_bytes(original)


# -- recipes ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recipe_table(tmp_path_factory, tiny_model_dir):
    from mrl_plugins.testkit.recipes import RecipeBuilder, toy_pairs, write_jsonl

    folder = tmp_path_factory.mktemp("recipe")
    write_jsonl(folder / "pairs.jsonl", toy_pairs())
    data = {"name": "local", "path": "pairs.jsonl", "format": "pairs", "eval_queries": 20}
    builder = RecipeBuilder.tiny(tiny_model_dir, data, output_dir=folder / "out",
                                 dims={"name": "explicit", "values": [32, 16, 8]})
    return folder, builder.table


toml_values = st.recursive(
    st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
    max_leaves=5,
)


@SETTINGS
@given(data=st.data())
def test_any_recipe_table_validates_or_is_one_message(recipe_table, data):
    import tomli_w

    from mrl_plugins.recipe.load import load_recipe

    folder, table = recipe_table
    path = data.draw(st.sampled_from(list(paths_of(table))[1:]))
    raw = mutated(table, path, data.draw(toml_values), delete=data.draw(st.booleans()))
    try:
        text = tomli_w.dumps(raw)
    except (TypeError, ValueError):
        return  # not expressible in TOML: no user can write it
    (folder / "recipe.toml").write_text(text)
    try:
        load_recipe(folder / "recipe.toml")
    except UserError:
        pass


@SETTINGS
@given(assignment=st.text(max_size=40), raw=st.binary(max_size=60))
def test_any_set_assignment_or_recipe_bytes_validate_or_are_one_message(recipe_table, assignment, raw):
    import tomli_w

    from mrl_plugins.recipe.load import load_recipe

    folder, table = recipe_table
    (folder / "recipe.toml").write_text(tomli_w.dumps(table))
    try:
        load_recipe(folder / "recipe.toml", [assignment])
    except UserError:
        pass
    (folder / "broken.toml").write_bytes(raw)
    try:
        load_recipe(folder / "broken.toml")
    except UserError:
        pass


def test_the_tiny_index_fixture_is_whole(index_folder, tmp_path):
    copy_ = tmp_path / "idx"
    shutil.copytree(index_folder, copy_)
    open_and_search(copy_)
