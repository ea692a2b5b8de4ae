"""The published model and its export in other serving stacks, run for real in their own venvs.

setup.sh installs fastembed and infinity-emb under ``.venv/stacks`` (their pins conflict with
ours). fastembed loads the graph ``mrl-run publish --export`` put in ``onnx/`` through its
custom-model API, exactly as the card tells users; Infinity serves the saved model and answers an
OpenAI-style ``dimensions`` request. Both are compared with sentence-transformers. CI sets
``MRL_REQUIRE_STACKS=1``: a missing stack is then a failure, never a silent skip. vLLM and
text-embeddings-inference need a GPU or do not install here: their keys are checked in
tests/test_export.py, and the docs say they were not run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.cli import main
from mrl_plugins.testkit.required import missing
from tests.hub_server import FakeHub

pytestmark = pytest.mark.slow  # starts other Pythons and a server: outside the fast lane

STACKS = Path(__file__).resolve().parent.parent / ".venv" / "stacks"
TEXTS = ["audio mixer for the desktop", "library to parse xml", "a game", "kernel module " * 60,
         "network tools and more network tools"]


def stack_python(name: str) -> Path:
    python = STACKS / name / "bin" / "python"
    if not python.is_file():
        missing("MRL_REQUIRE_STACKS", f"the {name} stack's", f"{python} is missing",
                "./setup.sh installs the serving stacks under .venv/stacks")
    return python


def st_vectors(model_dir: Path, dim: int | None) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu", truncate_dim=dim).encode(TEXTS, normalize_embeddings=True)


@pytest.fixture
def published(finished_tiny_run, tmp_path, monkeypatch):
    """The tiny run published with a 16-dim ONNX export beside it; the run's model now holds it too."""
    run = tmp_path / "run"
    shutil.copytree(finished_tiny_run, run)
    assert main(["export", str(run), "-o", str(tmp_path / "e16"), "--dim", "16"]) == 0
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert main(["publish", str(run), "--export", str(tmp_path / "e16")]) == 0
        pushed = hub.state.files[("alice/tiny-mrl", "main")]
    return run / "model", pushed


def test_fastembed_loads_the_published_export_as_the_card_says(published):
    model_dir, pushed = published
    assert {"onnx/mrl_embedding_16.onnx", "onnx/mrl_embedding_16.json"} <= set(pushed)
    card = pushed["README.md"].decode()
    assert 'model_file="onnx/mrl_embedding_16.onnx"' in card and "PoolingType.DISABLED" in card
    script = f"""
import json, sys
from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType
TextEmbedding.add_custom_model("alice/tiny-mrl-16", pooling=PoolingType.DISABLED, normalization=False, dim=16,
    sources=ModelSource(hf="alice/tiny-mrl"), model_file="onnx/mrl_embedding_16.onnx", output_name="sentence_embedding")
model = TextEmbedding("alice/tiny-mrl-16", specific_model_path={str(model_dir)!r})
print(json.dumps([v.tolist() for v in model.embed(json.loads(sys.stdin.read()))]))
"""
    done = subprocess.run([stack_python("fastembed"), "-c", script], input=json.dumps(TEXTS), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    # the long text too: the published tokenizer_config truncates where sentence-transformers does
    np.testing.assert_allclose(got, st_vectors(model_dir, 16), atol=1e-4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def start_infinity(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str | None]:
    """Infinity serving ``model_dir`` on a free port: (process, its URL), or URL ``None`` if it exited."""
    python = stack_python("infinity")
    port = free_port()
    server = subprocess.Popen([python.parent / "infinity_emb", "v2", "--model-id", str(model_dir), "--port", str(port),
                               "--host", "127.0.0.1", "--engine", "torch", "--device", "cpu", "--no-model-warmup",
                               "--served-model-name", "mrl"], stdout=log.open("w"), stderr=subprocess.STDOUT,
                              env={**os.environ, "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"})
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 240
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
            return server, url
        except OSError:
            if server.poll() is not None:
                return server, None
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail("infinity did not start in 240 s:\n" + log.read_text()[-3000:])
            time.sleep(1)


def infinity_vectors(model_dir: Path, tmp_path: Path, dimensions: int) -> tuple[np.ndarray, np.ndarray]:
    """Infinity serving ``model_dir``: its vectors for TEXTS at full width, and with ``dimensions``."""
    server, url = start_infinity(model_dir, tmp_path / "infinity.log")
    try:
        assert url, (tmp_path / "infinity.log").read_text()[-3000:]
        full = np.array([d["embedding"] for d in post(f"{url}/embeddings", {"model": "mrl", "input": TEXTS})["data"]])
        cut = np.array([d["embedding"] for d in post(f"{url}/embeddings", {"model": "mrl", "input": TEXTS,
                                                                          "dimensions": dimensions})["data"]])
    finally:
        server.terminate()
        server.wait(30)
    return full, cut


def test_infinity_slices_dimensions_without_renormalising(tmp_path):
    """Infinity's ``dimensions`` returns the first dimensions of the normalised vector as they are
    (the card tells users to re-normalise). Run on the packaged all-MiniLM-L6-v2, a model saved in
    the format Infinity's sentence-transformers 3 reads (see the next test)."""
    from mrl_plugins.models import resolve_model

    model_dir = Path(resolve_model("sentence-transformers/all-MiniLM-L6-v2").location)
    full, cut = infinity_vectors(model_dir, tmp_path, 48)
    np.testing.assert_allclose(full, st_vectors(model_dir, None), atol=1e-4)
    np.testing.assert_allclose(cut, full[:, :48], atol=1e-6)  # a slice of the normalised vector …
    assert np.all(np.linalg.norm(cut, axis=1) < 0.99)  # … not re-normalised
    renormalised = cut / np.linalg.norm(cut, axis=1, keepdims=True)
    np.testing.assert_allclose(renormalised, st_vectors(model_dir, 48), atol=1e-4)


def test_infinity_cannot_load_a_model_saved_by_sentence_transformers_6(finished_tiny_run, tmp_path):
    """Why the sentence-transformers-3 copy exists, pinned so the docs change when Infinity does: infinity-emb 0.0.78 requires
    sentence-transformers < 4 and transformers 4, which read neither the module paths
    (``sentence_transformers.base…``) sentence-transformers 6 saves nor the tokenizer class
    (``TokenizersBackend``) transformers 5 writes. If this test fails, Infinity reads our models
    now: update the card (card.md.j2) and the README."""
    server, url = start_infinity(finished_tiny_run / "model", tmp_path / "infinity.log")
    if url is not None:
        server.terminate()
        server.wait(30)
    assert url is None, "Infinity now loads a model saved by sentence-transformers 6: update the docs"
    assert "No module named 'sentence_transformers.base'" in (tmp_path / "infinity.log").read_text()
    tokenizer = subprocess.run([stack_python("infinity"), "-c", "import sys; from transformers import AutoTokenizer; "
                                "AutoTokenizer.from_pretrained(sys.argv[1])", str(finished_tiny_run / "model")],
                               capture_output=True, text=True, timeout=300)
    assert tokenizer.returncode != 0 and "TokenizersBackend does not exist" in tokenizer.stderr


def test_infinity_serves_the_sentence_transformers_3_copy_of_a_saved_model(finished_tiny_run, tmp_path):
    """``mrl-run export --format sentence-transformers-3`` writes what Infinity's sentence-transformers
    3 and transformers 4 read; Infinity then serves the model's own vectors and answers ``dimensions``."""
    model_dir = tmp_path / "model"
    shutil.copytree(finished_tiny_run / "model", model_dir)
    config = model_dir / "config_sentence_transformers.json"  # the full width: what `dimensions` cuts
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "truncate_dim"}))
    st_config = model_dir / "sentence_bert_config.json"  # as sentence-transformers 6 alone saves it
    st_config.write_text(json.dumps({k: v for k, v in json.loads(st_config.read_text()).items() if k != "max_seq_length"}))
    before = {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert main(["export", str(model_dir), "-o", str(tmp_path / "st3"), "--format", "sentence-transformers-3"]) == 0
    assert {p: p.read_bytes() for p in model_dir.rglob("*") if p.is_file()} == before  # the model is untouched
    full, cut = infinity_vectors(tmp_path / "st3", tmp_path, 8)
    np.testing.assert_allclose(full, st_vectors(model_dir, None), atol=1e-4)  # the long text too
    renormalised = cut / np.linalg.norm(cut, axis=1, keepdims=True)
    np.testing.assert_allclose(renormalised, st_vectors(model_dir, 8), atol=1e-4)


def test_the_sentence_transformers_3_copy_refuses_what_it_cannot_say(tiny_model_dir, tmp_path):
    from tests.test_export import cli, make_adapted

    adapted = make_adapted(tiny_model_dir, tmp_path / "adapted")
    code, _, err = cli("export", adapted, "-o", tmp_path / "st3", "--format", "sentence-transformers-3")
    assert code == 2 and "a Dense that adds its input back (use_residual" in err and not (tmp_path / "st3").exists()
    code, _, err = cli("export", tiny_model_dir, "-o", tmp_path / "st3", "--format", "sentence-transformers-3",
                       "--dim", "8")
    assert code == 2 and "--dim: --format sentence-transformers-3 copies the model itself" in err
