"""Fault injection on the serving side (``index``, ``search``, ``demo``, ``report``): nothing the
user built is lost, and every damaged or wrong file is one message with exit 2, no traceback.

Each test is one case of issue #24's catalogue; its name says which. Where the exit code and the
output matter, the command runs through ``mrl_plugins.cli.main`` in-process (monkeypatches
apply); reading standard input runs a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.errors import UserError
from mrl_plugins.outputs.locks import FolderLock
from mrl_plugins.testkit.recipes import run_recipe, toy_pairs, write_jsonl

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')


def cli(*args):
    from mrl_plugins.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: a usage error
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_message(code, err, *expected, exit_code=2):
    assert code == exit_code, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, err


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    rows = [{"doc": f"d{i}", "body": r["positive"]} for i, r in enumerate(toy_pairs(60))]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


@pytest.fixture
def built(tiny_model_dir, corpus_file, tmp_path) -> Path:
    """An index built from the corpus (texts kept), at 8 of 32 dimensions."""
    code, _, err = cli("index", tiny_model_dir, corpus_file, "-o", tmp_path / "idx", "--text-column", "body", "--dim", 8)
    assert code == 0, err
    return tmp_path / "idx"


def index(model, corpus, out, *extra):
    return cli("index", model, corpus, "-o", out, "--text-column", "body", *extra)


# -- 1. --overwrite replaces only an index ------------------------------------------------------------
def test_overwrite_never_replaces_a_finished_run(tiny_model_dir, corpus_file, tmp_path):
    run = tmp_path / "runs" / "my-run"
    (run / "model").mkdir(parents=True)
    (run / "results.json").write_text('{"mine": true}')
    (run / "model" / "weights.bin").write_bytes(b"\x00" * 64)
    before = files_of(run)
    code, _, err = index(tiny_model_dir, corpus_file, run, "--overwrite")
    one_message(code, err, "a finished run is there (model, results.json); nothing was changed",
                "--overwrite replaces only an index")
    assert files_of(run) == before


def test_a_plain_file_named_by_o_is_never_replaced(tiny_model_dir, corpus_file, tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    for extra in ((), ("--overwrite",)):
        code, _, err = index(tiny_model_dir, corpus_file, mine, *extra)
        one_message(code, err, "a file is there, not an index folder; nothing was changed")
    assert mine.read_text() == "mine"


# -- 2. one build per folder, each in its own building folder ---------------------------------------------
def test_a_second_build_into_a_folder_being_built_is_refused_naming_the_first(tiny_model_dir, corpus_file, tmp_path):
    out = tmp_path / "idx"
    first = FolderLock(out, "mrl-run index other.jsonl -o idx")
    first.acquire("unused {holder}")
    try:
        code, _, err = index(tiny_model_dir, corpus_file, out)
        one_message(code, err, "another 'mrl-run index' is building", f"pid {os.getpid()}", "other.jsonl")
        assert not out.exists()
    finally:
        first.release()
    (tmp_path / ".idx.building-4242").mkdir()  # left by a build that was killed: nobody holds the lock now
    code, _, err = index(tiny_model_dir, corpus_file, out)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")) == []


def test_two_concurrent_builds_leave_one_whole_index(tiny_model_dir, corpus_file, tmp_path):
    out = tmp_path / "idx"
    procs = [subprocess.Popen([sys.executable, "-m", "mrl_plugins.cli", "index", str(tiny_model_dir), str(corpus_file),
                               "-o", str(out), "--text-column", "body", "--overwrite"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) in ([0, 0], [0, 2])  # the second waits its turn or is refused
    for code, err in results:
        assert "Traceback" not in err
        if code == 2:
            assert "another 'mrl-run index' is building" in err
    from mrl_plugins.search.build import open_index

    assert open_index(out).index.count == 60


# -- 4. releasing a lock in a folder that became read-only --------------------------------------------------
def test_lock_release_survives_a_read_only_folder(tmp_path, monkeypatch):
    lock = FolderLock(tmp_path / "out", "test")
    lock.acquire("{holder}")
    real = Path.unlink

    def refuse(self, missing_ok=False):
        if self.name == ".out.lock":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    lock.release()  # no exception: the real outcome of the run is what the user sees
    monkeypatch.undo()
    again = FolderLock(tmp_path / "out", "again")
    again.acquire("{holder}")  # the leftover file holds no lock
    again.release()


# -- 6. a damaged index folder is one message, before the model loads ------------------------------------
def _edit_manifest(folder: Path, change):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(change(manifest)))


DAMAGE = {
    "version as a string": lambda f: _edit_manifest(f, lambda m: {**m, "version": "1"}),
    "a JSON list": lambda f: (f / "manifest.json").write_text("[1, 2]"),
    "shortlist_dim changed": lambda f: _edit_manifest(f, lambda m: {**m, "shortlist_dim": 16}),
    "count changed": lambda f: _edit_manifest(f, lambda m: {**m, "count": 61}),
    "texts.jsonl missing": lambda f: (f / "texts.jsonl").unlink(),
    "offsets.npy cut short": lambda f: (f / "offsets.npy").write_bytes((f / "offsets.npy").read_bytes()[:-9]),
    "vectors.npy cut short": lambda f: (f / "vectors.npy").write_bytes((f / "vectors.npy").read_bytes()[:-100]),
    "offsets out of order": lambda f: np.save(f / "offsets.npy", np.load(f / "offsets.npy")[::-1].copy()),
    "store dtype changed": lambda f: _edit_manifest(f, lambda m: {**m, "store_dtype": "float16"}),
    "shortlist.index missing": lambda f: (f / "shortlist.index").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_index_is_one_message_before_the_model_loads(built, damage, monkeypatch):
    import mrl_plugins.models

    DAMAGE[damage](built)
    monkeypatch.setattr(mrl_plugins.models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = cli("search", built, "audio")
    one_message(code, err, "rebuild")


# -- 7. demo and report read their files with the same care -------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir):
    from mrl_plugins.testkit.recipes import RecipeBuilder

    folder = tmp_path_factory.mktemp("finished")
    pairs = write_jsonl(folder / "pairs.jsonl", toy_pairs())
    data = {"name": "local", "path": pairs.name, "format": "pairs", "eval_queries": 20, "corpus_size": 60}
    recipe = RecipeBuilder.tiny(tiny_model_dir, data, output_dir=folder / "run",
                                dims={"name": "explicit", "values": [32, 16, 8]}).write(folder / "recipe.toml")
    run_recipe(recipe, "-q").assert_success()
    return folder / "run"


@pytest.fixture
def run_copy(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


@pytest.mark.parametrize("damage", ["missing", "cut short", "wrong rows"])
def test_the_demo_refuses_damaged_saved_embeddings(run_copy, damage):
    from mrl_plugins.present.demo import DemoData

    target = run_copy / "evaluation" / "mrl.corpus.npy"
    if damage == "missing":
        target.unlink()
    elif damage == "cut short":
        target.write_bytes(target.read_bytes()[:-64])
    else:
        np.save(target, np.load(target)[:-1])
    with pytest.raises(UserError, match=r"mrl\.corpus\.npy.*the run's files are damaged"):
        DemoData.from_run(run_copy)


REPORT_DAMAGE = {
    "a metric missing a dimension": lambda r: r["models"]["mrl"]["metrics"].pop("16"),
    "a metric key missing": lambda r: r["models"]["mrl"]["metrics"]["8"].pop("mrr@10"),
    "no dims": lambda r: r.update(dims=[]),
    "no models": lambda r: r.update(models={}),
}


@pytest.mark.parametrize("damage", list(REPORT_DAMAGE))
def test_a_report_is_never_rewritten_from_results_it_cannot_render(run_copy, damage):
    path = run_copy / "results.json"
    raw = json.loads(path.read_text())
    REPORT_DAMAGE[damage](raw)
    path.write_text(json.dumps(raw))
    before = files_of(run_copy)
    code, _, err = cli("report", run_copy)
    one_message(code, err, "not a valid results file", "nothing was rewritten")
    assert files_of(run_copy) == before


# -- 8. corpora are read with the training data's care ------------------------------------------------------
def test_a_latin1_csv_names_its_line_and_the_encoding_flag(tiny_model_dir, tmp_path):
    corpus = tmp_path / "docs.csv"
    corpus.write_bytes("body\nplain text\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    code, _, err = index(tiny_model_dir, corpus, tmp_path / "idx")
    one_message(code, err, "docs.csv, line 3: not valid utf-8 text", "--encoding latin-1")
    code, _, err = index(tiny_model_dir, corpus, tmp_path / "idx", "--encoding", "latin-1")
    assert code == 0, err
    from mrl_plugins.search.build import open_index

    assert open_index(tmp_path / "idx").texts.get([1])[0]["text"] == "café crème"


def test_a_broken_jsonl_line_is_named(tiny_model_dir, tmp_path):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"body": "one"}\n\n{"body": "two"\n')
    code, _, err = index(tiny_model_dir, corpus, tmp_path / "idx")
    one_message(code, err, "docs.jsonl, line 3: not a JSON object")
    assert not (tmp_path / "idx").exists() and not list(tmp_path.glob(".idx*"))


def test_duplicate_ids_are_refused_naming_both_rows(tiny_model_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "body": "x"}, {"id": "b", "body": "y"}, {"id": "a", "body": "z"}])
    code, _, err = index(tiny_model_dir, corpus, tmp_path / "idx", "--id-column", "id")
    one_message(code, err, "line 1 and line 3 have the same id 'a'")


def test_a_fifo_is_read_as_a_stream(tiny_model_dir, corpus_file, tmp_path):
    fifo = tmp_path / "docs.pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(corpus_file.read_bytes()))
    writer.start()
    code, out, err = index(tiny_model_dir, fifo, tmp_path / "idx")  # no suffix: the first line says JSON lines
    writer.join()
    assert code == 0, err
    assert "indexed 60 documents" in out


def test_standard_input_is_read_with_a_dash(tiny_model_dir, corpus_file, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mrl_plugins.cli", "index", str(tiny_model_dir), "-", "-o",
                           str(tmp_path / "idx"), "--text-column", "body", "--format", "jsonl"],
                          input=corpus_file.read_text(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "indexed 60 documents of standard input" in proc.stdout


def test_a_folder_or_missing_corpus_says_what_it_is(tiny_model_dir, tmp_path):
    code, _, err = index(tiny_model_dir, tmp_path, tmp_path / "idx")  # a folder is a corpus of its files (#19)
    one_message(code, err, "a folder without corpus files")
    code, _, err = index(tiny_model_dir, tmp_path / "nope.jsonl", tmp_path / "idx")
    one_message(code, err, "corpus file not found")


def test_a_missing_model_folder_is_not_looked_up_on_the_hub(corpus_file, tmp_path):
    from mrl_plugins.models.loading import could_be_hub_id

    assert could_be_hub_id("sentence-transformers/all-MiniLM-L6-v2") and could_be_hub_id("all-MiniLM-L6-v2")
    assert not any(map(could_be_hub_id, ["/abs/run/model", "./model", "../run/model", "~/m", "runs/x/model"]))
    code, _, err = index(tmp_path / "run" / "model" / "mrl", corpus_file, tmp_path / "idx")
    one_message(code, err, "no such model folder (and not a Hub id")
    assert "a finished run's model/ folder" in err and not (tmp_path / "idx").exists()


def test_a_huge_document_is_cut_before_tokenising_and_counted(tiny_model_dir, tmp_path, caplog):
    from sentence_transformers import SentenceTransformer

    from mrl_plugins.data.corpus import CHARS_PER_TOKEN

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    huge = "audio mixer " * 2_000_000  # 24 MB on one line
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"body": "short text"}, {"body": huge}])
    code, _, err = index(tiny_model_dir, corpus, tmp_path / "idx")
    assert code == 0, err
    limit = model.max_seq_length * CHARS_PER_TOKEN
    assert f"cut 1 documents longer than {limit} characters" in caplog.text and "line 2" in caplog.text
    from mrl_plugins.search.build import open_index

    stored = np.asarray(open_index(tmp_path / "idx").index.vectors[1])
    np.testing.assert_allclose(stored, model.encode([huge[:100_000]], normalize_embeddings=True)[0], atol=1e-5)


def test_a_data_path_that_is_a_fifo_is_not_called_missing(tiny_recipe, recipe_path, tmp_path):
    os.mkfifo(tmp_path / "pairs.pipe")
    tiny_recipe.set("data", {"name": "local", "path": "pairs.pipe", "format": "pairs"})
    outcome = run_recipe(tiny_recipe.write(recipe_path), command="validate")
    one_message(outcome.code, outcome.err, "'pairs.pipe' is not a regular file")
    assert "not found" not in outcome.err


# -- 9. a read-only destination and a full disk during a build -----------------------------------------------
def test_a_full_disk_during_a_build_leaves_the_old_index_untouched(tiny_model_dir, corpus_file, built, monkeypatch):
    from mrl_plugins.search import build

    before = files_of(built)
    real = build.TextStore.write

    def fill_up(self, records):
        for i, record in enumerate(real(self, records)):
            if i == 30:
                raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
            yield record

    monkeypatch.setattr(build.TextStore, "write", fill_up)
    code, _, err = index(tiny_model_dir, corpus_file, built, "--overwrite")
    one_message(code, err, "the disk filled up while building the index", "is untouched")
    assert files_of(built) == before
    assert not list(built.parent.glob(".idx.building-*"))


def test_safetensors_style_disk_full_is_recognised():
    from mrl_plugins.errors import is_disk_full

    assert is_disk_full(Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                                  "\"No space left on device\" })"))
    assert is_disk_full(OSError(errno.ENOSPC, "full")) and not is_disk_full(ValueError("x"))


def test_an_unwritable_destination_is_one_message(tiny_model_dir, corpus_file, tmp_path, monkeypatch):
    from mrl_plugins.search import build

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro" / ".idx.building"))

    monkeypatch.setattr(build, "build_from_texts", refuse)
    code, _, err = index(tiny_model_dir, corpus_file, tmp_path / "ro" / "idx")
    one_message(code, err, "cannot write there (Permission denied")
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def no_probe(*args, **kwargs):  # root may write anywhere: the write probe is refused instead
        if kwargs.get("prefix") == ".mrl-write-probe-":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", no_probe)
    code, _, err = index(tiny_model_dir, corpus_file, tmp_path / "ro" / "idx")
    one_message(code, err, "-o: ", "cannot be written", "is not writable (Permission denied)")
    assert not (tmp_path / "ro" / "idx").exists()  # refused before anything was made


# -- 13. argument mistakes are usage errors ---------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [("search", "IDX", "audio", "-k", "-3"), ("search", "IDX", "audio", "-k", "0"),
     ("search", "IDX", "audio", "--shortlist", "-1"), ("demo", "RUN", "--port", "99999"),
     ("index", "M", "C", "-o", "X", "--dim", "0"), ("index", "M", "C", "-o", "X", "--batch-size", "x")],
)
def test_argument_mistakes_exit_2_with_a_usage_message(args):
    code, _, err = cli(*args)
    assert code == 2 and "usage:" in err and "Traceback" not in err


def test_a_device_torch_does_not_know_is_refused(built):
    code, _, err = cli("search", built, "audio", "--device", "gpu")
    one_message(code, err, "--device: 'gpu' is not a device torch knows")


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs; needs root, as in CI), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_during_a_streamed_build(tiny_model_dir, corpus_file, small_disk, tmp_path):
    out = small_disk / "idx"
    assert index(tiny_model_dir, corpus_file, out)[0] == 0
    before = files_of(out)
    big = "".join(json.dumps({"body": f"document {i} " + "audio mixer " * 100}) + "\n" for i in range(2000))  # 2.5 MB
    big_file = tmp_path / "big.jsonl"
    big_file.write_text(big)
    code, _, err = index(tiny_model_dir, big_file, out, "--overwrite")  # a regular file: refused before the model loads
    one_message(code, err, "the index needs about", "MiB free; nothing was changed")
    proc = subprocess.run([sys.executable, "-m", "mrl_plugins.cli", "index", str(tiny_model_dir), "-", "-o", str(out),
                           "--text-column", "body", "--overwrite"], input=big, capture_output=True, text=True, timeout=300)
    one_message(proc.returncode, proc.stderr, "the disk filled up while building the index", "is untouched")
    assert files_of(out) == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["idx"]
