"""The runtimes an export is run and quantised with: onnxruntime and OpenVINO, the ecosystem's own tools.

:class:`GraphEmbedder` tokenises with the model's tokenizer (longest texts first, as
``SentenceTransformer.encode`` batches) and hands token ids to a compiled graph; the two runtimes
differ only in how a batch is run. Quantisation is theirs too: onnxruntime's dynamic int8
(``quantize_dynamic``: int8 weights, activation ranges set per batch) and NNCF's post-training
static quantisation for OpenVINO (``nncf.quantize`` with ``ModelType.TRANSFORMER``, what
sentence-transformers' ``export_static_quantized_openvino_model`` runs through optimum-intel),
calibrated on texts the caller chooses (never the evaluation set).

OpenVINO and precision: on a CPU with bfloat16 (AMX or AVX-512 BF16), OpenVINO's CPU plugin runs
a float32 graph in bfloat16 by default (``INFERENCE_PRECISION_HINT``), which is faster and
differs from float32 by about 1e-3. :class:`OpenVinoEmbedder` runs a float32 export with the hint
set to ``f32``, so "float32" means float32 and equals sentence-transformers to 1e-4; an int8 graph
runs with OpenVINO's defaults, as a user loading it would, and the hint it ran with is recorded.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

OPENVINO_XML = "openvino_model.xml"
CALIBRATION_TEXTS = 300
"""Texts NNCF calibrates activation ranges on (sentence-transformers' default is 300 too)."""


class GraphEmbedder(abc.ABC):
    """A compiled graph behind the model's tokenizer: ``embedder(texts)`` → one row per text."""

    names: list[str]
    """The graph's inputs, as the tokenizer names them."""

    def __init__(self, model: Any):
        self.model = model

    @abc.abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """One batch of token ids through the graph: the ``sentence_embedding`` rows."""

    def tokens(self, batch: Sequence[str]) -> dict[str, np.ndarray]:
        tokens = self.model.tokenizer(list(batch), padding=True, truncation=True, max_length=self.model.max_seq_length,
                                      return_tensors="np")
        return {n: tokens[n].astype(np.int64) for n in self.names}

    def __call__(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings in the order of ``texts``; batches are formed longest first, as
        ``SentenceTransformer.encode`` does, so each pads to texts of about its own length."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = [self.run(self.tokens([texts[i] for i in order[start : start + batch_size]]))
               for start in range(0, len(texts), batch_size)]
        if not out:
            return np.zeros((0, 0), np.float32)
        embeddings = np.concatenate(out)
        restored = np.empty_like(embeddings)
        restored[order] = embeddings
        return restored


class OnnxEmbedder(GraphEmbedder):
    """An exported ONNX graph run by onnxruntime alone."""

    def __init__(self, path: Path, model: Any):
        import onnxruntime as ort

        super().__init__(model)
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, inputs)[0]


class OpenVinoEmbedder(GraphEmbedder):
    """An OpenVINO IR run by OpenVINO's CPU plugin; ``float32=True`` pins the inference precision."""

    def __init__(self, path: Path, model: Any, *, float32: bool):
        import openvino as ov

        super().__init__(model)
        config = {"INFERENCE_PRECISION_HINT": "f32"} if float32 else {}
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.names = [i.get_any_name() for i in self.compiled.inputs]
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        """The precision OpenVINO ran the graph's float parts in (``f32``, ``bf16`` …)."""

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.compiled(inputs)[0])


def quantize_onnx_int8(path: Path) -> Path:
    """onnxruntime's dynamic int8 quantisation of the weights, in place of the float32 graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name(path.stem + ".int8.onnx")
    quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
    os.replace(quantized, path)
    return path


def to_openvino(onnx_path: Path, out: Path, *, calibration: Callable[[], list[dict[str, np.ndarray]]] | None) -> Path:
    """Convert the ONNX graph to OpenVINO IR (``openvino.convert_model``) in ``out``; with
    ``calibration`` (batches of token ids), NNCF's static int8 quantisation first."""
    import openvino as ov

    graph = ov.convert_model(str(onnx_path))
    if calibration is not None:
        import nncf

        batches = calibration()
        graph = nncf.quantize(graph, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(batches))
    path = out / OPENVINO_XML
    ov.save_model(graph, str(path), compress_to_fp16=False)
    return path


def calibration_batches(embedder_model: Any, names: list[str], texts: Sequence[str],
                        batch_size: int = 8) -> list[dict[str, np.ndarray]]:
    """Token-id batches of ``texts`` as the graph receives them, for NNCF's statistics."""
    texts = list(texts)[:CALIBRATION_TEXTS]
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = embedder_model.tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                                          max_length=embedder_model.max_seq_length, return_tensors="np")
        out.append({n: tokens[n].astype(np.int64) for n in names})
    return out
