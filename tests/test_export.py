"""``mrl-run export`` and the Matryoshka metadata serving stacks read.

The export's vectors, computed by onnxruntime alone, must equal sentence-transformers' at every
width for a plain model, a warm-started one (the rotation ``Dense``) and an adapted one (the
adaptor's ``Dense``, with its residual GELU); bad input is one message with exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mrl_plugins.testkit.contexts import TextsWarmStartContext
from mrl_plugins.testkit.models import TOPICS

pytestmark = pytest.mark.slow  # trains tiny runs or starts processes: outside the fast lane (-m 'not slow')

TEXTS = ["audio mixer for the desktop", "library to parse xml", "a game", "kernel module " * 40,
         "network tools and more network tools"]


def cli(*args):
    from mrl_plugins.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def st(path, **kwargs):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", **kwargs)


def onnx_vectors(folder: Path, texts=TEXTS) -> np.ndarray:
    """What a user of onnxruntime or OpenVINO gets: the exported tokenizer (truncating where its own
    tokenizer_config.json says), the graph, nothing of ours."""
    from transformers import AutoTokenizer

    record = json.loads((folder / "mrl_export.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="np")
    inputs = {name: tokens[name].astype(np.int64) for name in record["inputs"]}
    if record["format"] == "openvino":
        import openvino as ov

        hint = {"INFERENCE_PRECISION_HINT": "f32"} if record["quantization"] is None else {}
        return np.asarray(ov.Core().compile_model(str(folder / record["graph"]), "CPU", hint)(inputs)[0])
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


@pytest.fixture(scope="module")
def warm_started(tmp_path_factory, tiny_model_dir) -> Path:
    from mrl_plugins.builtin.warm_starts import PCARotation

    model = st(tiny_model_dir)
    PCARotation().apply(model, TextsWarmStartContext(model, [f"{a} {b}" for a in TOPICS for b in TOPICS][:200]))
    assert "Dense" in [type(m).__name__ for m in model]
    folder = tmp_path_factory.mktemp("warm") / "model"
    model.save(str(folder))
    return folder


def make_adapted(tiny_model_dir: Path, folder: Path) -> Path:
    """The tiny model behind a trained-looking adaptor (a ``Dense`` with a residual GELU), saved."""
    import torch

    from mrl_plugins.builtin.adaptor import AdaptorNet, adapted_model

    net = AdaptorNet(32, "mlp")
    torch.manual_seed(0)
    torch.nn.init.normal_(net.linear.weight, std=0.3)  # a real map, not the identity it starts as
    model = adapted_model(st(tiny_model_dir), net)
    model.save(str(folder))
    return folder


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, tiny_model_dir) -> Path:
    return make_adapted(tiny_model_dir, tmp_path_factory.mktemp("adapted") / "model")


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("which", ["plain", "warm_started", "adapted"])
@pytest.mark.parametrize("dim", [None, 16, 8])
def test_the_export_equals_sentence_transformers_at_every_width(fmt, which, dim, tiny_model_dir, request, tmp_path):
    model_dir = tiny_model_dir if which == "plain" else request.getfixturevalue(which)
    out = tmp_path / "export"
    code, _stdout, err = cli("export", model_dir, "-o", out, "--format", fmt, *(["--dim", dim] if dim else []))
    assert code == 0, err
    expected = st(model_dir, truncate_dim=dim).encode(TEXTS, normalize_embeddings=True)
    got = onnx_vectors(out)
    assert got.shape == (len(TEXTS), dim or 32)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    record = json.loads((out / "mrl_export.json").read_text())
    assert record["dim"] == (dim or 32) and (out / record["graph"]).is_file()
    assert sorted(p.name for p in out.glob("*.onnx")) == (["model.onnx"] if fmt == "onnx" else [])


def test_int8_is_recorded_with_its_agreement_and_stays_normalised(tiny_model_dir, tmp_path):
    code, stdout, err = cli("export", tiny_model_dir, "-o", tmp_path / "q", "--dim", 16, "--quantize", "int8")
    assert code == 0, err
    record = json.loads((tmp_path / "q" / "mrl_export.json").read_text())
    assert record["quantization"] == "int8" and 0.9 < record["mean_cosine_int8_to_fp32"] <= 1.0001
    assert "int8 keeps a mean cosine of" in stdout
    vectors = onnx_vectors(tmp_path / "q")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cli("export", tiny_model_dir, "-o", tmp_path / "f", "--dim", 16)[0] == 0
    assert not np.allclose(vectors, onnx_vectors(tmp_path / "f"), atol=1e-6)  # the weights really are int8


def test_openvino_int8_is_calibrated_on_the_texts_given(tiny_model_dir, tmp_path):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(f"{a} {b} utilities" for a in TOPICS for b in TOPICS) + "\n")
    code, stdout, err = cli("export", tiny_model_dir, "-o", tmp_path / "ov", "--format", "openvino", "--quantize",
                            "int8", "--dim", 16, "--calibration", corpus)
    assert code == 0, err
    record = json.loads((tmp_path / "ov" / "mrl_export.json").read_text())
    assert record["calibration_texts"] == min(300, len(TOPICS) ** 2) and record["openvino_precision_hint"]
    assert 0.9 < record["mean_cosine_int8_to_fp32"] <= 1.0001 and "int8 keeps a mean cosine" in stdout
    vectors = onnx_vectors(tmp_path / "ov")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    expected = st(tiny_model_dir, truncate_dim=16).encode(TEXTS, normalize_embeddings=True)
    assert np.mean(np.sum(vectors * expected, axis=1)) > 0.9


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--dim", "33"], "--dim 33: must be between 1 and the model's dimension 32"),
     (["--format", "tflite"], "invalid choice: 'tflite'"),
     (["--format", "openvino", "--quantize", "int8"], "pass --calibration CORPUS"),
     (["--quantize", "int8", "--calibration", "docs.txt"], "only an OpenVINO int8 export is calibrated")],
)
def test_bad_arguments_are_one_message(tiny_model_dir, tmp_path, args, message):
    code, _, err = cli("export", tiny_model_dir, "-o", tmp_path / "e", *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()


def test_an_existing_folder_is_refused_and_only_an_export_is_overwritten(tiny_model_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    for extra in ((), ("--overwrite",)):
        code, _, err = cli("export", tiny_model_dir, "-o", tmp_path / "mine", *extra)
        assert code == 2 and "a folder that is not an export is there (notes.txt)" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    assert cli("export", tiny_model_dir, "-o", tmp_path / "e")[0] == 0
    code, _, err = cli("export", tiny_model_dir, "-o", tmp_path / "e")
    assert code == 2 and "an export is already there" in err
    assert cli("export", tiny_model_dir, "-o", tmp_path / "e", "--overwrite", "--dim", 8)[0] == 0
    assert json.loads((tmp_path / "e" / "mrl_export.json").read_text())["dim"] == 8


def test_a_model_without_a_tokenizer_is_refused(tiny_model_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        for found in bare.rglob(name):
            found.unlink()
    code, _, err = cli("export", bare, "-o", tmp_path / "e")
    assert code == 2 and "no tokenizer files" in err and "Traceback" not in err


def test_a_module_the_export_cannot_represent_is_refused_by_name(tiny_model_dir, tmp_path):
    from sentence_transformers.models import LayerNorm

    model = st(tiny_model_dir)
    model.append(LayerNorm(32))
    model.save(str(tmp_path / "odd"))
    code, _, err = cli("export", tmp_path / "odd", "-o", tmp_path / "e")
    assert code == 2 and "module 3 of the model is LayerNorm, which this export cannot represent" in err
    assert not (tmp_path / "e").exists()


# -- metadata serving stacks read ------------------------------------------------------------------------------
def test_a_run_and_a_publish_write_the_matryoshka_config(tiny_recipe, recipe_path, tmp_path):
    from mrl_plugins.publish.model import write_publication
    from mrl_plugins.results import RunResults
    from mrl_plugins.testkit.recipes import run_recipe

    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    config = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert config["is_matryoshka"] is True and config["matryoshka_dimensions"] == [32, 16, 8]
    assert config["hidden_size"] == 32  # everything else is kept
    # an older run's model, published again: the keys are added then
    stripped = {k: v for k, v in config.items() if k not in ("is_matryoshka", "matryoshka_dimensions")}
    (tmp_path / "out" / "model" / "config.json").write_text(json.dumps(stripped))
    write_publication(tmp_path / "out" / "model", RunResults.load(tmp_path / "out" / "results.json"), None, None)
    again = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert again["matryoshka_dimensions"] == [32, 16, 8] and results.dims == [32, 16, 8]
    # vLLM decides with exactly these two keys (vllm/config/model.py: ModelConfig.is_matryoshka)
    assert bool(again.get("matryoshka_dimensions")) or again.get("is_matryoshka", False)
    # and the export of the run carries them on
    code, _, err = cli("export", tmp_path / "out", "-o", tmp_path / "export", "--dim", 16)
    assert code == 0, err
    exported = json.loads((tmp_path / "export" / "config.json").read_text())
    assert exported["matryoshka_dimensions"] == [32, 16, 8]
    assert json.loads((tmp_path / "export" / "mrl_export.json").read_text())["matryoshka_dimensions"] == [32, 16, 8]


def test_a_saved_model_carries_what_text_embeddings_inference_parses(finished_tiny_run, tmp_path):
    """TEI parses sentence_bert_config.json into ``STConfig { max_seq_length: usize }`` and
    1_Pooling/config.json into ``PoolConfig { pooling_mode_cls_token: bool, pooling_mode_mean_tokens:
    bool, .. }``, both required (router/src/lib.rs); sentence-transformers 6 writes neither."""
    model_dir = finished_tiny_run / "model"
    st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    assert isinstance(st_config["max_seq_length"], int) and st_config["max_seq_length"] == 64
    assert json.loads((model_dir / "tokenizer_config.json").read_text())["model_max_length"] == 64
    assert pooling["pooling_mode_mean_tokens"] is True and pooling["pooling_mode_cls_token"] is False
    assert pooling["pooling_mode_lasttoken"] is False and pooling["word_embedding_dimension"] == 32
    assert pooling["pooling_mode"] == "mean"  # sentence-transformers 6's own key, kept
    # sentence-transformers reads the model exactly as without the added keys
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / "sentence_bert_config.json").write_text(json.dumps({k: v for k, v in st_config.items()
                                                                 if k != "max_seq_length"}))
    (bare / "1_Pooling" / "config.json").write_text(json.dumps({k: v for k, v in pooling.items()
                                                                 if k in ("embedding_dimension", "pooling_mode",
                                                                          "include_prompt")}))
    np.testing.assert_array_equal(st(model_dir).encode(TEXTS), st(bare).encode(TEXTS))
    from mrl_plugins.export.serving_configs import write_serving_configs

    assert len(write_serving_configs(bare)) == 2 and write_serving_configs(bare) == []  # added once, then kept
    card = (model_dir / "README.md").read_text()
    assert "every module of this model is one TEI runs" in card


def test_the_card_says_when_tei_would_embed_differently(warm_started, adapted):
    from mrl_plugins.export.serving_configs import tei_mismatch

    assert "Normalize" in tei_mismatch(adapted)  # Normalize, then the adaptor's Dense, then Normalize again
    reason = tei_mismatch(warm_started)
    kinds = [m["type"].rsplit(".", 1)[-1] for m in json.loads((warm_started / "modules.json").read_text())]
    assert (reason is None) == (kinds[:3] == ["Transformer", "Pooling", "Dense"] and len(kinds) <= 4
                                and (warm_started / "2_Dense").is_dir()), (kinds, reason)


# -- the export comparison: a serving stack's view, scored like every column ------------------------------
def test_the_export_comparison_scores_onnx_columns_with_intervals_and_speed(tiny_recipe, recipe_path, tmp_path):
    from mrl_plugins.evaluation.metrics import ENCODE_SPEEDUP
    from mrl_plugins.testkit.recipes import run_recipe

    tiny_recipe.add_comparison("export", speed_docs=16, rounds=1)
    results = run_recipe(tiny_recipe.write(recipe_path), "-q").assert_success().results
    fp32, int8 = results.models["export(mrl, precision=fp32)"], results.models["export(mrl, precision=int8)"]
    openvino = results.models["export(mrl, precision=int8, runtime=openvino)"]
    for d in results.dims:  # float32 ONNX ranks as torch does: the same scores, to rounding
        assert abs(fp32.metrics[d]["mrr@10"] - results.value("mrl", d)) < 0.01
        assert fp32.metrics[d][ENCODE_SPEEDUP] > 0 and int8.metrics[d][ENCODE_SPEEDUP] > 0
        assert openvino.metrics[d][ENCODE_SPEEDUP] > 0 and 0 < openvino.metrics[d]["mrr@10"] <= 1
    assert fp32.intervals and int8.p_vs_mrl  # per-query scores: intervals and paired tests like any column
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Encoding speed" in report and "MRL · exported ONNX int8" in report and "MRL · exported OpenVINO int8" in report
    top = results.value("mrl", 32)
    kept = openvino.metrics[8]["mrr@10"] / top  # per width, the share of the torch model's full-width score
    assert f"| MRL · exported OpenVINO int8 | {openvino.metrics[32]['mrr@10'] / top:.1%} |" in report
    assert f"{kept:.1%}" in report and f"{openvino.metrics[32][ENCODE_SPEEDUP]:.2f}×" in report
    card = (tmp_path / "out" / "model" / "README.md").read_text()  # the same table on the card
    assert "### On a CPU: exported graphs per width" in card and "| MRL · exported OpenVINO int8 |" in card
    enough = [d for d in results.dims if openvino.metrics[d]["mrr@10"] / top >= 0.95]
    line = (f"MRL · exported OpenVINO int8 at {min(enough)} dimensions: "
            f"{openvino.metrics[min(enough)]['mrr@10'] / top:.1%} of MRL's full-width MRR@10" if enough
            else "MRL · exported OpenVINO int8: no width keeps 95% of MRL's full-width MRR@10")
    assert line in card and line in report


def test_publish_refuses_an_export_of_another_model_and_changes_nothing(finished_tiny_run, tiny_model_dir, tmp_path,
                                                                        monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_tiny_run, run)
    assert cli("export", tiny_model_dir, "-o", tmp_path / "other")[0] == 0
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _, err = cli("publish", run, "--export", tmp_path / "other")
    assert code == 2 and f"it was exported from {tiny_model_dir}, not from the model being published" in err
    code, _, err = cli("publish", run, "--export", tmp_path)
    assert code == 2 and "not an export folder (no mrl_export.json)" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
