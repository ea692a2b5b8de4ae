"""What other serving stacks read from a saved model's files, written by every save and publish.

Each key here is one a stack's own source reads, checked there (the commits are named so the
check can be repeated):

- **vLLM** decides whether a ``dimensions`` request is allowed from the Hugging Face
  ``config.json``: ``is_matryoshka`` and ``matryoshka_dimensions`` (``ModelConfig``).
- **text-embeddings-inference** (``router/src/lib.rs`` at a28ad28, ``backends/candle/src/models/
  dense.rs`` at 0d1b698) parses ``sentence_bert_config.json`` into ``STConfig { max_seq_length:
  usize }`` (a required field: a file without it stops TEI from starting) and
  ``1_Pooling/config.json`` into ``PoolConfig { pooling_mode_cls_token: bool,
  pooling_mode_mean_tokens: bool, pooling_mode_lasttoken: bool (optional) }`` (required too). It
  runs one Dense, read from ``2_Dense`` (or ``--dense-path``), with activation Tanh or Identity,
  and normalises at the end. sentence-transformers 6 writes neither ``max_seq_length`` (it moved
  to ``tokenizer_config.json``) nor the ``pooling_mode_*`` booleans (now one ``pooling_mode``),
  so a model it saves does not start in TEI. :func:`write_serving_configs` adds both, beside the
  new keys; sentence-transformers 6 reads ``pooling_mode`` first and drops the booleans
  (``Pooling.load_config``), and takes ``max_seq_length`` as the same limit it already has.
- **Every stack that loads the tokenizer alone** (fastembed, Infinity's ONNX engine,
  transformers.js) truncates at ``tokenizer_config.json``'s ``model_max_length``; a model saved
  by sentence-transformers 5 keeps its real limit in ``sentence_bert_config.json`` instead (512
  against 256 for all-MiniLM-L6-v2). Both files get the same limit.

:func:`tei_mismatch` says when TEI would still compute other vectors than sentence-transformers
(a second Dense, a GELU or residual Dense, a Normalize between layers): the card then says so
and points to the ONNX export, which carries every module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

POOLING_BOOLEANS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                    "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                    "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
"""The pooling config's booleans (sentence-transformers < 6, TEI) and the mode each stands for."""
TEI_ACTIVATIONS = ("torch.nn.modules.activation.Tanh", "torch.nn.modules.linear.Identity")
UNBOUNDED = 1_000_000
"""A ``model_max_length`` at or above this is transformers' "no limit" placeholder, not a limit."""


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict[str, Any], *, sort_keys: bool = False) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n", encoding="utf-8")


def modules(model_dir: Path) -> list[dict[str, Any]]:
    """``modules.json``'s entries (empty when it is missing or not a list)."""
    try:
        entries = json.loads((model_dir / "modules.json").read_text())
    except (OSError, ValueError):
        return []
    return [m for m in entries if isinstance(m, dict)] if isinstance(entries, list) else []


def kind(module: dict[str, Any]) -> str:
    """The module's class name: ``Transformer``, ``Pooling``, ``Dense`` …"""
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def transformer_config(model_dir: Path) -> Path | None:
    """The Hugging Face ``config.json`` of a saved model's Transformer module (what serving stacks read)."""
    for module in modules(model_dir):
        if kind(module).endswith("Transformer"):
            path = model_dir / module.get("path", "") / "config.json"
            return path if path.is_file() else None
    return None


def set_matryoshka_config(model_dir: Path, dims: list[int]) -> None:
    """Say in ``config.json`` that the model is Matryoshka, and at which widths it was trained and
    measured: vLLM reads exactly ``is_matryoshka`` and ``matryoshka_dimensions`` from the model's
    Hugging Face config (``ModelConfig.is_matryoshka`` / ``matryoshka_dimensions``) and refuses a
    ``dimensions`` request otherwise, or for a width not in the list. Every other key is kept."""
    path = transformer_config(model_dir)
    config = _read(path) if path is not None else None
    if path is None or config is None:
        return
    config.update(is_matryoshka=True, matryoshka_dimensions=sorted({int(d) for d in dims}, reverse=True))
    _write(path, config, sort_keys=True)


def write_serving_configs(model_dir: Path) -> list[Path]:
    """Add the keys TEI and tokenizer-only stacks read (module docstring); returns the files changed.
    Only keys are added or made to agree; nothing sentence-transformers reads changes meaning."""
    config = transformer_config(model_dir)
    if config is None:
        return []
    folder, changed = config.parent, []
    st_path, tok_path = folder / "sentence_bert_config.json", folder / "tokenizer_config.json"
    st_config, tokenizer = _read(st_path), _read(tok_path)
    limit = (st_config or {}).get("max_seq_length")
    if not isinstance(limit, int):
        limit = (tokenizer or {}).get("model_max_length")
    if isinstance(limit, int) and 0 < limit < UNBOUNDED:
        if st_config is not None and st_config.get("max_seq_length") != limit:
            st_config["max_seq_length"] = limit
            _write(st_path, st_config)
            changed.append(st_path)
        if tokenizer is not None and tokenizer.get("model_max_length") != limit:
            tokenizer["model_max_length"] = limit
            _write(tok_path, tokenizer)
            changed.append(tok_path)
    for module in modules(model_dir):
        if kind(module) != "Pooling":
            continue
        path = model_dir / module.get("path", "") / "config.json"
        pooling = _read(path)
        if pooling is None or not isinstance(pooling.get("pooling_mode"), str | list | tuple):
            continue
        mode = pooling["pooling_mode"]
        active = {mode} if isinstance(mode, str) else set(mode)
        wanted = {key: name in active for key, name in POOLING_BOOLEANS.items()}
        if "embedding_dimension" in pooling:
            wanted["word_embedding_dimension"] = pooling["embedding_dimension"]
        if any(pooling.get(k) != v for k, v in wanted.items()):
            pooling.update(wanted)
            _write(path, pooling)
            changed.append(path)
    return changed


def tei_mismatch(model_dir: Path) -> str | None:
    """Why text-embeddings-inference would compute other vectors than sentence-transformers from
    this folder (its source, module docstring), or ``None`` when it reads every module."""
    entries = modules(model_dir)
    kinds = [kind(m) for m in entries]
    if not kinds or kinds[0] != "Transformer" or entries[0].get("path", "") != "":
        return "its Transformer is not at the repository's root"
    if len(kinds) < 2 or kinds[1] != "Pooling" or entries[1].get("path") != "1_Pooling":
        return "its pooling is not the module in 1_Pooling/, the only place TEI reads it"
    rest = kinds[2:]
    if rest and rest[-1] == "Normalize":
        rest = rest[:-1]  # TEI normalises at the end (normalize = true)
    if not rest:
        return None
    if rest != ["Dense"]:
        return (f"after pooling it runs {', '.join(kinds[2:])}; TEI runs one Dense and normalises only at the "
                "end")
    dense = _read(model_dir / entries[2].get("path", "") / "config.json") or {}
    if dense.get("use_residual"):
        return "its Dense adds its input back (a residual), which TEI's Dense does not"
    if dense.get("activation_function", TEI_ACTIVATIONS[1]) not in TEI_ACTIVATIONS:
        return f"its Dense's activation is {dense.get('activation_function')}; TEI's Dense knows Tanh and Identity"
    if entries[2].get("path") != "2_Dense":
        return f"its Dense is in {entries[2].get('path')}/, not 2_Dense/: start TEI with --dense-path " \
               f"{entries[2].get('path')}"
    return None
