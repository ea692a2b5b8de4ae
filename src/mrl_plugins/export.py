"""``mrl-run export``: one ONNX graph from token ids to the final, truncated, re-normalised embedding.

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

The folder holds ``model.onnx``, the tokenizer files, the transformer's ``config.json`` (with the
Matryoshka metadata) and ``mrl_export.json``, which says what the graph computes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

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
MARKER = "mrl_export.json"


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

    from .models import full_width

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


class OnnxEmbedder:
    """An exported graph run by onnxruntime alone; the model (or any tokenizer) only tokenises."""

    def __init__(self, path: Path, model: Any):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.model = model

    def __call__(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings in the order of ``texts``; batches are formed longest first, as
        ``SentenceTransformer.encode`` does, so each pads to texts of about its own length."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = []
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            tokens = self.model.tokenizer(batch, padding=True, truncation=True, max_length=self.model.max_seq_length,
                                          return_tensors="np")
            out.append(self.session.run(None, {n: tokens[n].astype(np.int64) for n in self.names})[0])
        width = self.session.get_outputs()[0].shape[1] or 0
        embeddings = np.concatenate(out) if out else np.zeros((0, width), np.float32)
        restored = np.empty_like(embeddings)
        restored[order] = embeddings
        return restored


def onnx_embed(path: Path, model: Any, texts: list[str]) -> np.ndarray:
    """Embed ``texts`` with an exported graph and onnxruntime alone."""
    return OnnxEmbedder(path, model)(texts)


def quantize_int8(path: Path) -> Path:
    """onnxruntime's dynamic int8 quantisation of the weights, in place of the float32 graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name("model.int8.onnx")
    quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
    os.replace(quantized, path)
    return path


def reference(model: Any, texts: list[str], dim: int | None) -> np.ndarray:
    """What sentence-transformers gives: truncate to ``dim``, then normalise."""
    truncate_dim = model.truncate_dim
    model.truncate_dim = dim
    try:
        return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    finally:
        model.truncate_dim = truncate_dim


def copy_serving_files(model_dir: Path, out: Path) -> None:
    """The tokenizer files and the transformer's config.json (with its Matryoshka metadata)."""
    from .publish import transformer_config

    config = transformer_config(model_dir)
    source = config.parent if config is not None else model_dir
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "merges.txt",
                 "vocab.json", "sentencepiece.bpe.model", "spiece.model", "added_tokens.json", "config.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)


def export(model_dir: Path, out: Path, *, fmt: str = "onnx", dim: int | None = None, quantize: str | None = None,
           overwrite: bool = False, matryoshka_dims: list[int] | None = None) -> dict[str, Any]:
    """Export the model in ``model_dir`` to ``out``; returns what ``mrl_export.json`` records."""
    from sentence_transformers import SentenceTransformer

    from .locks import FolderLock
    from .publish import transformer_config
    from .search.destination import replace_folder

    check_destination(out, overwrite)
    if not any((model_dir / name).is_file() or (model_dir / p / name).is_file()
               for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
               for p in _module_paths(model_dir)):
        raise UserError(f"{model_dir}: no tokenizer files (tokenizer.json, tokenizer_config.json or vocab.txt); an "
                        "export needs them to be usable. Save the model with its tokenizer (model.save) and export "
                        "again.")
    model = SentenceTransformer(str(model_dir), device="cpu")
    check_exportable(model)
    from .models import full_width

    full = full_width(model)
    if dim is not None and not 0 < dim <= full:
        raise UserError(f"--dim {dim}: must be between 1 and the model's dimension {full}.")
    tmp = out.with_name(f".{out.name}.exporting-{os.getpid()}")
    lock = FolderLock(out, f"mrl-run export {model_dir} -o {out}")
    lock.acquire(f"another export is writing {out} ({{holder}}); nothing was changed.")
    try:
        check_destination(out, overwrite)  # again, under the lock
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        path = export_onnx(model, tmp, dim=dim)
        expected = reference(model, PROBES, dim)
        fp32 = onnx_embed(path, model, PROBES)
        difference = float(np.abs(fp32 - expected).max())
        if difference > TOLERANCE:
            raise UserError(f"the exported graph differs from sentence-transformers by {difference:.2e} (more than "
                            f"{TOLERANCE:g}) on probe sentences; nothing was written. This is a bug: please report it "
                            "with the model's modules.json.")
        agreement = None
        if quantize == "int8":
            quantize_int8(path)
            agreement = float(np.mean(np.sum(onnx_embed(path, model, PROBES) * fp32, axis=1)))
        copy_serving_files(model_dir, tmp)
        record = {
            "format": fmt, "graph": "model.onnx", "inputs": tokenizer_inputs(model), "output": "sentence_embedding",
            "full_dim": full, "dim": dim or full, "normalized": True,
            "computes": "the model's modules, then truncation to dim, then L2 normalisation",
            "matryoshka_dimensions": matryoshka_dims, "max_seq_length": model.max_seq_length,
            "prompts": dict(getattr(model, "prompts", None) or {}),
            "quantization": quantize, "max_abs_difference_fp32": difference,
            "mean_cosine_int8_to_fp32": agreement, "source": str(model_dir),
        }
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        config = tmp / "config.json"
        if matryoshka_dims and config.is_file() and transformer_config(model_dir) is not None:
            data = json.loads(config.read_text())
            data.update(is_matryoshka=True, matryoshka_dimensions=sorted(set(matryoshka_dims), reverse=True))
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        lock.release()
    return record


def cmd_export(args: Any) -> int:
    """``mrl-run export MODEL_OR_RUN -o DIR``."""
    from .search.commands import resolve_model_arg

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
    model_dir = Path(resolved.location)
    from .publish import transformer_config

    config = transformer_config(model_dir)
    dims = json.loads(config.read_text()).get("matryoshka_dimensions") if config is not None else None
    record = export(model_dir, args.output, fmt=args.format, dim=args.dim, quantize=args.quantize,
                    overwrite=args.overwrite, matryoshka_dims=dims)
    quality = (f"; int8 keeps a mean cosine of {record['mean_cosine_int8_to_fp32']:.4f} to float32"
               if record["quantization"] else "")
    print(f"exported {model_dir} to {args.output / 'model.onnx'}: token ids in, {record['dim']}-dim normalised "
          "embeddings out (max difference from sentence-transformers "
          f"{record['max_abs_difference_fp32']:.1e}{quality}).")
    return 0


def _module_paths(model_dir: Path) -> list[str]:
    try:
        return [m.get("path", "") for m in json.loads((model_dir / "modules.json").read_text())]
    except (OSError, ValueError, AttributeError):
        return [""]


def check_destination(out: Path, overwrite: bool) -> None:
    """``-o`` names a new or empty folder, or (with ``--overwrite``) an earlier export; nothing else."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"-o {out}: a file is there, not an export folder; nothing was changed. Name a new folder.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            entries = sorted(p.name for p in out.iterdir())
            raise UserError(f"-o {out}: a folder that is not an export is there ({', '.join(entries[:6])}"
                            f"{', …' if len(entries) > 6 else ''}); nothing was changed. --overwrite replaces only an "
                            "earlier export: name a new folder.")
        if not overwrite:
            raise UserError(f"-o {out}: an export is already there; nothing was changed. Choose another folder or "
                            "pass --overwrite to replace it.")
