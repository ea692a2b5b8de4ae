"""The Spark executor on a real local Spark (local[2]): the folder it writes equals the local
executor's byte for byte, on 2,000 real Debian descriptions embedded by the packaged
all-MiniLM-L6-v2; killed mid-run, ``--resume`` finishes it; and what goes wrong is one message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mrl_plugins.testkit.recipes import run_cli, write_jsonl

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "debian-sample-Translation-en.xz"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SHARDS = ["--shard-rows", "250", "--batch-size", "64"]


def same_folder(a: Path, b: Path) -> None:
    """Every file of both folders, byte for byte."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def embed_command(*args) -> list[str]:
    return [sys.executable, "-m", "mrl_plugins.cli", "embed", *[str(a) for a in args]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """2,000 real Debian package descriptions (the first paragraphs of the sample's packages), one empty."""
    from mrl_plugins.builtin.debian import read_catalogue, usable_packages

    rows = [{"id": p.name, "text": p.document} for p in usable_packages(read_catalogue(SAMPLE), 80)[:2000]]
    rows[11]["text"] = ""
    return write_jsonl(tmp_path_factory.mktemp("spark") / "corpus.jsonl", rows)


@pytest.fixture(scope="module")
def local(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "emb"
    code, _, err = run_cli("embed", MODEL, corpus, "-o", out, *SHARDS)
    assert code == 0, err
    return out


def test_mrl_run_plugins_lists_the_executor():
    code, out, err = run_cli("plugins", "-v")
    assert code == 0, err
    assert "spark" in out and "cpus_per_task" in out and "local_cores" in out


@pytest.mark.parametrize("address, says", [
    ("spark://127.0.0.1:1", "cannot reach the Spark master at spark://127.0.0.1:1"),
    ("spark://nohost", "--address spark://nohost: expected spark://HOST:PORT"),
])
def test_a_master_that_is_not_there_is_one_message(corpus, tmp_path, address, says):
    code, _, err = run_cli("embed", MODEL, corpus, "-o", tmp_path / "emb", "--executor", "spark", "--address", address)
    assert code == 2 and "Traceback" not in err
    assert says in err
    assert not (tmp_path / "emb").exists()  # nothing was embedded: no half folder is left


@pytest.mark.slow
def test_no_java_is_one_message(spark_available, corpus, tmp_path):
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(embed_command(MODEL, corpus, "-o", tmp_path / "emb", *SHARDS, "--executor", "spark"),
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "--executor spark: could not start a local Spark" in done.stderr and "Java 17+" in done.stderr


@pytest.mark.slow
def test_the_spark_executor_writes_the_local_executors_folder_byte_for_byte(spark_available, corpus, local, tmp_path):
    """Part 0 of 2 (--shard 0/2) embedded on Spark, part 1 in process: the two parts make the
    local executor's folder, every file byte for byte (a whole Spark run: the resume test below)."""
    out = tmp_path / "emb"
    code, _, err = run_cli("embed", MODEL, corpus, "-o", out, *SHARDS, "--executor", "spark", "--shard", "0/2")
    assert code == 0, err
    assert not (out / "manifest.json").exists()  # the other part is still to come
    code, _, err = run_cli("embed", MODEL, corpus, "-o", out, *SHARDS, "--shard", "1/2")
    assert code == 0, err
    same_folder(out, local)


@pytest.mark.slow
def test_killed_mid_run_and_resumed_it_equals_the_local_folder(spark_available, corpus, local, tmp_path):
    out = tmp_path / "emb"
    args = [MODEL, corpus, "-o", out, *SHARDS, "--executor", "spark", "--executor-param", "window=2"]
    log = tmp_path / "stderr.txt"  # a file, not a pipe: a full pipe would stop the command
    with open(log, "w") as stderr:
        process = subprocess.Popen(embed_command(*args), env={**os.environ, "HF_HUB_OFFLINE": "1"},
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("shard-*.npy")):
            if process.poll() is not None:
                pytest.fail(f"the embed ended before a shard was written: {log.read_text()[-2000:]}")
            assert time.monotonic() < deadline, "no shard written in 300 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)  # the command only: Spark's JVM must notice on its own
        process.wait(timeout=60)
    finally:
        gone = _group_gone(process.pid)
    assert gone, "processes of the killed embed (Spark's JVM, its Python workers) outlived it by a minute"
    done = sorted(p.name for p in out.glob("shard-*.npy"))
    assert 0 < len(done) < 8 and not (out / "manifest.json").exists(), done
    code, _, err = run_cli("embed", *args, "--resume")
    assert code == 0, err
    same_folder(out, local)


def _group_gone(pgid: int, timeout: float = 60.0) -> bool:
    """Whether every process of the group ends within ``timeout``; what is left then is killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)
    return False
