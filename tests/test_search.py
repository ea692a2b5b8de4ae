"""The search side: funnel indexes over backend plugins, saving and loading, the CLI, and the
funnel / quantize comparisons in a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins import hookimpl
from mrl_plugins.components import IndexBackend, ShortlistIndex
from mrl_plugins.embed.stamp import ModelStamp
from mrl_plugins.errors import UserError
from mrl_plugins.evaluation.encode import normalise
from mrl_plugins.search.build import open_index
from mrl_plugins.search.index import FunnelIndex
from mrl_plugins.testkit.models import isolated_registry
from mrl_plugins.testkit.recipes import run_recipe, toy_pairs, write_jsonl

BACKENDS = ["flat", "hnsw", "int8", "binary"]


@pytest.fixture(scope="module")
def vectors():
    """Unit vectors whose leading dimensions carry most of the variance, as MRL's do."""
    rng = np.random.default_rng(0)
    scale = np.linspace(3.0, 0.2, 64)
    corpus = normalise(rng.normal(size=(800, 64)) * scale)
    queries = normalise(corpus[:40] + 0.4 * rng.normal(size=(40, 64)) * scale)
    exact = np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :10]
    return queries, corpus, exact


def backend(name, **params):
    cls = isolated_registry().get("index", name)
    return cls(cls.Params(**params))


@pytest.mark.parametrize("name", BACKENDS)
def test_a_shortlist_of_the_whole_corpus_is_exact_full_dimension_search(vectors, name):
    queries, corpus, exact = vectors
    index = FunnelIndex(64, 8, backend(name))
    index.add(corpus[:500])
    index.add(corpus[500:])  # added in two parts: ids continue
    hits = index.search(queries, 10, shortlist=len(corpus))
    assert np.array_equal(hits.ids, exact)
    np.testing.assert_allclose(hits.scores, np.take_along_axis(queries @ corpus.T, exact, 1), atol=1e-5)


def test_the_rerank_in_faiss_returns_the_ids_and_scores_of_the_numpy_rerank(vectors, tmp_path):
    queries, corpus, _ = vectors
    index = FunnelIndex(64, 8, backend("flat"))
    index.add(corpus)
    _, candidates = index.shortlist.search(normalise(queries[:, :8]), 50)
    candidates[0, 40:] = -1  # a short shortlist: padded, as a backend pads one
    fast, slow = index._rerank_faiss(normalise(queries), candidates, 10), index._rerank_numpy(queries, candidates, 10)
    assert np.array_equal(fast.ids, slow.ids)
    np.testing.assert_allclose(fast.scores, slow.scores, atol=1e-6)
    index.save(tmp_path / "idx")  # and from a store memory-mapped from disk, through search()
    loaded = open_index(tmp_path / "idx", registry=isolated_registry()).index
    assert isinstance(loaded.vectors, np.memmap) and loaded.normalised
    hits = loaded.search(queries, 10, shortlist=50)
    assert np.array_equal(hits.ids, index.search(queries, 10, shortlist=50).ids)


def test_the_int8_rescore_ranks_as_numpy_does(vectors):
    queries, corpus, _ = vectors
    index = FunnelIndex(64, 8, backend("binary"), store_dtype="int8")
    index.add(corpus)
    _, candidates = index.shortlist.search(normalise(queries[:, :8]), 60)
    candidates[1] = candidates[0]  # two queries with the same candidates
    candidates[2, 30:] = -1  # a short shortlist, padded
    candidates[3, :] = -1  # nothing at all
    fast, slow = index._rerank_int8(normalise(queries), candidates, 10), index._rerank_numpy(queries, candidates, 10)
    assert np.array_equal(fast.ids, slow.ids) and (fast.ids[3] == -1).all()
    np.testing.assert_allclose(fast.scores[fast.ids >= 0], slow.scores[slow.ids >= 0], atol=1e-5)


def test_one_querys_int8_rescore_ranks_as_in_a_batch(vectors, tmp_path):
    """A query alone gets the ids and cosines it gets in a batch, padding included, from memory
    and from a memory-mapped store; the binary codes of a query are sentence-transformers' bits."""
    from mrl_plugins.builtin.index_backends import ubinary

    queries, corpus, _ = vectors
    index = FunnelIndex(64, 8, backend("binary"), store_dtype="int8")
    index.add(corpus)
    _, candidates = index.shortlist.search(normalise(queries[:, :8]), 60)
    candidates[2, 30:] = -1  # a short shortlist, padded
    candidates[3, :] = -1  # nothing at all
    candidates[4, 5:] = -1  # fewer candidates than k
    batch = index._rerank_int8(normalise(queries), candidates, 10)
    for row in range(8):
        one = index._rerank_int8(normalise(queries[row : row + 1]), candidates[row : row + 1], 10)
        assert np.array_equal(one.ids[0][: (one.ids[0] >= 0).sum()], batch.ids[row][batch.ids[row] >= 0]), row
        np.testing.assert_allclose(one.scores[0][one.ids[0] >= 0], batch.scores[row][batch.ids[row] >= 0], atol=1e-5)
    assert (index._rerank_int8(normalise(queries[3:4]), candidates[3:4], 10).ids == -1).all()
    assert np.array_equal(np.packbits(queries[:, :8] > 0, axis=1), ubinary(queries[:, :8]))
    index.save(tmp_path / "idx")
    loaded = open_index(tmp_path / "idx", registry=isolated_registry()).index
    for row in range(5):
        assert np.array_equal(loaded.search(queries[row : row + 1], 10, shortlist=60).ids,
                              index.search(queries[row : row + 1], 10, shortlist=60).ids)


def test_an_ivf_shortlist_that_probes_every_cell_equals_the_flat_one(vectors, tmp_path):
    queries, corpus, _ = vectors
    flat, ivf = FunnelIndex(64, 8, backend("flat")), FunnelIndex(64, 8, backend("ivf", nlist=16, nprobe=16))
    for index in (flat, ivf):
        for start in range(0, len(corpus), 256):  # added in batches, as a streamed build adds
            index.add(corpus[start : start + 256])
    for n in (None, 30):
        a, b = flat.search(queries, 10, shortlist=n), ivf.search(queries, 10, shortlist=n)
        assert np.array_equal(a.ids, b.ids) and np.allclose(a.scores, b.scores, atol=1e-5)
    assert ivf.index_bytes() > flat.index_bytes()  # each code's id in its inverted list, and the centroids
    few = FunnelIndex(64, 8, backend("ivf", nlist=16, nprobe=1))
    few.add(corpus)
    def recall(ids):
        return np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ids, flat.search(queries, 10, shortlist=30).ids)])
    assert recall(few.search(queries, 10, shortlist=30).ids) < 1.0  # one cell of 16 does not see everything
    ivf.save(tmp_path / "ivf")
    loaded = open_index(tmp_path / "ivf", registry=isolated_registry()).index
    assert np.array_equal(loaded.search(queries, 10, shortlist=30).ids, ivf.search(queries, 10, shortlist=30).ids)
    with pytest.raises(UserError, match="pq = 5 does not divide the width 8"):
        FunnelIndex(64, 8, backend("ivf", pq=5))


def test_a_fast_scan_ivf_probing_every_cell_reranks_to_the_exact_top_and_saves(vectors, tmp_path):
    queries, corpus, exact = vectors
    index = FunnelIndex(64, 32, backend("ivf", pq=16, pq_bits=4, nprobe=20))  # 20 cells: 800 vectors / 39
    index.add(corpus)
    # 8 bytes of code (16 sub-vectors of 4 bits), 8 of id, the centroids shared out, and each cell's
    # last block of 32 codes padded
    centroids = 20 * 32 * 4 / 800
    assert 8 + 8 + centroids < index.index_bytes() <= 8 + 8 + centroids + 20 * 31 * 8 / 800
    assert type(index.shortlist.index).__name__ == "IndexIVFPQFastScan"  # FAISS's IVF20,PQ16x4fs
    hits = index.search(queries, 10, shortlist=len(corpus))  # every document reranked at full width
    assert np.array_equal(hits.ids, exact)
    approximate = index.search(queries, 10).ids  # the codes' own ranking, without the rerank
    assert 0.5 < np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approximate, exact)]) < 1.0
    index.save(tmp_path / "fs")
    loaded = open_index(tmp_path / "fs", registry=isolated_registry())
    assert loaded.manifest.index.params["pq_bits"] == 4
    assert np.array_equal(loaded.index.search(queries, 10, shortlist=50).ids, index.search(queries, 10, shortlist=50).ids)


def test_an_int8_store_reranks_close_to_float_in_a_quarter_of_the_bytes(vectors, tmp_path):
    queries, corpus, exact = vectors
    index = FunnelIndex(64, 64, backend("binary"), store_dtype="int8")
    index.add(corpus[:400])
    index.add(corpus[400:])  # calibrated on the first vectors; later ones are clipped to those ranges
    assert index.vectors.dtype == np.int8 and index.rerank_bytes() == 64
    hits = index.search(queries, 10, shortlist=len(corpus))  # every document rescored with int8 codes
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits.ids, exact)]) >= 0.9
    np.testing.assert_allclose(hits.scores[:, 0], (queries @ corpus.T).max(axis=1), atol=0.03)
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["version"] == 2 and manifest["store_dtype"] == "int8"  # older readers say "upgrade"
    loaded = open_index(tmp_path / "idx", registry=isolated_registry()).index
    assert np.array_equal(loaded.search(queries, 10, shortlist=100).ids, index.search(queries, 10, shortlist=100).ids)
    _, candidates = index.shortlist.search(queries, 100)  # the C++ rerank of decoded codes = the numpy one
    fast, slow = index._rerank_int8(queries, candidates, 10), index._rerank_numpy(queries, candidates, 10)
    assert np.array_equal(fast.ids, slow.ids) and np.allclose(fast.scores, slow.scores, atol=1e-6)
    (tmp_path / "idx" / "store_ranges.npy").unlink()
    with pytest.raises(UserError, match=r"store_ranges\.npy missing"):
        open_index(tmp_path / "idx", registry=isolated_registry())


def test_a_longer_shortlist_recovers_more_of_the_exact_top_k(vectors):
    queries, corpus, exact = vectors
    index = FunnelIndex(64, 8, backend("flat"))
    index.add(corpus)

    def overlap(ids):
        return np.mean([len(set(a) & set(b)) for a, b in zip(ids, exact)]) / 10

    plain, short, longer = (overlap(index.search(queries, 10, shortlist=n).ids) for n in (None, 30, 300))
    assert plain < short < longer <= 1.0


def test_binary_search_matches_sentence_transformers_semantic_search_faiss(vectors):
    from sentence_transformers.util.quantization import quantize_embeddings, semantic_search_faiss

    queries, corpus, _ = vectors
    d = 32
    q, c = normalise(queries[:, :d]), normalise(corpus[:, :d])
    index = FunnelIndex(64, d, backend("binary"))
    index.add(corpus)
    ours = index.search(queries, 10)  # the binary index's own ranking, no rescoring
    theirs, _ = semantic_search_faiss(q, corpus_embeddings=quantize_embeddings(c, "ubinary"),
                                      corpus_precision="ubinary", top_k=10, rescore=False)
    # same Hamming distances; the order among equal distances may differ, so compare scores, and ids as sets
    their_ids = np.array([[h["corpus_id"] for h in hits] for hits in theirs])
    their_hamming = np.array([[h["score"] for h in hits] for hits in theirs])
    np.testing.assert_allclose(ours.scores, 1 - 2 * their_hamming / d)
    strict = their_hamming[:, :-1] < their_hamming[:, -1:]  # ids above the last tie are the same
    for mine, their, keep in zip(ours.ids, their_ids, strict):
        assert set(their[:-1][keep]) <= set(mine)


def test_long_binary_shortlists_select_by_counting_and_find_the_same_distances():
    """From ``COUNTING_FROM`` the binary index selects by counting (faster for a funnel's long
    shortlists): the same Hamming distances as the heap, the same ids above the last tie."""
    from mrl_plugins.builtin.index_backends import COUNTING_FROM

    rng = np.random.default_rng(4)
    corpus, queries = rng.normal(size=(3000, 48)).astype(np.float32), rng.normal(size=(5, 48)).astype(np.float32)
    shortlist = backend("binary").create(48)
    shortlist.add(corpus)
    for k in (10, COUNTING_FROM, 1000):
        scores, ids = shortlist.search(queries, k)
        assert shortlist.index.use_heap == (k < COUNTING_FROM)
        shortlist.index.use_heap = True
        heap_scores, heap_ids = shortlist.index.search(np.packbits(queries > 0, axis=1), k)
        np.testing.assert_allclose(scores, 1.0 - 2.0 * heap_scores / 48, rtol=1e-6)
        for mine, theirs, d in zip(ids, heap_ids, heap_scores):
            assert set(theirs[d < d[-1]]) <= set(mine)


def test_int8_keeps_rankings_close_to_float(vectors):
    queries, corpus, exact = vectors
    index = FunnelIndex(64, 64, backend("int8"))
    index.add(corpus)
    assert index.index_bytes() == 64  # one byte per dimension
    overlap = np.mean([len(set(a) & set(b)) for a, b in zip(index.search(queries, 10).ids, exact)]) / 10
    assert overlap > 0.9


@pytest.mark.parametrize("name", BACKENDS)
def test_save_then_load_gives_identical_results(vectors, tmp_path, name):
    queries, corpus, _ = vectors
    index = FunnelIndex(64, 16, backend(name), store_dtype="float16")
    index.add(corpus)
    before = index.search(queries, 10, shortlist=50)
    index.save(tmp_path / "idx")
    loaded = open_index(tmp_path / "idx", registry=isolated_registry())
    after = loaded.index.search(queries, 10, shortlist=50)
    assert np.array_equal(before.ids, after.ids) and np.allclose(before.scores, after.scores)
    assert isinstance(loaded.index.vectors, np.memmap)  # the rerank vectors stay on disk


def test_a_corrupt_or_foreign_folder_is_a_clear_error(vectors, tmp_path):
    _queries, corpus, _ = vectors
    index = FunnelIndex(64, 16, backend("flat"))
    index.add(corpus)
    index.save(tmp_path / "idx")
    np.save(tmp_path / "idx" / "vectors.npy", corpus[:10])
    with pytest.raises(UserError, match=r"vectors.npy holds float32 \(10, 64\), the manifest says float32 \(800, 64\)"):
        open_index(tmp_path / "idx", registry=isolated_registry())
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not an index"):
        open_index(tmp_path / "empty")


def test_the_manifest_rejects_another_model(vectors, tmp_path, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    from mrl_plugins.testkit.models import tiny_model

    _queries, corpus, _ = vectors
    mine = SentenceTransformer(str(tiny_model_dir), device="cpu")
    other = SentenceTransformer(str(tiny_model(tmp_path / "other", seed=7)), device="cpu")
    index = FunnelIndex(64, 16, backend("flat"), model=ModelStamp.of(mine, "mine"))
    index.add(corpus)
    index.save(tmp_path / "idx")
    loaded = open_index(tmp_path / "idx")
    loaded.check_model(ModelStamp.of(mine, "mine, under another name"))  # same weights: fine
    with pytest.raises(UserError, match="was built with the model 'mine'"):
        loaded.check_model(ModelStamp.of(other, "other"))


# -- a third-party backend, registered exactly like a data source --------------------------------
class NumpyIndex(ShortlistIndex):
    def __init__(self, dim):
        self.dim, self.rows = dim, np.zeros((0, dim), np.float32)

    def add(self, vectors):
        self.rows = np.vstack([self.rows, vectors])

    def search(self, queries, k):
        scores = queries @ self.rows.T
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, 1), ids

    def save(self, path):
        np.save(path.with_suffix(".npy"), self.rows)
        path.write_text("numpy")

    def bytes_per_vector(self):
        return 4.0 * self.dim

    def __len__(self):
        return len(self.rows)


class NumpyBackend(IndexBackend):
    """Brute force in numpy."""

    name = "numpy"

    def create(self, dim):
        return NumpyIndex(dim)

    def load(self, path, dim):
        index = NumpyIndex(dim)
        index.rows = np.load(path.with_suffix(".npy"))
        return index


class NumpyPlugin:
    @hookimpl
    def register_index_backends(self, register):
        register(NumpyBackend)


def test_a_plugin_backend_serves_a_funnel(vectors, tmp_path):
    queries, corpus, exact = vectors
    registry = isolated_registry(NumpyPlugin())
    index = FunnelIndex(64, 8, registry.get("index", "numpy")())
    index.add(corpus)
    assert np.array_equal(index.search(queries, 10, shortlist=len(corpus)).ids, exact)
    index.save(tmp_path / "idx")
    assert open_index(tmp_path / "idx", registry=registry).index.count == len(corpus)


# -- mrl-run index / mrl-run search ------------------------------------------------------------
@pytest.fixture
def corpus_file(tmp_path) -> Path:
    rows = [{"doc": f"d{i}", "body": r["positive"]} for i, r in enumerate(toy_pairs(120))]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def cli(*args):
    import contextlib
    import io

    from mrl_plugins.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def test_index_then_search_prints_the_expected_top_hit(tiny_model_dir, corpus_file, tmp_path):
    code, out, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--dim", 8,
                         "--text-column", "body", "--id-column", "doc", "--index", "hnsw")
    assert code == 0, err
    assert "indexed 120 documents" in out and "hnsw shortlist at 8 of 32 dims" in out
    target = toy_pairs(120)[17]
    code, out, err = cli("search", tmp_path / "idx", target["positive"], "-k", 3, "--shortlist", 40)
    assert code == 0, err
    first = out.splitlines()[1]
    assert "[d17]" in first and target["positive"] in first
    code, out, _ = cli("search", tmp_path / "idx", target["positive"], "-k", 2, "--json")
    assert json.loads(out)["hits"][0]["id"] == "d17"


def test_threads_set_one_query_and_a_batch_alike_and_are_restored(tiny_model_dir, corpus_file, tmp_path,
                                                                    monkeypatch):
    import faiss

    from mrl_plugins.search import index as funnel

    seen: list[int] = []
    search = FunnelIndex.search

    def spying(self, queries, k, shortlist=None):
        with funnel.one_query_threads(len(np.atleast_2d(queries))):
            seen.append(faiss.omp_get_max_threads())
        return search(self, queries, k, shortlist)

    monkeypatch.setattr(FunnelIndex, "search", spying)
    code, _, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--dim", 8,
                       "--text-column", "body", "--id-column", "doc", "--index", "flat")
    assert code == 0, err
    faiss.omp_set_num_threads(2)
    seen.clear()
    assert cli("search", tmp_path / "idx", "audio", "-k", 2)[0] == 0  # default: one query on one thread
    assert seen == [1]
    seen.clear()
    code, _, err = cli("search", tmp_path / "idx", "audio", "-k", 2, "--threads", 2)
    assert code == 0, err
    assert seen == [2] and faiss.omp_get_max_threads() == 2  # kept for the one query, restored after
    from mrl_plugins.testkit.recipes import run_cli

    code, _, err = run_cli("search", tmp_path / "idx", "audio", "--threads", 0)
    assert code == 2 and "--threads: 0 is out of range" in err


def test_the_cards_index_flags_carry_the_backends_parameters(tiny_model_dir, corpus_file, tmp_path):
    """A funnel measured with backend parameters: the card's `mrl-run index` flags (shell words,
    TOML values) build that index, string parameters included."""
    import shlex

    from mrl_plugins.components import SearchSetting
    from mrl_plugins.present.card import index_flags
    from mrl_plugins.testkit.recipes import run_cli

    flags = index_flags(SearchSetting(8, "hnsw", {"m": 8, "storage": "int8"}, 40))
    assert flags == """ --index hnsw --index-param m=8 --index-param 'storage="int8"'"""
    assert index_flags(SearchSetting(8)) == ""
    code, _, err = run_cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--dim", 8, "--text-column",
                           "body", *shlex.split(flags))
    assert code == 0, err
    params = json.loads((tmp_path / "idx" / "manifest.json").read_text())["index"]["params"]
    assert params["m"] == 8 and params["storage"] == "int8"


def test_plain_text_corpus_and_quantised_shortlist(tiny_model_dir, tmp_path):
    lines = [r["positive"] for r in toy_pairs(60)]
    (tmp_path / "docs.txt").write_text("\n".join(lines) + "\n")
    code, out, err = cli("index", tiny_model_dir, tmp_path / "docs.txt", "-o", tmp_path / "idx", "--dim", 16,
                         "--quantize", "binary")
    assert code == 0, err
    assert "binary shortlist at 16 of 32 dims (2 bytes per vector in memory)" in out
    code, out, _ = cli("search", tmp_path / "idx", lines[5], "-k", 1, "--shortlist", 30)
    assert "[5]" in out.splitlines()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dim", "64"], "--dim 64: must be between 1 and the model's dimension 32"),
        (["--index", "scann"], "unknown index backend 'scann'"),
        (["--text-column", "content"], "no column 'content'"),
        (["--index", "binary", "--quantize", "int8"], "does not combine with --index binary"),
        (["--index", "hnsw", "--index-param", "m=1"], "parameter 'm': input should be greater than or equal to 4 "
                                                       "(got 1); m is int, default 32"),
    ],
)
def test_bad_index_input_is_one_message_and_exit_2(tiny_model_dir, corpus_file, tmp_path, args, message):
    code, _, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--text-column", "body", *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "idx").exists()


def test_an_empty_corpus_and_an_occupied_folder_are_refused(tiny_model_dir, corpus_file, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    code, _, err = cli("index", tiny_model_dir, tmp_path / "empty.jsonl", "-o", tmp_path / "idx")
    assert code == 2 and ("empty" in err) and "Traceback" not in err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("mine")
    for extra in ((), ("--overwrite",)):  # --overwrite replaces an index, never a folder of the user's
        code, _, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "taken", "--text-column", "body", *extra)
        assert code == 2 and "a folder that is not an index is there (mine.txt); nothing was changed" in err
        assert (tmp_path / "taken" / "mine.txt").read_text() == "mine"
    assert cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--text-column", "body")[0] == 0
    code, _, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--text-column", "body")
    assert code == 2 and "an index is already there" in err
    code, _, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--text-column", "body", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")) == []  # no building or lock left


def test_bad_search_input_is_one_message_and_exit_2(tiny_model_dir, corpus_file, tmp_path):
    from mrl_plugins.testkit.models import tiny_model

    assert cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--text-column", "body")[0] == 0
    code, _, err = cli("search", tmp_path / "idx", "audio", "-k", 10, "--shortlist", 5)
    assert code == 2 and "--shortlist 5 is smaller than -k 10" in err
    other = tiny_model(tmp_path / "other", seed=3)
    code, _, err = cli("search", tmp_path / "idx", "audio", "--model", other)
    assert code == 2 and "was built with the model" in err and "Traceback" not in err
    code, _, err = cli("search", tmp_path / "nowhere", "audio")
    assert code == 2 and "no such folder" in err


# -- the comparisons, in a run -------------------------------------------------------------------
def test_funnel_and_quantize_land_in_results_report_and_card(tiny_recipe, recipe_path, tmp_path):
    tiny_recipe.set("data.eval_queries", 30).set("data.corpus_size", 100)
    tiny_recipe.add_comparison("funnel", shortlist=[10, 40]).add_comparison("quantize", precisions=["binary"])
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    keys = ["funnel(mrl, shortlist=10)", "funnel(mrl, shortlist=40)",
            "funnel(mrl, index=binary, shortlist=40, store=int8)", "funnel(mrl, index=hnsw, shortlist=40, store=float32)",
            "quantize(mrl, precision=binary, rescore=false)", "quantize(mrl, precision=binary, rescore=true)"]
    assert [k for k in results.models if results.models[k].kind == "comparison"] == keys
    # the full-width baselines are measured beside the truncated settings, and every cost row has a recall
    baseline = results.models["funnel(mrl, index=binary, shortlist=40, store=int8)"]
    assert baseline.costs[32].index_bytes == 4 and baseline.costs[32].rerank_bytes == 32
    assert all(m.metrics[d]["overlap@10"] is not None for m in results.search_columns().values() for d in m.metrics)
    assert results.models["mrl"].metrics[32]["overlap@10"] == 1.0
    funnel = results.models["funnel(mrl, shortlist=40)"]
    assert funnel.metrics[32]["mrr@10"] == results.value("mrl", 32)  # at full dimension the funnel is exact
    assert funnel.metrics[32]["overlap@10"] == 1.0
    assert funnel.costs[8].index_bytes == 32 and funnel.costs[8].rerank_bytes == 128
    assert results.models["quantize(mrl, precision=binary, rescore=false)"].costs[32].index_bytes == 4
    assert results.models["mrl"].costs[32].ratio_single == 1.0 and results.models["mrl"].costs[16].index_bytes == 64
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Quality versus cost" in report and "| MRL · funnel 40 | 8 |" in report
    assert "Cheapest keeping ≥ 99% by memory" in report and (tmp_path / "out" / "costs.png").is_file()
    card = (tmp_path / "out" / "model" / "README.md").read_text()
    mrl_json = json.loads((tmp_path / "out" / "model" / "mrl.json").read_text())
    assert "### Serving" in card and mrl_json["serving"]["label"] in card
    assert "recall@10 vs exact" in report and "◆" in report and "Timed on: " in report and "faiss openblas" in report
    # mrl-run index RUN builds the run's serving choice: plant one (the binary + int8 baseline at 16 dims, faster
    # than exact search, all else dearer) so that the choice is a funnel setting whatever this tiny run measured
    from mrl_plugins.evidence.decisions import index_setting

    chosen = "funnel(mrl, index=binary, shortlist=40, store=int8)"
    for columns in (results.models, results.validation):
        for key, column in columns.items():
            for d in list(column.costs or {}):
                if key == chosen:
                    column.metrics[d] = dict(column.metrics[32])
                    column.costs[d] = column.costs[d].model_copy(update={"ratio_single": 0.5})
                else:
                    column.costs[d] = column.costs[d].model_copy(update={"index_bytes": 10_000.0})
    (tmp_path / "out" / "results.json").write_text(results.to_json())
    setting = index_setting(results)
    assert (setting.column, setting.dim, setting.index, setting.store) == (chosen, 8, "binary", "int8")
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"text": r["positive"]} for r in toy_pairs(60)])
    code, out, err = cli("index", tmp_path / "out", corpus, "-o", tmp_path / "idx", "--setting", "run")
    assert code == 0 and "the run's serving choice" in out, err
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert (manifest["shortlist_dim"], manifest["index"]["name"], manifest["store_dtype"], manifest["shortlist"]) \
        == (8, "binary", "int8", 40)
    code, out, err = cli("search", tmp_path / "idx", toy_pairs(60)[0]["anchor"], "-k", 3, "--json")
    assert code == 0 and len(json.loads(out)["hits"]) == 3, err  # reranked from the index's own shortlist (40)


def test_search_comparisons_are_checked_at_validate(tiny_recipe, recipe_path):
    tiny_recipe.add_comparison("funnel", shortlist=[5], index="scann").add_comparison("funnel", index="hnsw",
                                                                                        index_params={"m": 2})
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    assert outcome.code == 2
    assert "[[compare]] #1 shortlist: 5 is smaller than k = 10" in outcome.err
    assert "[[compare]] #1 index: unknown index backend 'scann'" in outcome.err
    assert ("[[compare]] #2 index_params.m (index backend 'hnsw'): input should be greater than or equal to 4 "
            "(got 2); m is int, default 32") in " ".join(outcome.err.split())
