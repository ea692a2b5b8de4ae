"""MTEB's own task types on a local file: the data a user has, scored by MTEB's protocols
(``AbsTaskSTS``, ``AbsTaskClassification``, ``AbsTaskClustering``) with no Hub access.

The file is read once (JSON lines, JSON, CSV, TSV or Parquet, compressed or not) and held as the
``datasets.DatasetDict`` MTEB's loaders would have produced: the ``test`` split it scores, and for
classification the ``train`` split its classifier fits on.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from mrl_plugins.data.tables import read_table
from mrl_plugins.errors import UserError

Kind = Literal["STS", "Classification", "Clustering"]

ROLES: dict[str, tuple[str, ...]] = {
    "STS": ("sentence1", "sentence2", "score"),
    "Classification": ("text", "label"),
    "Clustering": ("text", "label"),
}
"""The columns each kind reads, by role (``columns`` in the task's parameters renames them)."""

MAIN_SCORE = {"STS": "cosine_spearman", "Classification": "accuracy", "Clustering": "v_measure"}


def read_rows(path: Path, kind: Kind, columns: dict[str, str]) -> dict[str, list[Any]]:
    """The file's columns by role, plus ``split`` for classification when the file has one; a
    missing column or an empty value is one message naming the file, the column and the fix."""
    table = read_table(path)
    have = list(table.column_names)
    names = {role: columns.get(role, role) for role in ROLES[kind]}
    missing = [f"'{name}' ({role})" if name != role else f"'{name}'"
               for role, name in names.items() if name not in have]
    if missing:
        raise UserError(f"{path}: an MTEB {kind} task needs the column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing)}; the file has {', '.join(repr(c) for c in have)}. Rename them in the "
                        f"task's columns table, e.g. columns = {{ {ROLES[kind][0]} = \"{have[0]}\" }}.")
    rows = {role: list(table[name]) for role, name in names.items()}
    split = columns.get("split", "split")
    if kind == "Classification" and split in have:
        rows["split"] = list(table[split])
    for role, values in rows.items():
        empty = [i for i, v in enumerate(values) if v is None or v == ""]
        if empty:
            raise UserError(f"{path}: row {empty[0] + 1} has no '{names.get(role, role)}' value ({len(empty)} such "
                            "rows); fill or remove them.")
    return rows


def dataset(rows: dict[str, list[Any]], kind: Kind, seed: int) -> Any:
    """The rows as MTEB's task types expect them: ``test`` (and ``train`` for classification,
    from the ``split`` column, or each label's rows halved at random with ``seed``)."""
    from datasets import Dataset, DatasetDict

    if kind == "STS":
        return DatasetDict({"test": Dataset.from_dict({"sentence1": [str(t) for t in rows["sentence1"]],
                                                       "sentence2": [str(t) for t in rows["sentence2"]],
                                                       "score": [float(s) for s in rows["score"]]})})
    texts, labels = [str(t) for t in rows["text"]], [str(y) for y in rows["label"]]
    if kind == "Clustering":
        return DatasetDict({"test": Dataset.from_dict({"sentences": texts, "labels": labels})})
    if "split" in rows:
        train = [i for i, s in enumerate(rows["split"]) if s == "train"]
        test = [i for i, s in enumerate(rows["split"]) if s == "test"]
    else:
        rng = random.Random(seed)
        train, test = [], []
        for label in sorted(set(labels)):
            members = [i for i, y in enumerate(labels) if y == label]
            rng.shuffle(members)
            train += members[: len(members) // 2]
            test += members[len(members) // 2:]
    if not train or not test:
        raise UserError(f"an MTEB Classification task needs training and test rows ({len(train)} and {len(test)}): "
                        'give the split column values "train" and "test", or leave the column out.')
    return DatasetDict({s: Dataset.from_dict({"text": [texts[i] for i in sorted(part)],
                                              "label": [labels[i] for i in sorted(part)]})
                        for s, part in (("train", train), ("test", test))})


def local_task(kind: Kind, name: str, path: Path, data: Any, scores: list[float] | None = None) -> Any:
    """An instance of MTEB's ``kind`` task type named ``name``, its data already loaded: MTEB runs
    its own protocol on it (STS: Spearman of cosine; Classification: logistic regression on
    undersampled training rows, n experiments; Clustering: k-means over bootstrap samples, V-measure;
    every document embedded, where MTEB's Hub tasks may embed a fraction)."""
    from mteb.abstasks.classification import AbsTaskClassification
    from mteb.abstasks.clustering import AbsTaskClustering
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    base: Any = {"STS": AbsTaskSTS, "Classification": AbsTaskClassification, "Clustering": AbsTaskClustering}[kind]
    metadata = TaskMetadata(
        name=name, type=kind, main_score=MAIN_SCORE[kind], description=f"{kind} on the local file {path.name}",
        reference=None, dataset={"path": str(path), "revision": "local"},
        category="t2t" if kind == "STS" else "t2c", eval_splits=["test"], eval_langs=["eng-Latn"], date=None,
        dialect=None, domains=None, task_subtypes=None, license=None, annotations_creators=None,
        modalities=["text"], sample_creation=None, bibtex_citation="")
    attrs: dict[str, Any] = {"metadata": metadata}
    if kind == "Clustering":
        attrs["max_fraction_of_documents_to_embed"] = None  # every document: a local file is small enough
    if kind == "STS" and scores:
        attrs["min_score"], attrs["max_score"] = min(scores), max(scores)
    cls = type(f"Local{kind}", (base,), attrs)
    task = cls()
    task.dataset, task.data_loaded = data, True
    return task
