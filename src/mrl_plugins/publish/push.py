"""Pushing a run's model to the Hub: a copy of the model with its card, Matryoshka metadata and
exports, pushed as one commit; nothing local changes until the push succeeded, and a failed
push prints the command that retries it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..evidence.results import MRL, PublishInfo, RunResults
from ..evidence.rundir import RunDir
from .hub import PublishError, find_token, push
from .model import column_of, write_publication


def retry_command(out: Path, *, repo_id: str | None = None, truncate_dim: int | str | None = None,
                  revision: str | None = None, private: bool = False, model: str | None = None,
                  exports: list[Path] | None = None) -> str:
    """The exact command that retries this publication."""
    parts = ["mrl-run", "publish", str(out)]
    if model and model.strip("/") != "model":
        parts += ["--model", model]
    for folder in exports or []:
        parts += ["--export", str(folder)]
    if repo_id:
        parts += ["--repo-id", repo_id]
    if truncate_dim is not None:
        parts += ["--truncate-dim", str(truncate_dim)]
    if revision:
        parts += ["--revision", revision]
    if private:
        parts.append("--private")
    return " ".join(parts)


def _current_truncate_dim(model_dir: Path) -> int | None:
    """The default width a saved model has now (publishing exports alone keeps it)."""
    try:
        value = json.loads((model_dir / "config_sentence_transformers.json").read_text()).get("truncate_dim")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) else None


def written_files(staged: Path, source: Path) -> list[str]:
    """The small files publishing wrote into the staged copy (card, ``mrl.json``, configs): those
    that differ from, or are missing in, the run's model. Large files were hard-linked, never written."""
    out = []
    for path in staged.rglob("*"):
        rel = path.relative_to(staged)
        exported = bool(rel.parts) and rel.parts[0] in ("onnx", "openvino")
        if path.is_file() and path.stat().st_size <= 1 << 20 and not exported:
            target = source / rel
            if not target.is_file() or target.read_bytes() != path.read_bytes():
                out.append(str(rel))
    return out


def publish_run(out: Path, results: RunResults, *, repo_id: str, private: bool, revision: str | None,
                truncate_dim: int | str | None = None, retry: str | None = None, model: str = "model",
                exports: list[Path] | None = None) -> str:
    """Push a finished run's model (``model/``, or another model the run saved, e.g. an adapted
    one), optionally with another default dimension and with ``mrl-run export`` folders beside it
    (:mod:`mrl_plugins.publish_exports`), and record where it went. Nothing local changes until
    the push has succeeded: a new default dimension, the exports and the card are written into a
    copy, pushed from there, and only then copied into the run's model."""
    import shutil

    from ..export.published import add_exports, read_exports
    from ..outputs.destination import cannot_write, copy_to_edit

    retry = retry or retry_command(out, repo_id=repo_id, truncate_dim=truncate_dim, revision=revision, private=private)
    column = column_of(results, model)
    run = RunDir(out)
    source = run.saved(model)
    if not find_token():
        raise PublishError(f"no Hugging Face token: set HF_TOKEN or run 'hf auth login', then retry with '{retry}'. "
                           f"Nothing was changed; the model is saved in {source}.")
    extra = read_exports(exports or [], source)
    why = cannot_write(run.path)  # before the push: it ends by recording the push in results.json there
    if why:
        raise UserError(f"{run.path}: publishing records where the model went in its results.json, and the folder "
                        f"cannot be written: {why}. Nothing was pushed; make it writable, or copy the run folder and "
                        "publish the copy.")
    rewrite = truncate_dim is not None or bool(extra) or (column != MRL and not (source / "mrl.json").is_file())
    folder, staged, meta = source, None, None
    try:
        if rewrite:
            staged = run.scratch("publish-staging")
            shutil.rmtree(staged, ignore_errors=True)
            copy_to_edit(source, staged)
            add_exports(staged, extra)
            meta = write_publication(staged, results, truncate_dim if truncate_dim is not None else
                                     _current_truncate_dim(source), repo_id, column)
            folder = staged
        url = push(folder, repo_id, private=private, revision=revision, retry=retry, shown=source)
        if staged is not None:
            for name in written_files(staged, source):
                os.replace(staged / name, source / name)
            add_exports(source, extra)  # the run's model now holds what its repository holds
    finally:
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
    update: dict[str, Any] = {"repo_id": repo_id, "revision": revision, "commit_url": url}
    if meta is not None and column == MRL:
        update["truncate_dim"] = meta["truncate_dim"]
    results.publish = (results.publish or PublishInfo()).model_copy(update=update)
    results.save(out)
    return url
