"""The index's query encoder (issue #37, item 4): ``mrl-run index`` writes the model as an ONNX
graph with its tokenizer into the index folder, checked against the model; ``mrl-run search``
embeds queries with it and never imports torch; ``--queries`` searches many in one process."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.evaluation.encode import encode_texts, normalise
from mrl_plugins.search.query_encoder import FOLDER, RECORD, QueryEncoder
from mrl_plugins.testkit.recipes import toy_pairs, write_jsonl

pytest.importorskip("onnxruntime")


def cli(*args):
    from mrl_plugins.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rows = [{"doc": f"d{i}", "body": r["positive"]} for i, r in enumerate(toy_pairs(80))]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", rows)


@pytest.fixture(scope="module")
def prompted_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with query and document prompts, which the encoder must apply as the model does."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    model.prompts = {"query": "query: ", "document": "passage: "}
    out = tmp_path_factory.mktemp("prompted") / "model"
    model.save(str(out))
    return out


@pytest.fixture(scope="module")
def index(prompted_model, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "idx"
    code, _, err = cli("index", prompted_model, corpus, "-o", out, "--dim", 8, "--text-column", "body",
                       "--id-column", "doc")
    assert code == 0, err
    return out


def search_in_a_fresh_process(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``mrl-run search`` in its own interpreter, which then says whether torch was imported."""
    script = ("import sys\nfrom mrl_plugins.cli import main\ncode = main(sys.argv[1:])\n"
              "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules}),"
              " file=sys.stderr)\nsys.exit(code)")
    return subprocess.run([sys.executable, "-c", "import json\n" + script, "search", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_the_encoder_embeds_queries_and_documents_as_the_model_does(index, prompted_model):
    from sentence_transformers import SentenceTransformer

    record = json.loads((index / FOLDER / RECORD).read_text())
    assert record["max_abs_difference"] <= 1e-4 and record["prompts"] == {"query": "query: ", "document": "passage: "}
    encoder = QueryEncoder.open(index)
    assert encoder is not None
    model = SentenceTransformer(str(prompted_model), device="cpu")
    texts = ["the audio player", "  Spaces and UPPER case  ", "ünïcödé text", "word " * 500, "x"]
    for role in ("query", "document"):
        expected = normalise(encode_texts(model, texts, role=role))
        np.testing.assert_allclose(encoder(texts, role=role), expected, atol=1e-4)
    plain = normalise(encode_texts(model, texts, role="document"))
    assert np.abs(encoder(texts, role="query") - plain).max() > 1e-3  # the query prompt is applied: it matters
    assert encoder([]).shape == (0, record["full_dim"])


def test_search_uses_it_without_importing_torch_and_finds_what_the_model_finds(index, prompted_model):
    query = toy_pairs(80)[17]["positive"]
    proc = search_in_a_fresh_process(str(index), "--json", query, "-k", "3")  # a query after an option too
    assert proc.returncode == 0, proc.stderr
    imported = json.loads(proc.stderr.strip().splitlines()[-1])
    assert imported == {"torch": False, "transformers": False}
    fast = json.loads(proc.stdout)
    code, out, err = cli("search", index, query, "-k", 3, "--json", "--model", prompted_model)  # the torch path
    assert code == 0, err
    slow = json.loads(out)
    assert [h["id"] for h in fast["hits"]] == [h["id"] for h in slow["hits"]] and "d17" in [h["id"] for h in slow["hits"]]
    np.testing.assert_allclose([h["score"] for h in fast["hits"]], [h["score"] for h in slow["hits"]], atol=1e-4)


def test_queries_from_standard_input_as_plain_and_json_lines(index, prompted_model):
    pairs = toy_pairs(80)
    lines = [pairs[3]["positive"], "", json.dumps({"id": "q-7", "query": pairs[7]["positive"]}),
             json.dumps({"text": pairs[9]["positive"]})]
    proc = search_in_a_fresh_process(str(index), "--queries", "-", "-k", "2", stdin="\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a.get("id") for a in answers] == [None, "q-7", None]  # the blank line is skipped; ids carried
    code, out, err = cli("search", index, *(pairs[i]["positive"] for i in (3, 7, 9)), "-k", 2, "--json", "--model",
                         prompted_model)  # the same queries, embedded by the model
    assert code == 0, err
    expected = [json.loads(line)["hits"] for line in out.splitlines()]
    assert [[h["id"] for h in a["hits"]] for a in answers] == [[h["id"] for h in hits] for hits in expected]
    np.testing.assert_allclose([[h["score"] for h in a["hits"]] for a in answers],
                               [[h["score"] for h in hits] for hits in expected], atol=1e-4)
    assert json.loads(proc.stderr.strip().splitlines()[-1])["torch"] is False


def test_a_queries_file_with_a_bad_line_is_one_message(index, tmp_path):
    (tmp_path / "q.jsonl").write_text('the audio player\n{"query": 3}\n')
    code, _, err = cli("search", index, "--queries", tmp_path / "q.jsonl")
    assert code == 2 and "q.jsonl, line 2: a JSON object needs a non-empty 'query'" in err and "Traceback" not in err
    code, _, err = cli("search", index)
    assert code == 2 and "no query" in err
    code, _, err = cli("search", index, "--queries", tmp_path / "missing.txt")
    assert code == 2 and "missing.txt: no such file" in err


def test_without_an_encoder_search_loads_the_model_and_says_so(tiny_model_dir, corpus, tmp_path):
    code, _, err = cli("index", tiny_model_dir, corpus, "-o", tmp_path / "idx", "--text-column", "body",
                       "--no-query-encoder")
    assert code == 0, err
    assert not (tmp_path / "idx" / FOLDER).exists()
    proc = search_in_a_fresh_process(str(tmp_path / "idx"), toy_pairs(80)[5]["positive"], "-k", "1", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["hits"][0]["id"] == "5"
    assert "no query encoder" in proc.stderr and json.loads(proc.stderr.strip().splitlines()[-1])["torch"] is True


def test_an_encoder_of_another_model_is_not_used(index, tmp_path):
    import shutil

    copy = tmp_path / "idx"
    shutil.copytree(index, copy)
    record = json.loads((copy / FOLDER / RECORD).read_text())
    record["stamp"]["probe"] = [v + 0.5 for v in record["stamp"]["probe"]]
    (copy / FOLDER / RECORD).write_text(json.dumps(record))
    proc = search_in_a_fresh_process(str(copy), toy_pairs(80)[4]["positive"], "-k", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "made from another model" in proc.stderr and json.loads(proc.stdout)["hits"][0]["id"] == "d4"


def test_indexing_embeddings_writes_the_encoder_too(tiny_model_dir, corpus, tmp_path):
    code, _, err = cli("embed", tiny_model_dir, corpus, "-o", tmp_path / "emb", "--text-column", "body")
    assert code == 0, err
    code, _, err = cli("index", tmp_path / "emb", "-o", tmp_path / "idx")
    assert code == 0, err
    encoder = QueryEncoder.open(tmp_path / "idx")
    assert encoder is not None
    from mrl_plugins.search.build import open_index

    assert open_index(tmp_path / "idx").index.model.matches(encoder.stamp)
