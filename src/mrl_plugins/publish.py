"""Save a fine-tuned model that loads truncated, with the run's evidence in its model card; push it.

Saving is sentence-transformers' own (``truncate_dim`` is persisted in
``config_sentence_transformers.json`` and applied on load by sentence-transformers ≥ 5.4); this
module adds a Matryoshka section to the generated model card, the trained dimensions in its
YAML front matter, and ``mrl.json`` for tools. Pushing goes through ``huggingface_hub`` and
follows ``HF_ENDPOINT``; a failed push leaves the saved model as it was, to be retried with
``mrl-run publish OUTPUT_DIR``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from .errors import UserError
from .report import markdown_table, smallest_dim_keeping

logger = logging.getLogger(__name__)

START, END = "<!-- mrl-plugins:start -->", "<!-- mrl-plugins:end -->"


class PublishError(UserError):
    """The push failed; the saved model is intact and the message says how to retry."""

    exit_code = 1


def recommended_dims(metrics: dict[str, dict[str, float]], dims: list[int], key: str) -> dict[str, int]:
    """The smallest dimension keeping ≥ 99% and ≥ 95% of the full-dimension score of ``key``."""
    return {f"{round(s * 100)}%": smallest_dim_keeping(metrics, dims, key, s) or dims[0] for s in (0.99, 0.95)}


def resolve_truncate_dim(value: int | str | None, results: dict[str, Any]) -> int | None:
    if value is None or isinstance(value, int):
        return value
    k = results.get("k", 10)
    return recommended_dims(results["models"]["mrl"]["metrics"], results["dims"], f"mrr@{k}")["99%"]


def mrl_metadata(results: dict[str, Any], truncate_dim: int | None) -> dict[str, Any]:
    """What ``mrl.json`` holds: dimensions, default dimension, recommendations and metrics."""
    k = results.get("k", 10)
    return {
        "matryoshka_dims": results["dims"],
        "matryoshka_weights": results.get("weights"),
        "truncate_dim": truncate_dim,
        "recommended_dims": recommended_dims(results["models"]["mrl"]["metrics"], results["dims"], f"mrr@{k}"),
        "base_model": results["model"]["name"],
        "data": results["data"],
        "metrics": {key: m["metrics"] for key, m in results["models"].items()},
        "labels": {key: m["label"] for key, m in results["models"].items()},
    }


def card_section(meta: dict[str, Any], repo_id: str | None, k: int = 10) -> str:
    dims, rec = meta["matryoshka_dims"], meta["recommended_dims"]
    mrl = meta["metrics"]["mrl"]
    others = [key for key in meta["metrics"] if key != "mrl"]
    header = ["dim", f"MRR@{k}", f"Recall@{k}", f"nDCG@{k}", f"MRR@{k} kept", *(f"{meta['labels'][o]} MRR@{k}" for o in others)]
    full = mrl[str(dims[0])][f"mrr@{k}"]
    cells = []
    for d in dims:
        m = mrl[str(d)]
        cells.append([
            str(d), f"{m[f'mrr@{k}']:.4f}", f"{m[f'recall@{k}']:.4f}", f"{m[f'ndcg@{k}']:.4f}",
            f"{m[f'mrr@{k}'] / full:.1%}" if full else "n/a",
            *(f"{meta['metrics'][o][str(d)][f'mrr@{k}']:.4f}" for o in others),
        ])
    rows = markdown_table(header, cells)
    name = repo_id or "path/to/this/model"
    # show a real truncation: the ≥ 99% dimension, or the ≥ 95% one when only the full width keeps 99%
    share, example = ("99%", rec["99%"]) if rec["99%"] < dims[0] else ("95%", rec["95%"])
    default = meta["truncate_dim"]
    data = meta["data"]
    return "\n".join([
        START,
        "## Matryoshka embeddings",
        "",
        f"Fine-tuned from `{meta['base_model']}` with Matryoshka Representation Learning by "
        f"[mrl-plugins](https://pypi.org/project/mrl-plugins/): the first dimensions of each embedding carry "
        f"the most meaning. Trained dimensions: {', '.join(map(str, dims))}.",
        "",
        (f"This model loads truncated to **{default}** dimensions by default (`truncate_dim` in "
         "`config_sentence_transformers.json`); pass another `truncate_dim` to change it."
         if default else f"This model loads at its full {dims[0]} dimensions; pass `truncate_dim` to truncate."),
        "",
        f"Recommended: **{rec['99%']}** dimensions keep ≥ 99% of full-dimension MRR@{k}; "
        f"**{rec['95%']}** keep ≥ 95%.",
        "",
        f"Retrieval quality per dimension on {data['eval_queries']} held-out queries against {data['corpus']} "
        f"documents (data source `{data['source']}`; truncated vectors re-normalised):",
        "",
        *rows,
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        f'model = SentenceTransformer("{name}", truncate_dim={example})  # keeps ≥ {share} of full-dim MRR@{k}',
        'embeddings = model.encode(["a query", "a document"])',
        "similarities = model.similarity(embeddings, embeddings)  # cosine",
        "```",
        "",
        "Truncated vectors are not unit length: re-normalise them before using a dot product, or compare "
        "them with cosine similarity (as `model.similarity` does).",
        END,
    ])


def update_card(model_dir: Path, meta: dict[str, Any], repo_id: str | None, k: int = 10) -> None:
    """Add (or replace) the Matryoshka section and front-matter keys in the model's README.md."""
    path = model_dir / "README.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    text = re.sub(re.escape(START) + ".*?" + re.escape(END) + r"\n*", "", text, flags=re.S)
    front, body = "", text
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            front, body = text[4:end + 1], text[end + 5:]
    front = re.sub(r"(?m)^(matryoshka_dims|mrl_recommended_dim|mrl_truncate_dim):.*\n", "", front)
    front += f"matryoshka_dims: {json.dumps(meta['matryoshka_dims'])}\n"
    front += f"mrl_recommended_dim: {meta['recommended_dims']['99%']}\n"
    if meta["truncate_dim"]:
        front += f"mrl_truncate_dim: {meta['truncate_dim']}\n"
    path.write_text(f"---\n{front}---\n\n{card_section(meta, repo_id, k)}\n\n{body.lstrip()}", encoding="utf-8")


def set_truncate_dim(model_dir: Path, truncate_dim: int | None) -> None:
    """Write the default ``truncate_dim`` into a saved model's config, as sentence-transformers does."""
    path = model_dir / "config_sentence_transformers.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    if truncate_dim is None:
        config.pop("truncate_dim", None)
    else:
        config["truncate_dim"] = truncate_dim
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_publication(model_dir: Path, results: dict[str, Any], truncate_dim: int | str | None, repo_id: str | None) -> dict[str, Any]:
    """Default dimension, ``mrl.json`` and model card for a saved model; returns the metadata."""
    resolved = resolve_truncate_dim(truncate_dim, results)
    full = results["dims"][0]
    if resolved is not None and not 0 < resolved <= full:
        raise UserError(f"truncate_dim {resolved} must be between 1 and the model's dimension {full}.")
    set_truncate_dim(model_dir, resolved)
    meta = mrl_metadata(results, resolved)
    (model_dir / "mrl.json").write_text(json.dumps(meta, indent=2) + "\n")
    update_card(model_dir, meta, repo_id, results.get("k", 10))
    return meta


def find_token() -> str | None:
    """The token from HF_TOKEN or the user's saved login (``hf auth login``)."""
    from huggingface_hub import get_token

    return get_token()


def push(model_dir: Path, repo_id: str, *, private: bool = False, revision: str | None = None, output_dir: Path | None = None) -> str:
    """Create the repo (if needed) and upload the folder; returns the commit URL."""
    from huggingface_hub import HfApi

    token = find_token()
    retry = f"mrl-run publish {output_dir}" if output_dir else "mrl-run publish OUTPUT_DIR"
    if not token:
        raise PublishError(
            f"no Hugging Face token: set HF_TOKEN or run 'hf auth login', then retry with '{retry}'. "
            f"The model is saved in {model_dir}."
        )
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(model_dir), revision=revision,
            commit_message="Upload Matryoshka model trained with mrl-plugins",
        )
    except Exception as exc:  # network, permission, server: report, keep the model
        detail = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).rstrip(". ")
        raise PublishError(
            f"pushing {model_dir} to '{repo_id}' at {api.endpoint} failed: {type(exc).__name__}: {detail}. "
            f"The saved model is intact; fix the cause and retry with '{retry}'."
        ) from None
    logger.info("pushed %s to %s", model_dir, info.commit_url if hasattr(info, "commit_url") else info)
    return str(getattr(info, "commit_url", info))
