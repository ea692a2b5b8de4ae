"""The ``export`` comparison: the model as a serving stack would run it, scored like every column.

The model is exported with :mod:`mrl_plugins.export` (one ONNX graph: the model's modules, then
L2 normalisation), in float32 and, by default, with onnxruntime's dynamic int8 weights too, and
converted to OpenVINO with NNCF's static int8 quantisation, calibrated on the run's training
documents (never the evaluation set; :mod:`mrl_plugins.export_runtimes`); the
evaluation set is embedded by the runtime alone and scored at every width by the run's own scorer,
so each column gets intervals and paired tests like the others. Encoding speed is measured in
the same run, interleaved with the torch model on the same documents, and kept as
``encode_speedup`` (:data:`~mrl_plugins.results.ENCODE_SPEEDUP`) (documents per second as a
ratio to torch float32; the same at every width,
since truncation happens after the graph). The graphs are written to a temporary folder and
discarded: ``mrl-run export`` writes one to keep.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import Field

from .. import hookimpl
from ..components import Column, Comparison, ComparisonContext, Params, ValidationContext
from ..evaluation.encode import index_ir_set
from ..evaluation.metrics import ENCODE_SPEEDUP

logger = logging.getLogger("mrl_plugins")

OnnxPrecision = Literal["fp32", "int8"]


def _both() -> list[OnnxPrecision]:
    return ["fp32", "int8"]


def _int8() -> list[OnnxPrecision]:
    return ["int8"]


class ExportParams(Params):
    model: str = Field("mrl", description="Which of the run's models to export (a model key, e.g. mrl or base).")
    precisions: list[OnnxPrecision] = Field(
        default_factory=_both,
        description="fp32: the exported graph; int8: with onnxruntime's dynamic int8 quantisation of the weights.")
    openvino: list[OnnxPrecision] = Field(
        default_factory=_int8,
        description="OpenVINO graphs to score: int8 (NNCF's static quantisation, calibrated on training documents, "
        "run with OpenVINO's default precision hint) and/or fp32 (run in float32); [] for none.")
    speed_docs: int = Field(256, ge=16, description="Corpus documents encoded to measure speed (per engine and round).")
    rounds: int = Field(3, ge=1, description="Interleaved timing rounds; the fastest of each engine is kept.")


class ExportComparison(Comparison[ExportParams]):
    """The model exported to ONNX (float32, int8) and OpenVINO (int8), each run by its runtime alone: quality per
    width and CPU speed."""

    name = "export"
    Params = ExportParams
    measured_with = frozenset({"precisions", "openvino", "speed_docs", "rounds"})  # each column names its engine

    def label(self, models: Mapping[str, str]) -> str:
        return f"{models[self.params.model]} · exported"

    def check(self, ctx: ValidationContext) -> list[str]:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            return ["export: needs onnx and onnxruntime: pip install 'mrl-plugins[export]' (setup.sh installs them)."]
        if self.params.openvino:
            try:
                import nncf  # noqa: F401
                import openvino  # noqa: F401
            except ImportError:
                return ["export: openvino = " + str(self.params.openvino) + " needs openvino and nncf: pip install "
                        "'mrl-plugins[export]' (setup.sh installs them), or set openvino = [] in its [[compare]] "
                        "table."]
        return []

    def run(self, ctx: ComparisonContext) -> list[Column]:
        from .onnx import check_exportable, export_onnx, tokenizer_inputs
        from .runtimes import (
            GraphEmbedder,
            OnnxEmbedder,
            OpenVinoEmbedder,
            calibration_batches,
            quantize_onnx_int8,
            to_openvino,
        )

        p = self.params
        model = ctx.model(p.model)
        check_exportable(model)
        query_ids, corpus_ids, _ = index_ir_set(ctx.eval_set)
        queries = _prompted(model, "query", [ctx.eval_set.queries[q] for q in query_ids])
        corpus = _prompted(model, "document", [ctx.eval_set.corpus[c] for c in corpus_ids])
        speed_docs = corpus[: p.speed_docs]
        columns: dict[str, dict[int, dict[str, float]]] = {}
        params: dict[str, dict[str, str]] = {}
        with tempfile.TemporaryDirectory(prefix="mrl-export-") as tmp:
            engines: dict[str, GraphEmbedder] = {}
            onnx = Path(tmp) / "model.onnx"
            export_onnx(model, Path(tmp), dim=None)
            for precision in p.precisions:
                folder = Path(tmp) / precision
                folder.mkdir()
                graph = Path(shutil.copy2(onnx, folder / "model.onnx"))
                if precision == "int8":
                    quantize_onnx_int8(graph)
                engines[f"ONNX {precision}"] = OnnxEmbedder(graph, model)
                params[f"ONNX {precision}"] = {"precision": precision}
            calibrate = None
            if "int8" in p.openvino:  # training documents, read only when an int8 graph is calibrated on them
                calibrate = partial(calibration_batches, model, tokenizer_inputs(model),
                                    _prompted(model, "document", ctx.train_texts("documents")))
            for precision in p.openvino:
                name, folder = f"OpenVINO {precision}", Path(tmp) / f"openvino-{precision}"
                folder.mkdir()
                graph = to_openvino(onnx, folder, calibration=calibrate if precision == "int8" else None)
                openvino = OpenVinoEmbedder(graph, model, float32=precision == "fp32")
                engines[name] = openvino
                params[name] = {"precision": precision, "runtime": "openvino"}
                logger.info("export: OpenVINO %s ran its float parts in %s (INFERENCE_PRECISION_HINT)", precision,
                            openvino.precision)
            for name, engine in engines.items():
                columns[name] = ctx.score(engine(queries), engine(corpus))
            speed = _interleaved_speed({"torch": lambda t: model.encode(t, batch_size=64), **engines}, speed_docs,
                                       p.rounds)
        for name, metrics in columns.items():
            for values in metrics.values():
                values[ENCODE_SPEEDUP] = round(speed[name] / speed["torch"], 4)
        return [Column(name, metrics, params=params[name]) for name, metrics in columns.items()]


def _prompted(model, role: str, texts: list[str]) -> list[str]:
    """The text the graph must see: the model's prompt for ``role`` (if any) and the text, as
    sentence-transformers' ``encode_query`` / ``encode_document`` would build it."""
    prompt = (getattr(model, "prompts", None) or {}).get(role, "")
    return [prompt + t for t in texts] if prompt else texts


def _interleaved_speed(engines, texts: list[str], rounds: int) -> dict[str, float]:
    best = dict.fromkeys(engines, 0.0)
    for _ in range(rounds):
        for name, embed in engines.items():
            start = time.perf_counter()
            embed(texts)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - start))
    return best


@hookimpl
def register_comparisons(register):
    register(ExportComparison)

