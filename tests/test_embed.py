"""``mrl-run embed``: a corpus read streaming into shards, resumable, splittable, and indexed
without encoding again (issue #19)."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.testkit.recipes import run_cli, write_jsonl

WORDS = "apt dpkg kernel editor shell python network printer audio video font library daemon compiler".split()



def one_message(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def docs(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    return [{"doc": f"d{i}", "body": f"package {i} " + " ".join(rng.choice(WORDS, size=int(rng.integers(3, 12))))}
            for i in range(n)]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def embed(model, corpus, out, *args):
    return run_cli("embed", model, corpus, "-o", out, "--text-column", "body", *args)


@pytest.fixture
def corpus(tmp_path):
    rows = docs(230)
    rows[40]["body"] = "   "  # empty: skipped and counted
    rows[90]["body"] = rows[12]["body"]  # a repeated text: counted
    rows[150]["body"] = " ".join(["compiler"] * 200)  # longer than the tiny model's 64 tokens
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


@pytest.fixture
def reference(tiny_model_dir, corpus, tmp_path):
    """One uninterrupted embed of the corpus, in shards of 50 rows."""
    out = tmp_path / "reference"
    code, _, err = embed(tiny_model_dir, corpus, out, "--shard-rows", 50, "--id-column", "doc")
    assert code == 0, err
    return out


# -- what an embed writes -----------------------------------------------------------------------------------
def test_shards_and_manifest_hold_every_document_once_with_its_checks(tiny_model_dir, corpus, reference):
    from mrl_plugins.embed.folder import EmbeddingsDir, sha256_file
    from mrl_plugins.evaluation.encode import encode_texts
    from mrl_plugins.models import ResolvedModel, load_model

    folder = EmbeddingsDir(reference)
    manifest = folder.open()
    assert manifest["count"] == 229 and manifest["rows_read"] == 230 and manifest["full_dim"] == 32
    assert [s["rows"] for s in manifest["shards"]] == [49, 50, 50, 50, 30]  # row 40 (shard 0) was empty
    assert manifest["corpus"]["files"] == [{"name": "corpus.jsonl", "bytes": corpus.stat().st_size,
                                            "sha256": sha256_file(corpus)}]
    checks = manifest["checks"]
    assert checks["empty"] == {"count": 1, "examples": ["line 41"]}
    assert checks["duplicates"] == {"count": 1, "examples": ["row 91 repeats row 13"]}
    assert checks["over_length"] == {"count": 1, "examples": ["id d150"]}
    for shard in manifest["shards"]:
        assert sha256_file(folder.vectors(shard["shard"])) == shard["vectors_sha256"]
    ids, texts, vectors = [], [], []
    for block, path in folder.shards(manifest):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        ids += [r["id"] for r in rows]
        texts += [r["text"] for r in rows]
        vectors.append(np.asarray(block))
    source = [json.loads(line) for line in corpus.read_text().splitlines()]
    assert ids == [r["doc"] for r in source if r["body"].strip()]
    model = load_model(ResolvedModel(str(tiny_model_dir), str(tiny_model_dir), "local path"), device="cpu")
    expected = encode_texts(model, texts, role="document")
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(np.concatenate(vectors), expected, atol=1e-5)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "parquet", "txt"])
def test_every_corpus_format_is_read_streaming_into_the_same_shards(tiny_model_dir, tmp_path, fmt):
    rows = docs(70)
    path = tmp_path / f"corpus.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt in ("csv", "tsv"):
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, ["doc", "body"], delimiter="," if fmt == "csv" else "\t")
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=16)
    else:
        path.write_text("".join(r["body"] + "\n" for r in rows))
    args = ["--shard-rows", 30] + ([] if fmt == "txt" else ["--id-column", "doc"])
    code, _, err = run_cli("embed", tiny_model_dir, path, "-o", tmp_path / "emb", "--text-column", "body", *args)
    assert code == 0, err
    manifest = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert manifest["count"] == 70 and [s["rows"] for s in manifest["shards"]] == [30, 30, 10]
    lines = [json.loads(line) for n in range(3) for line in (tmp_path / "emb" / f"shard-0000{n}.jsonl").open()]
    assert [r["text"] for r in lines] == [r["body"] for r in rows]
    assert [r["id"] for r in lines] == ([str(i) for i in range(70)] if fmt == "txt" else [r["doc"] for r in rows])


def test_a_folder_of_files_is_one_corpus_and_mixed_formats_are_refused(tiny_model_dir, tmp_path):
    rows = docs(60)
    (tmp_path / "parts").mkdir()
    write_jsonl(tmp_path / "parts" / "b.jsonl", rows[30:])
    write_jsonl(tmp_path / "parts" / "a.jsonl", rows[:30])
    code, _, err = embed(tiny_model_dir, tmp_path / "parts", tmp_path / "emb", "--shard-rows", 25)
    assert code == 0, err
    texts = [json.loads(line)["text"] for n in range(3) for line in (tmp_path / "emb" / f"shard-0000{n}.jsonl").open()]
    assert texts == [r["body"] for r in rows]  # a.jsonl first, rows numbered across the files
    code, _, err = embed(tiny_model_dir, str(tmp_path / "parts" / "*.jsonl"), tmp_path / "glob", "--shard-rows", 25)
    assert code == 0, err
    assert files_of(tmp_path / "glob") == files_of(tmp_path / "emb")  # a pattern reads the same files
    code, out, err = run_cli("index", tiny_model_dir, tmp_path / "parts", "-o", tmp_path / "idx", "--text-column", "body")
    assert code == 0, err
    assert "indexed 60 documents" in out  # mrl-run index reads a folder the same way
    (tmp_path / "parts" / "c.csv").write_text("body\nhello\n")
    code, _, err = embed(tiny_model_dir, tmp_path / "parts", tmp_path / "mixed")
    one_message(code, err, "mix formats", "csv", "jsonl")
    assert not (tmp_path / "mixed").exists()


# -- resuming ---------------------------------------------------------------------------------------------
@pytest.mark.slow  # kills a process it started
def test_a_killed_embed_resumes_to_the_same_bytes_as_an_uninterrupted_one(tiny_model_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "big.jsonl", docs(12_000, seed=3))
    command = [sys.executable, "-m", "mrl_plugins.cli", "embed", str(tiny_model_dir), str(corpus), "-o",
               str(tmp_path / "killed"), "--text-column", "body", "--shard-rows", 400, "--batch-size", 16]
    command = [str(c) for c in command]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = tmp_path / "killed" / "shard-00002.json"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists() and not (tmp_path / "killed" / "manifest.json").exists(), "the embed was not interrupted"
    code, _, err = run_cli("embed", tiny_model_dir, corpus, "-o", tmp_path / "killed", "--text-column", "body")
    one_message(code, err, "unfinished embed", "--resume")
    code, _, err = run_cli(*command[3:], "--resume")
    assert code == 0, err
    code, _, err = run_cli(*command[3:7], tmp_path / "whole", *command[8:])
    assert code == 0, err
    assert files_of(tmp_path / "killed") == files_of(tmp_path / "whole")


def test_a_half_written_or_damaged_shard_is_redone(tiny_model_dir, corpus, reference, tmp_path, caplog):
    import logging
    import shutil

    caplog.set_level(logging.INFO, logger="mrl_plugins")
    damaged = tmp_path / "damaged"
    shutil.copytree(reference, damaged)
    (damaged / "manifest.json").unlink()
    vectors = (damaged / "shard-00001.npy").read_bytes()
    (damaged / "shard-00001.npy").write_bytes(vectors[: len(vectors) // 2])  # cut short by a crash
    (damaged / "shard-00003.json").unlink()  # vectors written, record not: not done
    (damaged / ".shard-00004.npy.tmp-4242").write_bytes(b"half")  # a temporary a killed writer left
    code, _, err = embed(tiny_model_dir, corpus, damaged, "--shard-rows", 50, "--id-column", "doc", "--resume")
    assert code == 0, err
    assert "resuming: 3 of this part's 5 shard(s) are done, 2 to embed" in caplog.text  # 1 (cut short) and 3 redone
    assert files_of(damaged) == files_of(reference)


def test_a_corpus_changed_since_the_shards_were_written_is_refused(tiny_model_dir, corpus, reference):
    (reference / "manifest.json").unlink()
    with open(corpus, "a") as fh:
        fh.write(json.dumps({"doc": "new", "body": "one more package"}) + "\n")
    code, _, err = embed(tiny_model_dir, corpus, reference, "--shard-rows", 50, "--id-column", "doc", "--resume")
    one_message(code, err, "corpus.jsonl changed since the shards were written", "--overwrite")
    code, _, err = embed(tiny_model_dir, corpus, reference, "--shard-rows", 60, "--id-column", "doc", "--resume")
    one_message(code, err, "changed since the shards were written")
    assert not (reference / "manifest.json").exists()


def test_resuming_with_other_options_is_refused(tiny_model_dir, corpus, reference):
    (reference / "manifest.json").unlink()
    code, _, err = embed(tiny_model_dir, corpus, reference, "--shard-rows", 60, "--id-column", "doc", "--resume")
    one_message(code, err, "'shard_rows' was 50 and is now 60")


# -- splitting the work -----------------------------------------------------------------------------------
def test_parts_of_a_split_embed_together_equal_one_run(tiny_model_dir, corpus, reference, tmp_path):
    out = tmp_path / "parts"
    code, stdout, err = embed(tiny_model_dir, corpus, out, "--shard-rows", 50, "--id-column", "doc", "--shard", "1/2")
    assert code == 0, err
    assert "part 1/2" in stdout and "--shard 0/2" in stdout and not (out / "manifest.json").exists()
    code, stdout, err = embed(tiny_model_dir, corpus, out, "--shard-rows", 50, "--id-column", "doc", "--shard", "0/2")
    assert code == 0, err
    assert "embedded 229 documents" in stdout
    assert files_of(out) == files_of(reference)


@pytest.mark.slow
def test_two_processes_embed_what_one_does(tiny_model_dir, corpus, reference, tmp_path):
    out = tmp_path / "pool"
    code, _, err = embed(tiny_model_dir, corpus, out, "--shard-rows", 50, "--id-column", "doc", "--processes", 2)
    assert code == 0, err
    for n in range(5):
        np.testing.assert_allclose(np.load(out / f"shard-0000{n}.npy"), np.load(reference / f"shard-0000{n}.npy"),
                                   atol=1e-5)
        assert (out / f"shard-0000{n}.jsonl").read_bytes() == (reference / f"shard-0000{n}.jsonl").read_bytes()


# -- indexing from shards ---------------------------------------------------------------------------------
@pytest.mark.parametrize("store", ["float32", "int8"])
def test_an_index_from_shards_equals_the_index_from_texts(tiny_model_dir, corpus, reference, tmp_path, store):
    from mrl_plugins.search.build import open_index

    code, _, err = run_cli("index", reference, "-o", tmp_path / "from-shards", "--dim", 8, "--store", store)
    assert code == 0, err
    code, _, err = run_cli("index", tiny_model_dir, corpus, "-o", tmp_path / "from-texts", "--dim", 8, "--store", store,
                       "--text-column", "body", "--id-column", "doc")
    assert code == 0, err
    a, b = open_index(tmp_path / "from-shards"), open_index(tmp_path / "from-texts")
    assert a.index.count == b.index.count == 229
    np.testing.assert_allclose(a.index.decoded(), b.index.decoded(), atol=1e-5 if store == "float32" else 0.02)
    assert (tmp_path / "from-shards" / "texts.jsonl").read_bytes() == (tmp_path / "from-texts" / "texts.jsonl").read_bytes()
    queries = b.index.decoded()[:20]
    assert np.array_equal(a.index.search(queries, 5, shortlist=50).ids, b.index.search(queries, 5, shortlist=50).ids)
    code, out, err = run_cli("search", tmp_path / "from-shards", "package 7", "-k", 1, "--json")
    assert code == 0, err
    assert json.loads(out)["hits"][0]["id"].startswith("d")


def test_index_and_search_refuse_a_model_other_than_the_shards(tiny_model_dir, reference, tmp_path):
    from mrl_plugins.testkit.models import tiny_model

    other = tiny_model(tmp_path / "other", seed=5)
    code, _, err = run_cli("index", other, reference, "-o", tmp_path / "idx")
    one_message(code, err, "was embedded by", "embeds differently")
    assert not (tmp_path / "idx").exists()
    code, _, err = run_cli("index", tiny_model_dir, reference, "-o", tmp_path / "idx")  # the same model: fine
    assert code == 0, err
    code, _, err = run_cli("search", tmp_path / "idx", "package", "--model", other)
    one_message(code, err, "embeds differently")
    code, _, err = run_cli("index", reference, tmp_path / "corpus.jsonl", "-o", tmp_path / "idx2")
    one_message(code, err, "holds embeddings")


def test_an_unfinished_embed_cannot_be_indexed(reference, tmp_path):
    (reference / "manifest.json").unlink()
    code, _, err = run_cli("index", reference, "-o", tmp_path / "idx")
    one_message(code, err, "not finished", "--resume")


def test_the_index_store_is_written_as_vectors_are_added(tmp_path):
    from mrl_plugins.evaluation.encode import normalise
    from mrl_plugins.search.index import FunnelIndex
    from mrl_plugins.testkit.models import isolated_registry

    backend = isolated_registry().build("index", "flat")
    vectors = normalise(np.random.default_rng(0).normal(size=(300, 16)))
    index = FunnelIndex(16, 4, backend)
    index.spool(tmp_path)
    for start in range(0, 300, 64):
        index.add(vectors[start : start + 64])
        assert isinstance(index.vectors, np.memmap) and len(index.vectors) == min(start + 64, 300)
    before = index.search(vectors[:5], 3, shortlist=40)
    index.save(tmp_path)
    loaded = np.load(tmp_path / "vectors.npy")
    np.testing.assert_allclose(loaded, vectors, atol=1e-6)
    after = index.search(vectors[:5], 3, shortlist=40)
    assert np.array_equal(before.ids, after.ids) and list(before.ids[:, 0]) == [0, 1, 2, 3, 4]


# -- mistakes ---------------------------------------------------------------------------------------------
def test_bad_input_is_one_message_and_nothing_is_written(tiny_model_dir, corpus, tmp_path):
    code, _, err = run_cli("embed", tiny_model_dir, corpus, "-o", tmp_path / "a")  # the column is 'body', not 'text'
    one_message(code, err, "no column 'text'", "--text-column")
    (tmp_path / "bad.jsonl").write_bytes(b'{"body": "fine"}\n\xff\xfe not utf-8\n')
    code, _, err = embed(tiny_model_dir, tmp_path / "bad.jsonl", tmp_path / "b")
    one_message(code, err, "bad.jsonl, line 2", "UTF-8")
    code, _, err = embed(tiny_model_dir, tmp_path / "missing.jsonl", tmp_path / "c")
    one_message(code, err, "missing.jsonl: corpus file not found")
    code, _, err = embed(tiny_model_dir, corpus, tmp_path / "d", "--shard", "2/2")
    one_message(code, err, "--shard 2/2", "0 ≤ I < N")
    code, _, err = embed(tiny_model_dir, corpus, tmp_path / "e", "--devices", "cuda:0", "--executor-param", "x=1")
    one_message(code, err, "--executor local", "'x'")
    code, _, err = embed(tiny_model_dir, corpus, tmp_path / "f", "--address", "ray://nowhere:1")
    one_message(code, err, "--address", "executor 'local' has no 'address' parameter")
    rows = docs(20)
    rows[15]["doc"] = "d3"
    code, _, err = embed(tiny_model_dir, write_jsonl(tmp_path / "dups.jsonl", rows), tmp_path / "g", "--id-column", "doc")
    one_message(code, err, "row 4 and row 16 have the same doc", "Nothing was embedded")
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "notes.txt").write_text("mine")
    code, _, err = embed(tiny_model_dir, corpus, tmp_path / "h")
    one_message(code, err, "not an embeddings folder", "nothing was changed")
    assert (tmp_path / "h" / "notes.txt").read_text() == "mine"
    for name in "abcdefg":
        assert not (tmp_path / name / "manifest.json").exists()


def test_a_finished_embed_is_kept_unless_overwritten(tiny_model_dir, corpus, reference):
    before = files_of(reference)
    code, _, err = embed(tiny_model_dir, corpus, reference, "--shard-rows", 50, "--id-column", "doc")
    one_message(code, err, "a finished embed is already there", "--overwrite")
    assert files_of(reference) == before
    code, _, err = embed(tiny_model_dir, corpus, reference, "--shard-rows", 70, "--overwrite")
    assert code == 0, err
    assert json.loads((reference / "manifest.json").read_text())["shard_rows"] == 70


def test_an_unknown_executor_is_named(tiny_model_dir, corpus, tmp_path):
    code, _, err = embed(tiny_model_dir, corpus, tmp_path / "x", "--executor", "dask")
    one_message(code, err, "dask")
