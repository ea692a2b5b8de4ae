"""Save a fine-tuned model that loads truncated, with the run's evidence in its model card; push it.

Saving is sentence-transformers' own (``truncate_dim`` is persisted in
``config_sentence_transformers.json`` and applied on load by sentence-transformers ≥ 5.4). This
module edits the card sentence-transformers generated through ``huggingface_hub.ModelCard``: the
Matryoshka facts go into its ``CardData`` (front matter) and a Matryoshka section into its text,
and ``mrl.json`` carries the same facts for tools. Pushing goes through ``huggingface_hub`` and
follows ``HF_ENDPOINT``; a failed push leaves the saved model as it was, to be retried with
``mrl-run publish OUTPUT_DIR``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..evidence.decisions import (
    OperatingPoint,
    basis,
    operating_points,
    recommended_widths,
    serving_choice,
    truncation_on_front,
)
from ..evidence.results import KEEP_SHARES, MRL, RunResults, share_label
from ..export.serving_configs import set_matryoshka_config, write_serving_configs
from ..present.card import END, START, card_section

logger = logging.getLogger(__name__)


def resolve_truncate_dim(value: int | str | None, results: RunResults, column: str = MRL) -> int | None:
    """A number stays; ``"recommended"`` is the smallest dimension keeping ≥ 99% of full quality."""
    if value is None or isinstance(value, int):
        return value
    widths = recommended_widths(results, column)
    return widths[max(widths)]


_EMBEDDED_PATH = re.compile(r"(?<![\w.:/~-])(?:~|[A-Za-z]:)?(?:[/\\][\w.@+-]+){2,}")


def absolute_paths(value: Any) -> list[str]:
    """Absolute file paths found in a JSON value's strings (``/home/u/x.jsonl``, ``C:\\data``),
    whole or inside a sentence; URLs are not paths."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in absolute_paths(v)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in absolute_paths(v)]
    if isinstance(value, str):
        return [m.group(0) for m in _EMBEDDED_PATH.finditer(value)]
    return []


def without_absolute_paths(value: Any) -> Any:
    """A JSON value with every absolute path replaced by its file name: what a data source
    summarised (rows skipped in ``/home/me/data/x.jsonl``) is published without the machine's
    layout (``x.jsonl``)."""
    if isinstance(value, dict):
        return {k: without_absolute_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_absolute_paths(v) for v in value]
    if isinstance(value, str):
        return _EMBEDDED_PATH.sub(lambda m: re.split(r"[/\\]", m.group(0))[-1], value)
    return value


def mrl_metadata(results: RunResults, truncate_dim: int | None, column: str = MRL) -> dict[str, Any]:
    """What ``mrl.json`` holds: dimensions, default dimension, recommendations and metrics."""
    found = serving_choice(results) if column == MRL else None
    widths = recommended_widths(results, column)
    return {
        "matryoshka_dims": results.dims,
        "matryoshka_weights": results.weights,
        "truncate_dim": truncate_dim,
        "column": column,
        "recommended_dims": {share_label(s): d for s, d in widths.items()},
        "chosen_on": results.chosen_on,  # the recommendations and the serving choice: validation split or not
        "base_model": results.model.name,
        "data": without_absolute_paths(results.data.model_dump(mode="json")),
        "metrics": {key: {str(d): m for d, m in r.metrics.items()} for key, r in results.models.items()},
        "labels": {key: r.label for key, r in results.models.items()},
        "serving": None if found is None else {"keeps": share_label(found[0]), "label": found[1].label,
                                                "column": found[1].column, "params": found[1].params,
                                                "dim": found[1].dim,
                                                "kept": round(found[1].kept, 4), "index_bytes": found[1].index_bytes,
                                                "rerank_bytes": found[1].rerank_bytes,
                                                "recall_vs_exact": found[1].overlap,
                                                "query_time_ratio": found[1].ratio_single,
                                                # False: no truncated setting is on the run's Pareto front
                                                "truncation_on_front": truncation_on_front(basis(results))},
    }


def update_card(model_dir: Path, results: RunResults, truncate_dim: int | None, repo_id: str | None,
                column: str = MRL) -> None:
    """Add (or replace) the Matryoshka section in the model card and its facts in the front matter."""
    from huggingface_hub import ModelCard

    path = model_dir / "README.md"
    card = ModelCard(path.read_text(encoding="utf-8")) if path.exists() else ModelCard("---\n---\n")
    text = card.text
    start, end = text.find(START), text.find(END)
    if start != -1 and end > start:
        text = text[:start] + text[end + len(END):]
    from ..export.published import published_exports
    from ..export.serving_configs import tei_mismatch

    section = card_section(results, truncate_dim, repo_id, column, published_exports(model_dir),
                           tei_mismatch(model_dir), snippets=engine_snippets)
    card.text = f"\n{section}\n\n{text.lstrip()}"
    rec = recommended_widths(results, column)
    if results.model.origin != "local path":  # a Hub id (or the packaged copy of one): the Hub links the two
        card.data["base_model"] = results.model.name
    contributed = results.data.card
    for key in ("datasets", "license", "language"):
        if key in contributed:
            card.data[key] = contributed[key]
    if contributed.get("tags"):
        tags = list(card.data.get("tags") or [])
        card.data["tags"] = tags + [t for t in contributed["tags"] if t not in tags]
    facts = front_matter(results, rec, column)
    for key, value in facts.items():
        card.data[key] = value
    if "mrl_tasks" not in facts:  # a card published before from a run with tasks: not this run's facts
        card.data.pop("mrl_tasks")
    if truncate_dim:
        card.data["mrl_truncate_dim"] = truncate_dim
    else:
        card.data.pop("mrl_truncate_dim")
    card.save(path)


def front_matter(results: RunResults, rec: dict[float, int], column: str = MRL) -> dict[str, Any]:
    """The card's machine-readable Matryoshka facts (one schema, documented in the README under
    "Model card front matter"): the trained widths, the recommended (strictest share) and
    minimum (loosest share) widths, and per recommendation the share it was chosen to keep, on
    which data, and the share it keeps on the held-out evaluation set."""
    from ..evidence.results import PRIMARY

    widths = [{"dim": dim, "target": share, "kept": round(results.retention(column, dim) or 0.0, 4),
               "metric": PRIMARY.key(results.k)} for share, dim in sorted(rec.items(), reverse=True)]
    found = {"matryoshka_dims": results.dims, "mrl_recommended_dim": rec[max(rec)], "mrl_minimum_dim": rec[min(rec)],
             "mrl_widths": widths, "mrl_chosen_on": results.chosen_on}
    tasks = [{"task": key, "label": t.label, "metric": t.metric,
              "scores": {str(d): round(t.scores[column][d][t.metric], 4) for d in sorted(results.dims, reverse=True)},
              "keeps": {share_label(s): t.smallest_keeping(column, s) for s in sorted(KEEP_SHARES, reverse=True)},
              "chosen_on": "validation" if column in t.validation else "all"}
             for key, t in results.tasks.items() if column in t.scores]
    if tasks:  # the [[task]] evaluations beyond retrieval, on their own data: per task what each width keeps
        found["mrl_tasks"] = tasks
    return found


def set_truncate_dim(model_dir: Path, truncate_dim: int | None) -> None:
    """Write the default ``truncate_dim`` into a saved model's config, as sentence-transformers does."""
    path = model_dir / "config_sentence_transformers.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    if truncate_dim is None:
        config.pop("truncate_dim", None)
    else:
        config["truncate_dim"] = truncate_dim
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_publication(
    model_dir: Path, results: RunResults, truncate_dim: int | str | None, repo_id: str | None, column: str = MRL
) -> dict[str, Any]:
    """Default dimension, ``mrl.json`` and model card for a saved model; returns the metadata."""
    resolved = resolve_truncate_dim(truncate_dim, results, column)
    if resolved is not None and not 0 < resolved <= results.full_dim:
        raise UserError(f"truncate_dim {resolved} must be between 1 and the model's dimension {results.full_dim}.")
    set_truncate_dim(model_dir, resolved)
    set_matryoshka_config(model_dir, results.dims)
    write_serving_configs(model_dir)
    meta = mrl_metadata(results, resolved, column)
    (model_dir / "mrl.json").write_text(json.dumps(meta, indent=2) + "\n")
    update_card(model_dir, results, resolved, repo_id, column)
    return meta


def column_of(results: RunResults, model: str) -> str:
    """The run's column a saved model folder is: ``model`` is MRL; another is the column that saved it."""
    if model.strip("/") == "model":
        return MRL
    for key, column in results.models.items():
        if column.saved_model and column.saved_model.strip("/") == model.strip("/"):
            return key
    saved = [c.saved_model for c in results.models.values() if c.saved_model]
    raise UserError(f"--model {model}: no column of this run saved a model there; its models are 'model'"
                    + "".join(f", '{s}'" for s in saved) + ".")


def engine_snippets(results: RunResults, point: OperatingPoint) -> list[dict[str, str]]:
    """Each installed index backend's own way to serve the choice (a database's SQL), with the
    run's columns it measured: asked of every registered backend, none named here (the card lays
    them out: :data:`mrl_plugins.present.card.Snippets`)."""
    from ..plugins import load_registry

    try:
        registry = load_registry()
    except Exception:  # a card is still written when the plugins cannot be loaded
        return []
    choice = point.serving_choice(results.full_dim, results.k, registry.exact_index())
    points = operating_points(results)
    out = []
    for name in registry.names("index"):
        measured = {p.column: {"dim": p.dim, "shortlist": p.shortlist, "kept": p.kept, "recall": p.overlap,
                               "params": p.params} for p in points if p.params.get("index") == name}
        try:
            snippet = registry.get("index", name).serving_snippet(choice, measured)
        except Exception:
            continue
        if snippet is not None:
            out.append({"title": snippet.title, "language": snippet.language, "code": snippet.code,
                        "note": snippet.note})
    return out
