"""``mrl-run export``: one graph (or an older-format copy) of a model, checked against it."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from ..components import Command
from ..errors import UserError
from .args import positive
from .logs import setup_logging


@dataclass(frozen=True)
class ExportRequest:
    """What to export: a local model folder (a run's model), the format and the flags it takes."""

    model: str
    """The model as named (a run's folder or a model folder), for messages."""
    model_dir: Path
    output: Path
    format: str
    dim: int | None
    quantize: str | None
    calibration: str | None
    overwrite: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExportRequest:
        """Refuses what cannot be exported before anything is read: a missing runtime, a Hub model,
        flags the format has no use for."""
        from .args import resolve_model_arg

        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError:
            raise UserError("export needs onnx and onnxruntime: pip install 'mrl-plugins[export]' (setup.sh installs "
                            "them).") from None
        resolved, _ = resolve_model_arg(args.model)
        if not resolved.is_local:
            raise UserError(f"{args.model}: export needs a local model (a run's output folder or a model folder); "
                            "download it first.")
        return cls(args.model, Path(resolved.location), args.output, args.format, args.dim, args.quantize,
                   args.calibration, args.overwrite)


def export_model(request: ExportRequest) -> int:
    """Write the export and say what it computes (and how close it is to the model)."""
    from ..export.folder import MARKER
    from ..export.onnx import PROBES, TOLERANCE, export, read_calibration
    from ..export.serving_configs import transformer_config

    model_dir, out = request.model_dir, request.output
    config = transformer_config(model_dir)
    dims = json.loads(config.read_text()).get("matryoshka_dimensions") if config is not None else None
    if request.format == "sentence-transformers-3":
        from ..export.legacy import export_legacy

        given = [flag for flag, value in (("--dim", request.dim), ("--quantize", request.quantize),
                                          ("--calibration", request.calibration)) if value]
        if given:
            raise UserError(f"{', '.join(given)}: --format sentence-transformers-3 copies the model itself, in the "
                            "older format; it has no graph to truncate or quantise. Drop them (ask the server for "
                            "dimensions, then re-normalise).")
        record = export_legacy(model_dir, out, overwrite=request.overwrite, probes=PROBES, tolerance=TOLERANCE,
                               marker=MARKER)
        print(f"wrote {out}: {model_dir} in the format sentence-transformers 3 and transformers 4 read "
              f"({', '.join(record['modules'])}; max difference from the model "
              f"{record['max_abs_difference_fp32']:.1e}).")
        return 0
    if request.format == "openvino":
        try:
            import nncf  # noqa: F401
            import openvino  # noqa: F401
        except ImportError:
            raise UserError("--format openvino needs openvino and nncf: pip install 'mrl-plugins[export]' (setup.sh "
                            "installs them).") from None
    if request.calibration and not (request.format == "openvino" and request.quantize == "int8"):
        raise UserError("--calibration: only an OpenVINO int8 export is calibrated (--format openvino --quantize "
                        "int8); onnxruntime's dynamic int8 sets its ranges per batch. Drop --calibration.")
    calibration = read_calibration(request.calibration) if request.calibration else None
    record = export(model_dir, out, fmt=request.format, dim=request.dim, quantize=request.quantize,
                    overwrite=request.overwrite, matryoshka_dims=dims, calibration=calibration)
    quality = (f"; int8 keeps a mean cosine of {record['mean_cosine_int8_to_fp32']:.4f} to float32"
               if record["quantization"] else "")
    print(f"exported {model_dir} to {out / record['graph']}: token ids in, {record['dim']}-dim normalised "
          "embeddings out (max difference from sentence-transformers "
          f"{record['max_abs_difference_fp32']:.1e}{quality}).")
    return 0


class Export(Command):
    """Export a model to one ONNX or OpenVINO graph: token ids in, the truncated, re-normalised embedding out."""

    name = "export"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", help="A run's output directory or a model folder.")
        parser.add_argument("-o", "--output", type=Path, required=True, help="The export folder to create.")
        parser.add_argument("--format", choices=["onnx", "openvino", "sentence-transformers-3"], default="onnx",
                            help="Graph format: onnx (onnxruntime, fastembed) or openvino (OpenVINO IR); or "
                            "sentence-transformers-3: a copy of the model that sentence-transformers 3 and "
                            "transformers 4 read (Infinity).")
        parser.add_argument("--dim", type=positive,
                            help="Truncate to this width inside the graph (default: full width).")
        parser.add_argument("--quantize", choices=["int8"],
                            help="int8: onnxruntime's dynamic quantisation of the weights (onnx), or NNCF's static "
                            "quantisation calibrated on --calibration texts (openvino).")
        parser.add_argument("--calibration", metavar="CORPUS",
                            help="Documents to calibrate an OpenVINO int8 graph on (a file, folder or pattern, as "
                            "'mrl-run index' reads; the first 300 texts), never the evaluation set.")
        parser.add_argument("--overwrite", action="store_true", help="Replace an earlier export (never anything else).")

    def run(self, args: argparse.Namespace) -> int:
        setup_logging(quiet=True)
        return export_model(ExportRequest.from_args(args))
