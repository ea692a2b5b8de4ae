"""Exports published beside the model: ``onnx/`` and ``openvino/`` in the model's repository.

``mrl-run publish RUN --export DIR`` copies an export's graph (and its ``mrl_export.json``) into
the folder that convention reads: ``onnx/`` (what sentence-transformers, fastembed and
transformers.js look in) or ``openvino/``, named ``mrl_embedding_<dim>[_int8]`` so that several
widths and precisions sit side by side. The tokenizer files and ``config.json`` are the model's
own, at the repository's root, where fastembed's custom-model loader reads them.

Why not ``onnx/model.onnx``: sentence-transformers' ``backend="onnx"`` loads that name as a
*transformer-only* graph (output ``last_hidden_state``) and runs pooling itself; our graph already
ends in the truncated, normalised embedding, so under that name it would break that loader. Under
its own name, ``SentenceTransformer(repo, backend="onnx")`` still exports its own graph as before
(with a warning that lists ours), and every stack that runs a graph alone gets the whole model.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .folder import MARKER

PREFIX = "mrl_embedding_"


@dataclass(frozen=True)
class PublishedExport:
    """One export as it will sit in the model's repository."""

    folder: Path
    record: dict
    subfolder: str
    stem: str

    @property
    def files(self) -> dict[Path, str]:
        """Source file → path in the repository."""
        graph = self.folder / self.record["graph"]
        pairs = {graph: f"{self.subfolder}/{self.stem}{graph.suffix}",
                 self.folder / "mrl_export.json": f"{self.subfolder}/{self.stem}.json"}
        if self.record["format"] == "openvino":
            pairs[graph.with_suffix(".bin")] = f"{self.subfolder}/{self.stem}.bin"
        return pairs

    @property
    def graph_path(self) -> str:
        return next(iter(self.files.values()))


def read_exports(folders: list[Path], model_dir: Path) -> list[PublishedExport]:
    """Check each ``--export`` folder: an export of this very model, each name once."""
    found: list[PublishedExport] = []
    for folder in folders:
        marker = folder / MARKER
        if not marker.is_file():
            raise UserError(f"--export {folder}: not an export folder (no {MARKER}); make one with 'mrl-run export "
                            f"{model_dir} -o {folder}'. Nothing was pushed.")
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"--export {folder}: {MARKER} cannot be read ({exc}); export again ('mrl-run export "
                            f"{model_dir} -o {folder} --overwrite'). Nothing was pushed.") from None
        if not isinstance(record, dict) or not isinstance(record.get("dim"), int) or not isinstance(
                record.get("graph"), str):
            raise UserError(f"--export {folder}: {MARKER} is not an export's record (no graph or dim); export again "
                            f"('mrl-run export {model_dir} -o {folder} --overwrite'). Nothing was pushed.")
        if record.get("format") not in ("onnx", "openvino"):
            raise UserError(f"--export {folder}: a {record.get('format')} copy is a whole model, not a graph to push "
                            "beside this one; push it to its own repository (hf upload REPO_ID "
                            f"{folder}). Nothing was pushed.")
        why = made_from_other_weights(record, model_dir)
        if why:
            raise UserError(f"--export {folder}: {why}; export this model ('mrl-run export {model_dir} -o DIR') and "
                            "pass that folder. Nothing was pushed.")
        changed = changed_files(folder, record)
        if changed:
            raise UserError(f"--export {folder}: {changed}; export again ('mrl-run export {model_dir} -o {folder} "
                            "--overwrite'). Nothing was pushed.")
        stem = f"{PREFIX}{record['dim']}" + ("_int8" if record.get("quantization") == "int8" else "")
        export = PublishedExport(folder, record, "onnx" if record["format"] == "onnx" else "openvino", stem)
        if any(e.graph_path == export.graph_path for e in found):
            raise UserError(f"--export {folder}: another --export is also {export.graph_path} (the same format, width "
                            "and precision); pass one of them. Nothing was pushed.")
        found.append(export)
    return found


def made_from_other_weights(record: dict, model_dir: Path) -> str | None:
    """Why an export is not of the model in ``model_dir``, or ``None``: it records the fingerprint
    of the weights it was made from (:func:`mrl_plugins.models.checks.weights_fingerprint`), which
    must be this model's now: a path alone would let an export of a model trained again since
    (``--overwrite``, another seed) go out as the new model's."""
    from ..models.checks import weights_fingerprint

    recorded, source = record.get("weights"), record.get("source")
    if recorded is not None and recorded == weights_fingerprint(model_dir):
        return None
    if recorded is None:
        return ("it records no fingerprint of the weights it was made from (an export of mrl-plugins before 0.9), so "
                "nothing shows it is of this model")
    if source and Path(source).exists() and Path(source).resolve() == model_dir.resolve():
        return (f"it was exported from {model_dir}, whose weights have changed since (the run was trained again): the "
                "graph would not compute this model's vectors")
    return f"it was exported from {source}, not from the model being published ({model_dir})"


def changed_files(folder: Path, record: dict) -> str | None:
    """Which of the files the export wrote is not as it recorded it (SHA-256), in words, or
    ``None``; an export that records no hashes is refused by :func:`made_from_other_weights`
    first (they arrived together, in 0.9)."""
    from ..outputs.digests import sha256_file

    files = record.get("files")
    if not isinstance(files, dict) or not files:
        return f"{folder / MARKER} records no hashes of its files (an export of mrl-plugins before 0.9)"
    for name, digest in files.items():
        path = folder / str(name)
        if not path.is_file():
            return f"{path} is missing ({MARKER} lists it)"
        if sha256_file(path) != digest:
            return f"{path} is not the file the export wrote (its SHA-256 differs: changed or cut since)"
    return None


def add_exports(model_dir: Path, exports: list[PublishedExport]) -> None:
    """Copy the exports' files into a (staged) model folder; large files are hard-linked."""
    for export in exports:
        for src, rel in export.files.items():
            dst = model_dir / rel
            dst.parent.mkdir(exist_ok=True)
            dst.unlink(missing_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def published_exports(model_dir: Path) -> list[dict]:
    """What a model folder carries: one dict per ``onnx/`` or ``openvino/`` export (for the card)."""
    out = []
    for sub in ("onnx", "openvino"):
        for marker in sorted((model_dir / sub).glob(f"{PREFIX}*.json")):
            try:
                record = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            graph = marker.with_suffix(".onnx" if sub == "onnx" else ".xml")
            if graph.is_file() and isinstance(record, dict):
                out.append({"path": f"{sub}/{graph.name}", "format": record.get("format", sub),
                             "dim": record.get("dim"), "quantization": record.get("quantization"),
                             "prompts": {k: v for k, v in (record.get("prompts") or {}).items() if v}})
    return sorted(out, key=lambda e: (e["format"], -(e["dim"] or 0), e["quantization"] or ""))
