"""``mrl-run export --format sentence-transformers-3``: the model as sentence-transformers 3 and transformers 4 read it.

Servers pinned to older libraries cannot load what sentence-transformers 6 and transformers 5
save: Infinity 0.0.78 requires sentence-transformers < 4 and transformers 4, which know neither
the module paths (``sentence_transformers.base.modules…``), nor the configs' new keys
(``transformer_task``, ``embedding_dimension``, ``module_input_name``), nor the tokenizer class
transformers 5 writes (``TokenizersBackend``). This writes a copy in the older format, the one
``sentence-transformers/all-MiniLM-L6-v2`` itself is published in: module paths under
``sentence_transformers.models``, ``sentence_bert_config.json`` with ``max_seq_length``, the
pooling flags, Dense configs with only the keys the old ``Dense`` takes, no Normalize config, and
no ``tokenizer_class`` (transformers then picks the tokenizer from ``config.json``'s model type
and reads ``tokenizer.json``). Weights are hard-linked, never rewritten.

Only what the old format can say exactly is written: a module other than Transformer, Pooling,
Dense and Normalize, or a Dense that adds its input back (``use_residual``, the adaptor's), is
refused by name. The copy is checked: sentence-transformers (this version) must embed probe
sentences from it as from the original, to 1e-4; tests run it in Infinity's own
sentence-transformers 3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

FORMAT = "sentence-transformers-3"
CARRIED = ("Transformer", "Pooling", "Dense", "Normalize")
OLD_DENSE_KEYS = ("in_features", "out_features", "bias", "activation_function")
OLD_POOLING_KEYS = ("word_embedding_dimension", "pooling_mode_cls_token", "pooling_mode_mean_tokens",
                    "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                    "pooling_mode_lasttoken", "include_prompt")


def _json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _replace_json(path: Path, data: dict[str, Any]) -> None:
    path.unlink(missing_ok=True)  # break a hard link before writing
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_legacy_copy(model_dir: Path, out: Path) -> list[str]:
    """Copy ``model_dir`` into the empty folder ``out`` in the older format; returns the modules carried."""
    from ..outputs.destination import copy_to_edit
    from .serving_configs import kind, modules, write_serving_configs

    entries = modules(model_dir)
    for index, module in enumerate(entries):
        name = kind(module)
        if name not in CARRIED:
            raise UserError(f"module {index} of the model is {name}, which sentence-transformers 3 cannot be told "
                            f"about exactly (this copy carries {', '.join(CARRIED)}); nothing was written. Serve the "
                            "ONNX export instead (mrl-run export MODEL -o DIR).")
        if name == "Dense" and _json(model_dir / module.get("path", "") / "config.json").get("use_residual"):
            raise UserError(f"module {index} of the model is a Dense that adds its input back (use_residual: the "
                            "adaptor's), which sentence-transformers 3's Dense does not do; nothing was written. Serve "
                            "the ONNX export instead (mrl-run export MODEL -o DIR), which carries it.")
    copy_to_edit(model_dir, out)
    write_serving_configs(out)  # max_seq_length and the pooling flags, as the older format has them
    for module in entries:
        name, folder = kind(module), out / module.get("path", "")
        module["type"] = f"sentence_transformers.models.{name}"
        if name == "Transformer":
            limit = _json(folder / "sentence_bert_config.json").get("max_seq_length")
            _replace_json(folder / "sentence_bert_config.json", {"max_seq_length": limit, "do_lower_case": False})
            tokenizer = folder / "tokenizer_config.json"
            if tokenizer.is_file():
                _replace_json(tokenizer, {k: v for k, v in _json(tokenizer).items()
                                          if k not in ("tokenizer_class", "backend")})
        elif name == "Pooling":
            config = _json(folder / "config.json")
            _replace_json(folder / "config.json", {k: config[k] for k in OLD_POOLING_KEYS if k in config})
        elif name == "Dense":
            config = _json(folder / "config.json")
            _replace_json(folder / "config.json", {k: config[k] for k in OLD_DENSE_KEYS if k in config})
        elif name == "Normalize":
            (folder / "config.json").unlink(missing_ok=True)
    (out / "modules.json").unlink()
    (out / "modules.json").write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return [kind(m) for m in entries]


def export_legacy(model_dir: Path, out: Path, *, overwrite: bool, probes: list[str], tolerance: float,
                  marker: str) -> dict[str, Any]:
    """The whole command: a checked copy in ``out`` (replacing an earlier export only with ``overwrite``)."""
    from sentence_transformers import SentenceTransformer

    from .folder import check_destination, exporting

    check_destination(out, overwrite)
    with exporting(model_dir, out, overwrite) as tmp:
        carried = write_legacy_copy(model_dir, tmp)
        original = SentenceTransformer(str(model_dir), device="cpu", truncate_dim=None)
        copy = SentenceTransformer(str(tmp), device="cpu", truncate_dim=None)
        difference = float(np.abs(original.encode(probes) - copy.encode(probes)).max())
        if difference > tolerance:
            raise UserError(f"the sentence-transformers 3 copy embeds {difference:.2e} away from the model (more than "
                            f"{tolerance:g}) on probe sentences; nothing was written. This is a bug: please report it "
                            "with the model's modules.json.")
        record = {
            "format": FORMAT, "graph": "modules.json", "modules": carried,
            "full_dim": int(copy.encode(["x"]).shape[1]), "dim": None, "normalized": carried[-1] == "Normalize",
            "max_abs_difference_fp32": difference, "quantization": None, "source": str(model_dir),
            "computes": "the model itself, in sentence-transformers 3's format (truncate and re-normalise after it, "
                        "or ask the server for dimensions and re-normalise)",
        }
        (tmp / marker).write_text(json.dumps(record, indent=2) + "\n")
    return record
