"""Can a model be used here: is it present and whole (its weights), cached or reachable on the Hub,
and is the device there. None of it imports torch: ``mrl-run validate`` runs these.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
from pathlib import Path

from .loading import ResolvedModel

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


HUB_TIMEOUT = float(os.environ.get("MRL_HUB_CHECK_TIMEOUT", "5"))


def model_problems(where: str, model: ResolvedModel) -> list[str]:
    """A local model must have its weights; a Hub model must be cached or reachable."""
    if model.is_local:
        return weights_problems(where, Path(model.location))
    problem = hub_problem(model.requested)
    return [f"{where}: {problem}"] if problem else []


def weights_problems(where: str, folder: Path) -> list[str]:
    import json

    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return []  # not a sentence-transformers folder: reported where the width is read
    for module in modules:
        if module.get("type", "").endswith("Transformer"):
            sub = folder / module.get("path", "")
            if not any((sub / name).is_file() for name in WEIGHT_FILES):
                return [f"{where}: the model folder {folder} has no weights ({' or '.join(WEIGHT_FILES[::2])} in "
                        f"{sub}); the download or copy is incomplete. Copy the whole model folder again."]
    return []


def hub_problem(name: str) -> str | None:
    """Why a Hub model cannot be loaded now, or None: it is cached, or the Hub has it."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        if isinstance(try_to_load_from_cache(name, "modules.json"), str):
            return None
    except HFValidationError as exc:
        return (f"'{name}' is neither a local model folder nor a valid Hub model id ({str(exc).splitlines()[0]}); "
                "give a folder holding a sentence-transformers model or an id like 'user/model'.")
    where = ("a local folder, an installed offline copy or in the Hugging Face cache; download it where the Hub "
             f"is reachable (e.g. 'hf download {name}') or set the name to a local model folder")
    if constants.HF_HUB_OFFLINE:
        return f"'{name}' is not {where}. HF_HUB_OFFLINE is set, so the Hub is not asked."
    try:
        HfApi().model_info(name, timeout=HUB_TIMEOUT)
    except Exception as exc:  # 404, gated, no network: all mean this run cannot load it
        kind = type(exc).__name__
        if "NotFound" in kind:
            return f"'{name}' is not a model on the Hugging Face Hub, nor {where}."
        first = (str(exc).splitlines() or [kind])[0][:160]
        return f"'{name}' is not {where}, and the Hub could not be reached ({kind}: {first})."
    return None


DEVICE = re.compile(r"^(auto|cpu|cuda|mps|xpu|hpu|npu|mlu|xla|meta)(:\d+)?$")


def device_problems(device: str, where: str = "[model] device") -> list[str]:
    """A cheap look (no torch): is there any GPU of the requested kind at all? The run checks again, exactly."""
    if not DEVICE.match(device):
        return [f"{where}: '{device}' is not a device torch knows; use \"auto\" (CUDA, else MPS, else CPU), "
                "\"cpu\", \"cuda\", \"cuda:1\" or \"mps\"."]
    if device.startswith("cuda") and not (shutil.which("nvidia-smi") or Path("/dev/nvidia0").exists()):
        return [f"[model] device: '{device}' needs an NVIDIA GPU and its driver, and this machine shows none; use "
                "device = \"auto\" (CUDA, else MPS, else CPU) or \"cpu\"."]
    if device.startswith("mps") and platform.system() != "Darwin":
        return [f"[model] device: '{device}' is Apple's GPU, and this is {platform.system()}; use \"auto\" or \"cpu\"."]
    return []


EXPORT_FOLDERS = ("onnx", "openvino")
"""Subfolders a published model carries its exports in: not its weights."""


def weights_fingerprint(folder: Path) -> str:
    """SHA-256 over a model folder's weight files (every ``*.safetensors`` and ``*.bin``, with their
    paths, in sorted order; exports aside): what an export records of the model it was made from,
    so that publishing it beside another model, or beside this one trained again, is refused. Its
    configs are left out: publishing changes them (the default width, the serving keys)."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted(p for pattern in ("*.safetensors", "*.bin") for p in folder.rglob(pattern)
                   if p.relative_to(folder).parts[0] not in EXPORT_FOLDERS)
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
