"""The Ray executor on a local 2-CPU Ray instance writes what the in-process executor writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.testkit.recipes import run_cli, toy_pairs, write_jsonl

pytestmark = pytest.mark.slow  # starts Ray (seconds) and its worker processes



@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rows = [{"text": p["positive"]} for p in toy_pairs(260)]
    rows[7]["text"] = ""
    rows[30]["text"] = " ".join(["word"] * 120)  # over the tiny model's 64 tokens
    return write_jsonl(tmp_path_factory.mktemp("ray") / "corpus.jsonl", rows)


@pytest.fixture(scope="module")
def local(tiny_model_dir, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "emb"
    code, _, err = run_cli("embed", tiny_model_dir, corpus, "-o", out, "--shard-rows", 60, "--batch-size", 32)
    assert code == 0, err
    return out


def same_embeddings(a: Path, b: Path) -> None:
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    for key in ("count", "rows_read", "checks", "model", "full_dim", "dtype"):
        assert ma[key] == mb[key], key
    assert [s["texts_sha256"] for s in ma["shards"]] == [s["texts_sha256"] for s in mb["shards"]]
    for shard in ma["shards"]:
        name = f"shard-{shard['shard']:05d}.npy"
        np.testing.assert_allclose(np.load(a / name), np.load(b / name), atol=1e-5)  # Ray batches differently


def test_an_unreachable_cluster_is_one_message(tiny_model_dir, corpus, tmp_path):
    code, _, err = run_cli("embed", tiny_model_dir, corpus, "-o", tmp_path / "emb", "--executor", "ray",
                       "--address", "ray://127.0.0.1:1")
    assert code == 2 and "Traceback" not in err
    assert "cannot reach the Ray cluster at ray://127.0.0.1:1" in err
    assert not (tmp_path / "emb").exists()  # nothing was embedded: no half folder is left


def test_the_ray_executor_writes_what_the_local_one_does(local_ray, tiny_model_dir, corpus, local, tmp_path):
    out = tmp_path / "emb"
    code, stdout, err = run_cli("embed", tiny_model_dir, corpus, "-o", out, "--shard-rows", 60, "--batch-size", 32,
                            "--executor", "ray", "--executor-param", "workers=2")
    assert code == 0, err
    assert "embedded 259 documents" in stdout
    same_embeddings(out, local)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checks"]["over_length"]["count"] == 1 and manifest["checks"]["empty"]["count"] == 1


def test_ray_resumes_only_the_shards_not_done(local_ray, tiny_model_dir, corpus, local, tmp_path):
    out = tmp_path / "emb"
    shutil.copytree(local, out)
    (out / "manifest.json").unlink()
    (out / "shard-00002.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npy")}
    code, _, err = run_cli("embed", tiny_model_dir, corpus, "-o", out, "--shard-rows", 60, "--batch-size", 32,
                       "--executor", "ray", "--resume")
    assert code == 0, err
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npy")}
    assert [n for n in before if before[n] != after[n]] == ["shard-00002.npy"]
    same_embeddings(out, local)
