"""Checks that depend on the machine, not only on the recipe: is the model here (and whole), can
the device be used, can the output folder be written, is there room on the disk. ``mrl-run
validate`` runs them, and so does every run before it loads anything; none imports torch.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..models import (
    ResolvedModel,
    resolve_model,
)
from ..models.checks import device_problems, model_problems
from ..outputs.destination import existing_ancestor, output_problems

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def output_dir_problems(name: str, template: str) -> list[str]:
    """``output_dir`` may hold ``{name}`` and ``{timestamp}`` and nothing else that braces can
    evaluate; neither it nor ``name`` may hold control characters (a NUL ends a path)."""
    problems = []
    for key, value in (("name", name), ("output_dir", template)):
        bad = sorted({repr(c) for c in value if ord(c) < 32 or ord(c) == 127})
        if bad:
            problems.append(f"{key}: contains control characters ({', '.join(bad)}); use printable characters only.")
    fields = PLACEHOLDER.findall(template.replace("{{", "").replace("}}", ""))
    unknown = [f for f in fields if f not in ("name", "timestamp")]
    stray = PLACEHOLDER.sub("", template.replace("{{", "").replace("}}", ""))
    if unknown:
        problems.append(f"output_dir: unknown placeholder {', '.join('{' + f + '}' for f in unknown)}; only {{name}} "
                        "and {timestamp} are filled in (write {{ and }} for literal braces).")
    elif "{" in stray or "}" in stray:
        problems.append("output_dir: an unmatched brace; only {name} and {timestamp} are filled in (write {{ and }} "
                        "for literal braces).")
    return problems


def fill_output_dir(template: str, name: str, timestamp: str) -> str:
    """``{name}`` and ``{timestamp}`` filled in, literally: no ``str.format`` attribute or index lookups."""
    filled = PLACEHOLDER.sub(lambda m: {"name": name, "timestamp": timestamp}[m.group(1)],
                             template.replace("{{", "\0L").replace("}}", "\0R"))
    return filled.replace("\0L", "{").replace("\0R", "}")


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for pattern in ("*.safetensors", "*.bin") for p in folder.rglob(pattern))


def disk_problems(output_dir: Path, model: ResolvedModel, trained: int, checkpoints: bool) -> list[str]:
    """Room for what the run will write: each trained model, plus, while checkpointing, the two
    newest checkpoints of one model (weights and the optimizer's two moments each)."""
    if not model.is_local:
        return []
    weights = weights_bytes(Path(model.location))
    need = int((trained + (6 if checkpoints else 0)) * weights * 1.1)
    ancestor = existing_ancestor(output_dir)
    if not ancestor.is_dir():
        return []
    free = shutil.disk_usage(ancestor).free
    if free < need:
        return [f"output_dir: this run will write about {need / 2**20:,.0f} MiB ({trained} trained model(s) of "
                f"{weights / 2**20:,.0f} MiB{' and checkpoints' if checkpoints else ''}), and {ancestor} has "
                f"{free / 2**20:,.0f} MiB free. Free some space, choose another output_dir, or set [train] "
                "checkpoint_steps = 0."]
    return []


# -- the recipe's own checks that need the machine ----------------------------------------------
def machine_problems(settings: Any, model: ResolvedModel | None, models: Any, base_dir: Path) -> list[str]:
    """Model present and whole, device usable, output folder writable (``output_dir`` relative to
    the recipe's folder, as the run resolves it), room on the disk; the ``[mining]`` model too."""
    problems = device_problems(settings.model.device)
    if model is not None:
        problems += model_problems("[model] name", model)
    mining = getattr(settings, "mining", None)
    if mining is not None and mining.model != "base":
        problems += model_problems("[mining] model", resolve_model(mining.model, base_dir))
    if output_dir_problems(settings.name, settings.output_dir):
        return problems  # the placeholder itself is reported by the recipe
    out = Path(os.path.normpath(base_dir / fill_output_dir(settings.output_dir, settings.name, "t")))
    problems += output_problems(out)
    if model is not None and not problems:
        problems += disk_problems(out, model, len(models.trained()), settings.train.checkpoint_steps > 0)
    return problems


# -- memory ---------------------------------------------------------------------------------------
def machine_memory() -> int:
    """This machine's physical memory in bytes (0 where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def peak_memory(recipe: Any, *, full_dim: int | None, eval_texts: int | None, fit_texts: int | None) -> dict[str, int]:
    """A run's peak memory by part, in bytes: the models the run keeps loaded, one training's
    gradients and optimiser state, the evaluation embeddings of every scored model, the adaptor's
    fitting embeddings, and the funnel indexes a search comparison builds at once. An estimate
    from shapes (within a factor of about 1.5), meant to warn before hours are spent, not to plan."""
    model = recipe.model
    weights = weights_bytes(Path(model.location)) if model is not None and model.is_local else 0
    trained = len(recipe.models.trained())
    parts = {"models": (1 + trained) * weights, "training": 3 * weights, "runtime": 1 << 30}
    if full_dim and eval_texts:
        scored = 1 + trained + sum(len(c.reads) for c in recipe.compare)
        parts["evaluation embeddings"] = scored * eval_texts * full_dim * 4
        for c in recipe.compare:
            if c.name in ("funnel", "quantize"):  # one index per dimension, each with the full vectors
                dims = recipe.dims.component.dims(full_dim)
                parts["search indexes"] = max(parts.get("search indexes", 0),
                                              eval_texts * (len(dims) * full_dim + sum(dims)) * 4)
    if full_dim and fit_texts and any(c.name == "adaptor" for c in recipe.compare):
        parts["adaptor fitting"] = 4 * fit_texts * full_dim * 4
    return parts


def memory_warning(recipe: Any, *, full_dim: int | None, eval_texts: int | None = None,
                   fit_texts: int | None = None) -> str | None:
    """A warning when the estimated peak exceeds this machine's memory, else ``None``."""
    parts = peak_memory(recipe, full_dim=full_dim, eval_texts=eval_texts, fit_texts=fit_texts)
    total, have = sum(parts.values()), machine_memory()
    if not have or total <= have:
        return None
    biggest = ", ".join(f"{k} {v / 2**30:.1f} GiB" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v)
    return (f"this run may need about {total / 2**30:.1f} GiB of memory at its peak ({biggest}), more than this "
            f"machine's {have / 2**30:.1f} GiB; it may be killed by the out-of-memory killer. Use a smaller evaluation "
            "corpus, fewer comparisons, or a machine with more memory.")


def publish_problems(publish: Any, full_dim: int | None) -> list[str]:
    """Checks that must fail before training, not after it: repo, token, default dimension."""
    problems = []
    if isinstance(publish.truncate_dim, int) and (
        publish.truncate_dim < 1 or (full_dim is not None and publish.truncate_dim > full_dim)
    ):
        problems.append(f"[publish] truncate_dim: must be between 1 and the model's dimension {full_dim}.")
    if publish.push:
        if publish.repo_id is None:
            problems.append("[publish] repo_id: required when push = true, e.g. repo_id = \"you/model-mrl\".")
        from ..publish.hub import find_token

        if not find_token():
            problems.append(
                "[publish] push: no Hugging Face token found; set HF_TOKEN or run 'hf auth login' "
                "(or set push = false and publish later with 'mrl-run publish OUTPUT_DIR')."
            )
    return problems
