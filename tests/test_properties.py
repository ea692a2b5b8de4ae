"""Property-based tests (Hypothesis) for every reader of user or disk input: the recipe (TOML and
``--set``) and its ``[sweep]`` table, an index folder (manifest, text store, arrays; an engine's
manifest too), an embeddings folder, ``results.json`` and a run's saved evaluation arrays.
Whatever the mutation or truncation, the reader gives a correct result or one
:class:`~mrl_plugins.errors.UserError` (exit 2 at the CLI), never another exception; a change to
what an embeddings folder records is never built into an index."""

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
def built_index(folder: Path, backend: str, params: dict, rows: int, shortlist_dim: int, seed: int) -> Path:
    """A small saved funnel index (16 dims) of random unit vectors, with its text store."""
    from mrl_plugins.evaluation.encode import normalise
    from mrl_plugins.search.folder import TextStore
    from mrl_plugins.search.index import FunnelIndex
    from mrl_plugins.testkit.models import isolated_registry

    folder.mkdir()
    corpus = normalise(np.random.default_rng(seed).normal(size=(rows, 16)).astype(np.float32))
    index = FunnelIndex(16, shortlist_dim, isolated_registry().build("index", backend, params))
    index.add(corpus)
    store = TextStore(folder)
    list(store.write((str(i), f"document {i}") for i in range(rows)))
    index.save(folder, texts=store.path)
    return folder


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory) -> Path:
    return built_index(tmp_path_factory.mktemp("index") / "idx", "flat", {}, rows=40, shortlist_dim=4, seed=0)


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


# -- an engine's index manifest (every nested key, the engine's parameters included) ---------------------------
@pytest.fixture(scope="module")
def engine_index_folder(tmp_path_factory) -> Path:
    return built_index(tmp_path_factory.mktemp("engine") / "idx", "hnsw", {"m": 8, "ef_search": 16}, rows=60,
                       shortlist_dim=8, seed=2)


@SETTINGS
@given(data=st.data())
def test_any_change_to_an_engines_manifest_opens_or_is_one_message(engine_index_folder, data):
    original = json.loads((engine_index_folder / "manifest.json").read_text())
    assert original["index"]["name"] == "hnsw" and original["index"]["params"]
    changed = data.draw(json_mutation(original))
    restored(engine_index_folder, "manifest.json", lambda path, _: path.write_text(json.dumps(changed)))


# -- an embeddings folder --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embeddings_folder(tmp_path_factory, tiny_model_dir) -> Path:
    from mrl_plugins.testkit.recipes import run_cli, toy_pairs, write_jsonl

    root = tmp_path_factory.mktemp("embeddings")
    corpus = write_jsonl(root / "corpus.jsonl", [{"text": r["positive"]} for r in toy_pairs(50)])
    code, _, err = run_cli("embed", tiny_model_dir, corpus, "-o", root / "emb", "--shard-rows", 20)
    assert code == 0, err
    return root / "emb"


EMBEDDINGS_FILES = ["plan.json", "manifest.json", *(f"shard-0000{n}.{ext}" for n in range(3)
                                                     for ext in ("jsonl", "npy", "json"))]


@settings(SETTINGS, max_examples=min(EXAMPLES, 30))
@given(name=st.sampled_from(EMBEDDINGS_FILES), at=st.floats(0.0, 0.999), cut=st.booleans(),
       byte=st.integers(0, 255))
def test_any_damage_to_an_embeddings_folder_is_refused_or_changes_nothing_it_records(embeddings_folder, tmp_path_factory,
                                                                                    name, at, cut, byte):
    """A cut or a changed byte anywhere: ``mrl-run index`` refuses it in one message, or builds the
    index; and a change to a shard's texts or vectors is always refused (the manifest's SHA-256)."""
    from mrl_plugins.search.build import open_index
    from mrl_plugins.testkit.recipes import run_cli

    path = embeddings_folder / name
    original = path.read_bytes()
    where = int(len(original) * at)
    damaged = original[:where] if cut else original[:where] + bytes([byte]) + original[where + 1:]
    out = tmp_path_factory.mktemp("index") / "idx"
    try:
        path.write_bytes(damaged)
        code, _, err = run_cli("index", embeddings_folder, "-o", out, "--setting", "run", "--no-query-encoder")
    finally:
        path.write_bytes(original)
    assert "Traceback" not in err and code in (0, 2), err
    if damaged != original and name.endswith((".jsonl", ".npy")):
        assert code == 2 and not out.exists(), f"{name} was changed and an index was built from it"
    if code == 0:
        assert open_index(out).index.count == 50


# -- a [sweep] table -------------------------------------------------------------------------------------------
SWEEP = {"trials": 3, "sampler": "random", "dims": [16, 8], "weights": [2.0, 1.0], "column": "mrl",
         "space": {"train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
                   "train.batch_size": {"choices": [8, 16]}}}


@SETTINGS
@given(data=st.data())
def test_a_sweep_table_that_validates_gives_every_trial_an_objective(recipe_table, data):
    """Any change to a valid ``[sweep]`` table is refused at load in one message, or the sweep's
    objective reads columns and widths the run will have, and each trial's recipe (every key of
    the space at its ends) loads or is one message."""
    import math

    import tomli_w

    from mrl_plugins.evaluation.metrics import Metric
    from mrl_plugins.recipe.load import load_recipe
    from mrl_plugins.recipe.schema import toml_value
    from mrl_plugins.sweep.study import Sweep, grid

    folder, table = recipe_table
    sweep = data.draw(json_mutation(SWEEP)) if data.draw(st.booleans()) else mutated(
        SWEEP, data.draw(st.sampled_from(list(paths_of(SWEEP))[1:])), data.draw(toml_values),
        delete=data.draw(st.booleans()))
    try:
        text = tomli_w.dumps({**table, "sweep": sweep})
    except (TypeError, ValueError):
        return
    (folder / "recipe.toml").write_text(text)
    try:
        recipe = load_recipe(folder / "recipe.toml")
    except UserError:
        return
    s = recipe.settings.sweep
    assert s is not None and recipe.full_dim is not None
    widths = recipe.dims.component.dims(recipe.full_dim)
    columns = [*recipe.models.keys(), *(c.key for c in recipe.compare)]
    assert s.column in columns and set(s.dims or []) <= set(widths)
    metrics = {d: {Metric(s.metric).key(recipe.settings.eval.k): 0.5} for d in widths}
    runnable = Sweep(recipe, s, folder / "sweep", "sqlite://", s.trials)
    assert math.isfinite(runnable.objective_value(metrics))
    for key, param in s.space.items():
        values = grid(param) if s.sampler == "grid" else (param.choices or [param.low, param.high])
        assert values
        for value in values[:1] + values[-1:]:
            try:
                load_recipe(folder / "recipe.toml", [f"{key}={toml_value(value)}"], check_sweep=False)
            except UserError:
                pass


def test_the_tiny_index_fixture_is_whole(index_folder, tmp_path):
    copy_ = tmp_path / "idx"
    shutil.copytree(index_folder, copy_)
    open_and_search(copy_)
