"""A run's evaluation, saved with it: the evaluation set, every model's evaluation embeddings
(``evaluation/<key>.queries.npy``, ``<key>.corpus.npy``) and every column's per-query scores
(``per_query.npz``): enough to re-score a finished run, compare any two columns query by query
(:func:`mrl_plugins.evidence.stats.paired_p_value`) or search its corpus in ``mrl-run demo``
without encoding again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.types import IRSet
from ..evaluation.encode import EncodedIRSet
from .rundir import EVALUATION, RunDir

# -- a run's evaluation, saved with it ------------------------------------------------------------
EVALUATION_DIR = EVALUATION
"""Where a run keeps its evaluation set (``eval_set.json.gz``) and every model's evaluation
embeddings (``<key>.queries.npy``, ``<key>.corpus.npy``, float32, rows in the set's order): enough
to re-score a finished run, or to search its corpus in ``mrl-run demo``, without encoding again."""


def save_evaluation(folder: Path, ir: IRSet, encoded: dict[str, EncodedIRSet]) -> Path:
    import gzip
    import json

    out = RunDir(folder).evaluation
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(encoded.values()))
    payload = {
        "queries": [[q, ir.queries[q]] for q in first.query_ids],
        "corpus": [[d, ir.corpus[d]] for d in first.corpus_ids],
        "relevant": {q: sorted(ir.relevant[q]) for q in first.query_ids},
    }
    with gzip.open(out / "eval_set.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(payload, fh, ensure_ascii=False)
    for key, enc in encoded.items():
        np.save(out / f"{key}.queries.npy", enc.queries)
        np.save(out / f"{key}.corpus.npy", enc.corpus)
    return out


VALIDATION_QUERIES = "validation_queries.json.gz"
"""The validation split's queries (ids and texts), beside the evaluation set."""


def save_validation_queries(folder: Path, ir: IRSet) -> Path:
    """The run's validation queries, without their documents: what ``mrl-run index RUN …`` measures
    its candidate settings with (issue #37: probes worded as the run's queries are, and text that
    no fitted part of the run saw)."""
    import gzip
    import json

    out = RunDir(folder).evaluation
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / VALIDATION_QUERIES, "wt", encoding="utf-8") as fh:
        json.dump({"queries": [[q, text] for q, text in ir.queries.items()]}, fh, ensure_ascii=False)
    return out / VALIDATION_QUERIES


def load_validation_queries(run_dir: Path) -> list[str] | None:
    """The texts :func:`save_validation_queries` kept, in their order; ``None`` when the run kept
    none (``[validation] queries = 0``, or a run written before runs kept them)."""
    import gzip
    import json

    from ..errors import UserError

    path = RunDir(run_dir).evaluation / VALIDATION_QUERIES
    if not path.is_file():
        return None
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            texts = [text for _, text in json.load(fh)["queries"]]
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); {DAMAGED}") from None
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise UserError(f"{path}: holds no queries, or one that is not text; {DAMAGED}")
    return texts


@dataclass
class SavedEvaluation:
    """A run's saved evaluation set, and the embeddings of each of its models."""

    ir: IRSet
    query_ids: list[str]
    corpus_ids: list[str]
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]]
    """model key → full-dimension (queries, corpus), rows in ``query_ids`` / ``corpus_ids`` order."""

    @property
    def relevant_rows(self) -> list[set[int]]:
        row = {d: i for i, d in enumerate(self.corpus_ids)}
        return [{row[d] for d in self.ir.relevant[q]} for q in self.query_ids]


def load_evaluation(run_dir: Path) -> SavedEvaluation:
    import gzip
    import json

    from ..errors import UserError

    folder = RunDir(run_dir).evaluation
    path = folder / "eval_set.json.gz"
    if not path.is_file():
        raise UserError(
            f"{run_dir}: no saved evaluation set ({EVALUATION_DIR}/eval_set.json.gz); runs of mrl-plugins 0.2 and "
            "later save one. Run the recipe again with this version."
        )
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            payload = json.load(fh)
        query_ids = [q for q, _ in payload["queries"]]
        corpus_ids = [d for d, _ in payload["corpus"]]
        relevant = {q: set(d) for q, d in payload["relevant"].items()}
        ir = IRSet(dict(payload["queries"]), dict(payload["corpus"]), relevant)
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); {DAMAGED}") from None
    if not query_ids or not corpus_ids or set(ir.relevant) - set(query_ids):
        raise UserError(f"{path}: its queries, documents and relevance lists disagree; {DAMAGED}")
    embeddings = {}
    for file in sorted(folder.glob("*.queries.npy")):
        key = file.name[: -len(".queries.npy")]
        embeddings[key] = (_saved_array(file, len(query_ids)),
                           _saved_array(folder / f"{key}.corpus.npy", len(corpus_ids)))
        if embeddings[key][0].shape[1] != embeddings[key][1].shape[1]:
            raise UserError(f"{folder}: the saved embeddings of '{key}' disagree ({embeddings[key][0].shape[1]} dims "
                            f"for queries, {embeddings[key][1].shape[1]} for documents); {DAMAGED}")
    return SavedEvaluation(ir, query_ids, corpus_ids, embeddings)


DAMAGED = ("the run's files are damaged. Run the recipe again, or search an index instead: "
           "'mrl-run index RUN CORPUS -o INDEX' then 'mrl-run demo RUN --index INDEX'.")


def _saved_array(path: Path, rows: int) -> np.ndarray:
    """One saved embedding matrix: there, whole, ``rows`` finite rows of one width."""
    from ..errors import UserError

    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: missing (its partner file is there); {DAMAGED}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"{path}: cannot be read ({type(exc).__name__}: {exc}); {DAMAGED}") from None
    if array.ndim != 2 or array.shape[0] != rows or array.dtype.kind != "f":
        raise UserError(f"{path}: holds {array.dtype} {array.shape}, expected {rows} rows of floats (one per saved "
                        f"text); {DAMAGED}")
    if not np.isfinite(array).all():
        raise UserError(f"{path}: holds values that are not finite; {DAMAGED}")
    return array


def save_per_query(folder: Path, per_query: dict[str, dict[int, dict[str, np.ndarray]]]) -> None:
    """Every column's per-query scores (``evaluation/per_query.npz``), so that any two columns
    can be compared query by query after the run (``mrl_plugins.stats.paired_p_value``)."""
    import json

    out = RunDir(folder).evaluation
    out.mkdir(parents=True, exist_ok=True)
    index: list[list[Any]] = []
    arrays: dict[str, Any] = {}
    for key, by_dim in per_query.items():
        for dim, by_metric in by_dim.items():
            for metric, values in by_metric.items():
                arrays[f"a{len(index)}"] = np.asarray(values, dtype=np.float32)
                index.append([key, int(dim), metric])
    np.savez_compressed(out / "per_query.npz", **arrays)
    (out / "per_query.json").write_text(json.dumps(index, ensure_ascii=False))


def load_per_query(run_dir: Path) -> dict[str, dict[int, dict[str, np.ndarray]]]:
    import json

    folder = RunDir(run_dir).evaluation
    index = json.loads((folder / "per_query.json").read_text())
    arrays = np.load(folder / "per_query.npz")
    out: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    for i, (key, dim, metric) in enumerate(index):
        out.setdefault(key, {}).setdefault(dim, {})[metric] = arrays[f"a{i}"]
    return out
