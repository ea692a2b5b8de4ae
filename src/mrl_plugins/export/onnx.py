"""``mrl-run export``: one graph (ONNX or OpenVINO) from token ids to the final, truncated, re-normalised embedding.

sentence-transformers exports only the transformer: pooling, every ``Dense`` (the warm start's
rotation, the adaptor), normalisation and truncation stay in Python, so an ONNX model loaded by
onnxruntime, fastembed or another stack embeds differently from the model it came from. Here the
model's own modules, exactly the ones ``SentenceTransformer.encode`` runs, are traced by torch's
ONNX exporter, and the truncation to ``--dim`` and the L2 re-normalisation are appended in the
same graph. The result equals ``SentenceTransformer(model, truncate_dim=dim).encode(texts,
normalize_embeddings=True)``; every export is checked against that on probe sentences and refused,
with nothing written, if it differs by more than ``TOLERANCE``.

Why torch's exporter over optimum's: optimum exports the transformer alone, and the head would
then be a second graph merged onto it; tracing the pipeline sentence-transformers runs keeps
one source of truth for what the model computes (nothing here re-implements pooling or a layer).
A module the exporter cannot represent faithfully (anything but Transformer, Pooling, Dense and
Normalize) is refused by name, never exported silently wrong.

``--quantize int8`` applies onnxruntime's dynamic quantisation (int8 weights, the ecosystem's own
tool) to the exported graph; its vectors differ from float32 by design, and the export records
how much (mean cosine to the float32 export on the probe sentences).

``--format openvino`` converts that checked ONNX graph with ``openvino.convert_model`` (float32,
checked against sentence-transformers like the ONNX graph) and, with ``--quantize int8``,
quantises it with NNCF's static post-training quantisation, calibrated on ``--calibration``
texts (:mod:`mrl_plugins.export_runtimes`).

The folder holds ``model.onnx`` (or ``openvino_model.xml`` and ``.bin``), the tokenizer files
(``model_max_length`` set to the model's ``max_seq_length``), the transformer's ``config.json``
(with the Matryoshka metadata) and ``mrl_export.json``, which says what the graph computes.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..models.checks import weights_fingerprint
from ..outputs.digests import sha256_file
from .folder import MARKER, check_destination, exporting
from .runtimes import (
    CALIBRATION_TEXTS,
    OPENVINO_XML,
    OnnxEmbedder,
    OpenVinoEmbedder,
    calibration_batches,
    quantize_onnx_int8,
    to_openvino,
)

logger = logging.getLogger("mrl_plugins")

EXPORTABLE = ("Transformer", "Pooling", "Dense", "Normalize")
"""Module classes whose forward torch's exporter represents exactly (checked on every export)."""
TOLERANCE = 1e-4
PROBES = [
    "a small command-line tool to resize images",
    "Python bindings for the GNU scientific library",
    "x",
    "documentation " * 300,  # longer than the model reads: the tokenizer's truncation is exercised
]


def check_exportable(model: Any) -> None:
    """Refuse a model with a module the export cannot carry, naming it."""
    for index, module in enumerate(model):
        kind = type(module).__name__
        if kind not in EXPORTABLE:
            raise UserError(f"module {index} of the model is {kind}, which this export cannot represent (it carries "
                            f"{', '.join(EXPORTABLE)}); nothing was written. Export the transformer alone with "
                            "sentence-transformers (backend=\"onnx\") and apply that module in your own code.")


def tokenizer_inputs(model: Any) -> list[str]:
    """The graph's inputs: what the model's tokenizer produces (BERT adds token_type_ids, RoBERTa does not)."""
    names = list(getattr(model.tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in names]


def export_onnx(model: Any, out: Path, *, dim: int | None, opset: int = 17) -> Path:
    """Trace the model's modules plus truncation and re-normalisation into ``out/model.onnx``."""
    import torch

    from ..models import full_width

    width = dim or full_width(model)
    inputs = tokenizer_inputs(model)

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pipeline = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = dict(zip(inputs, tensors))
            for module in self.pipeline:
                features = module(features)
            embedding = features["sentence_embedding"][:, :width]
            return torch.nn.functional.normalize(embedding, p=2, dim=-1)

    sample = model.tokenizer(PROBES[:2], padding=True, truncation=True, return_tensors="pt")
    dynamic = {name: {0: "batch", 1: "sequence"} for name in inputs}
    dynamic["sentence_embedding"] = {0: "batch"}
    path = out / "model.onnx"
    truncate_dim = model.truncate_dim
    model.truncate_dim = None  # the graph truncates; the modules run at full width
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's advice; correctness is checked on probe sentences after
            torch.onnx.export(Embedder().eval(), tuple(sample[n] for n in inputs), str(path), dynamo=False,
                              input_names=inputs, output_names=["sentence_embedding"], dynamic_axes=dynamic,
                              opset_version=opset)
    finally:
        model.truncate_dim = truncate_dim
    return path


def onnx_embed(path: Path, model: Any, texts: list[str]) -> np.ndarray:
    """Embed ``texts`` with an exported graph and onnxruntime alone."""
    return OnnxEmbedder(path, model)(texts)


def reference(model: Any, texts: list[str], dim: int | None) -> np.ndarray:
    """What sentence-transformers gives: truncate to ``dim``, then normalise."""
    truncate_dim = model.truncate_dim
    model.truncate_dim = dim
    try:
        return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    finally:
        model.truncate_dim = truncate_dim


def copy_serving_files(model_dir: Path, out: Path, max_seq_length: int | None) -> None:
    """The tokenizer files and the transformer's config.json (with its Matryoshka metadata).

    ``tokenizer_config.json``'s ``model_max_length`` is set to the model's ``max_seq_length``:
    sentence-transformers truncates there (``sentence_bert_config.json``), while a tokenizer
    loaded alone (transformers' ``AutoTokenizer``, fastembed) truncates at ``model_max_length``,
    which for all-MiniLM-L6-v2 is 512 against 256: texts between the two would embed
    differently in every stack but sentence-transformers."""
    from .serving_configs import transformer_config

    config = transformer_config(model_dir)
    source = config.parent if config is not None else model_dir
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "merges.txt",
                 "vocab.json", "sentencepiece.bpe.model", "spiece.model", "added_tokens.json", "config.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    tokenizer_config = out / "tokenizer_config.json"
    if max_seq_length and tokenizer_config.is_file():
        data = json.loads(tokenizer_config.read_text(encoding="utf-8"))
        data["model_max_length"] = max_seq_length
        tokenizer_config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


FORMATS = {"onnx": "model.onnx", "openvino": OPENVINO_XML}
"""Each format's graph file in an export folder."""


def export(model_dir: Path, out: Path, *, fmt: str = "onnx", dim: int | None = None, quantize: str | None = None,
           overwrite: bool = False, matryoshka_dims: list[int] | None = None,
           calibration: list[str] | None = None) -> dict[str, Any]:
    """Export the model in ``model_dir`` to ``out``; returns what ``mrl_export.json`` records.

    ``calibration``: texts NNCF calibrates an OpenVINO int8 graph on (needed for it, unused otherwise)."""
    from sentence_transformers import SentenceTransformer

    from .serving_configs import transformer_config

    check_destination(out, overwrite)
    if not any((model_dir / name).is_file() or (model_dir / p / name).is_file()
               for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
               for p in _module_paths(model_dir)):
        raise UserError(f"{model_dir}: no tokenizer files (tokenizer.json, tokenizer_config.json or vocab.txt); an "
                        "export needs them to be usable. Save the model with its tokenizer (model.save) and export "
                        "again.")
    if fmt == "openvino" and quantize == "int8" and not calibration:
        raise UserError("--format openvino --quantize int8 calibrates activation ranges on real texts (NNCF's static "
                        "quantisation): pass --calibration CORPUS, a file or folder of documents like the ones you "
                        "will embed (its first 300 texts are used; never your evaluation set).")
    model = SentenceTransformer(str(model_dir), device="cpu")
    check_exportable(model)
    from ..models import full_width

    full = full_width(model)
    if dim is not None and not 0 < dim <= full:
        raise UserError(f"--dim {dim}: must be between 1 and the model's dimension {full}.")
    with exporting(model_dir, out, overwrite) as tmp:
        path = export_onnx(model, tmp, dim=dim)
        expected = reference(model, PROBES, dim)
        fp32 = onnx_embed(path, model, PROBES)
        difference = float(np.abs(fp32 - expected).max())
        check_difference(difference, "the exported ONNX graph")
        agreement, precision = None, "f32"
        if fmt == "onnx" and quantize == "int8":
            quantize_onnx_int8(path)
            agreement = float(np.mean(np.sum(onnx_embed(path, model, PROBES) * fp32, axis=1)))
        elif fmt == "openvino":
            inputs = tokenizer_inputs(model)
            texts = _prompted(model, calibration or [])
            xml = to_openvino(path, tmp, calibration=(lambda: calibration_batches(model, inputs, texts))
                              if quantize == "int8" else None)
            path.unlink()
            engine = OpenVinoEmbedder(xml, model, float32=quantize is None)
            vectors, precision = engine(PROBES), engine.precision
            if quantize is None:
                difference = float(np.abs(vectors - expected).max())
                check_difference(difference, "the OpenVINO graph")
            else:
                agreement = float(np.mean(np.sum(vectors * fp32, axis=1)))
        copy_serving_files(model_dir, tmp, model.max_seq_length)
        graph = tmp / FORMATS[fmt]
        record = {
            "format": fmt, "graph": FORMATS[fmt], "inputs": tokenizer_inputs(model), "output": "sentence_embedding",
            "full_dim": full, "dim": dim or full, "normalized": True,
            "computes": "the model's modules, then truncation to dim, then L2 normalisation",
            "matryoshka_dimensions": matryoshka_dims, "max_seq_length": model.max_seq_length,
            "prompts": dict(getattr(model, "prompts", None) or {}),
            "quantization": quantize, "max_abs_difference_fp32": difference,
            "mean_cosine_int8_to_fp32": agreement, "source": str(model_dir),
            "weights": weights_fingerprint(model_dir),
            "files": {p.name: sha256_file(p) for p in (graph, graph.with_suffix(".bin")) if p.is_file()},
        }
        if fmt == "openvino":
            record["openvino_precision_hint"] = precision
            record["calibration_texts"] = min(len(calibration or []), CALIBRATION_TEXTS) if quantize else None
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        config = tmp / "config.json"
        if matryoshka_dims and config.is_file() and transformer_config(model_dir) is not None:
            data = json.loads(config.read_text())
            data.update(is_matryoshka=True, matryoshka_dimensions=sorted(set(matryoshka_dims), reverse=True))
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return record


def check_difference(difference: float, what: str) -> None:
    """Refuse a float32 graph that does not compute what sentence-transformers computes."""
    if difference > TOLERANCE:
        raise UserError(f"{what} differs from sentence-transformers by {difference:.2e} (more than {TOLERANCE:g}) on "
                        "probe sentences; nothing was written. This is a bug: please report it with the model's "
                        "modules.json.")


def _prompted(model: Any, texts: list[str]) -> list[str]:
    """Calibration texts as the graph will see documents: with the model's document prompt, if any."""
    prompt = (getattr(model, "prompts", None) or {}).get("document", "")
    return [prompt + t for t in texts]


def read_calibration(spec: str) -> list[str]:
    """The first texts of a corpus (any file, folder or pattern ``mrl-run index`` reads)."""
    from ..data.corpora import open_corpus

    texts: list[str] = []
    for _id, text in open_corpus(spec):
        texts.append(text)
        if len(texts) >= CALIBRATION_TEXTS:
            break
    if not texts:
        raise UserError(f"--calibration {spec}: no texts in it; name a corpus of documents like the ones you will "
                        "embed.")
    return texts


def _module_paths(model_dir: Path) -> list[str]:
    try:
        return [m.get("path", "") for m in json.loads((model_dir / "modules.json").read_text())]
    except (OSError, ValueError, AttributeError):
        return [""]
