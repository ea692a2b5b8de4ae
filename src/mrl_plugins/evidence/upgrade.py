"""Older ``results.json`` files, read as the current schema: its version history and the one
function that brings an older file's layout up to date, in memory (the file is never rewritten).

:mod:`.results` holds the schema itself and calls :func:`upgrade` when a file's
``schema_version`` is older than :data:`SCHEMA_VERSION`; nothing else reads an old layout.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 6
"""1: mrl-plugins 0.1 (no ``schema_version`` key); 2: entry keys, ``reads``, search costs and
the version; 3: comparison keys from parameters (:func:`~mrl_plugins.evidence.results.column_key`), ``params`` and
``no_intervals`` per column; 4: ``validation`` columns; 5: a sweep's trial keeps its scores in
``validation`` alone (``models``, the evaluation set's, is empty: a trial never scores it), each
validation query's score (``validation_scores``) for choices with a margin, and ``checks``;
6: ``tasks``, the ``[[task]]`` evaluations beyond retrieval (scores, intervals, ``kept``,
``versus_base``, ``validation``; an older file has none, and needs no change to load). Keys
of older files stay as they were written (they are opaque identifiers); their ``params`` are
recovered once, in :func:`upgrade`."""


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """Bring an older file to the current layout (in memory; the file is not rewritten)."""
    version = raw.get("schema_version", 1)
    models = raw.get("models", {})
    if not isinstance(models, dict):
        return {**raw, "schema_version": SCHEMA_VERSION}  # the schema reports what is wrong with it
    out = {**raw, "schema_version": SCHEMA_VERSION, "models": {}}
    for key, entry in models.items():
        if not isinstance(entry, dict):
            out["models"][key] = entry
            continue
        entry = dict(entry)
        if version < 2:  # 1 → 2: entries gain their key and what they read; the no-MRL control, a
            # comparison entry in schema 1, becomes the run model ``no-mrl`` it always was
            if entry.get("kind") == "comparison" and entry.get("component") == "no-mrl":
                key, entry["kind"], entry["reads"] = "no-mrl", "model", ["no-mrl"]
            entry.setdefault("reads", [key] if entry.get("kind") == "model" else [])
            entry["key"] = key
        entry.setdefault("params", params_from_label(entry))  # 2 → 3
        out["models"][key] = entry
    if version < 5 and out.get("trial") is not None and out.get("validation"):  # 4 → 5: a trial's models were
        out["models"] = {}  # its validation scores, which ``validation`` holds too
    return out


def params_from_label(entry: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 kept a search column's parameters only in its label (``MRL · funnel 100 hnsw →
    192``, ``MRL · quantize int8 + rescore``): recovered here, once, so that nothing else ever
    parses a label."""
    label, component = str(entry.get("label", "")), entry.get("component")
    if component == "funnel" and " · funnel " in label:
        words = label.split(" · funnel ", 1)[1].split()
        if words and words[0].isdigit():
            rerank = words[words.index("→") + 1] if "→" in words[:-1] else None
            index = next((w for w in words[1:] if w != "→" and w != rerank), None)  # none: the default, exact
            return {"shortlist": int(words[0]), "index": index,
                    "rerank_dim": int(rerank) if rerank and rerank.isdigit() else None}
    if component == "quantize" and " · quantize " in label:
        column = label.split(" · quantize ", 1)[1]
        return {"precision": column.split()[0], "rescore": column.endswith("+ rescore")}
    return {}


__all__ = ["SCHEMA_VERSION", "params_from_label", "upgrade"]
