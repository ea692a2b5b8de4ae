"""Built-in evaluation tasks (issue #39): ``similarity``, ``classification``, ``clustering`` and
``retrieval``, each on a local file (JSON lines, JSON, CSV, TSV or Parquet, compressed or not),
each scored for every model of the run at every width from embeddings encoded once
(:mod:`mrl_plugins.evaluation.tasks` holds the protocols). The run's own retrieval evaluation
(``[data]``, ``[eval]``) stays where it is, because the run's choices, validation split and search
costs rest on it; the ``retrieval`` task scores retrieval on other data (another domain's query
and document pairs) with the same scorer, beside the other tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ..components import Params, Task, TaskContext, ValidationContext
from ..data.files import file_problem
from ..data.tables import read_table, require_columns
from ..errors import UserError
from ..evaluation import tasks as protocols
from ..hookspecs import hookimpl


class FileParams(Params):
    path: str = Field(description="The task's file (JSON lines, JSON, CSV, TSV or Parquet), relative to the recipe.")
    limit: int | None = Field(None, gt=0, description="Use at most this many rows (the first ones).")
    validation: float = Field(0.0, ge=0, lt=1, description="Share of the scored items (pairs, test texts, clustered "
                                                          "texts) set apart, at random, to choose the widths that "
                                                          "keep 95% / 99% on; the tables then report the rest. 0: "
                                                          "none, the widths are read off all of them.")


class FileTask(Task[Any]):
    """A task whose rows come from one local file, read once."""

    def parts(self, ctx: TaskContext, n: int) -> dict[str, Any]:
        """Bootstrap resamples of the held-out items, the validation mask and resamples of the
        validation items (None without a validation part): the protocols' keyword arguments."""
        share = self.params.validation
        if not share:
            return {"resamples": ctx.resamples(n), "validation": None, "validation_resamples": None}
        mask = ctx.validation_items(n, share)
        if min(mask.sum(), n - mask.sum()) < 3:
            raise UserError(f"[[task]] {self.name} ({self.params.path}): validation = {share} leaves "
                            f"{int(mask.sum())} of {n} items to choose on and {n - int(mask.sum())} to report; "
                            "give a share that leaves at least 3 on each side.")
        return {"resamples": ctx.resamples(n - int(mask.sum())), "validation": mask,
                "validation_resamples": ctx.resamples(int(mask.sum()))}

    columns: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    """Roles read when the file has their column (``split``), else absent from :meth:`read`."""
    _rows: dict[str, list[Any]] | None = None

    def wanted(self, roles: tuple[str, ...] | None = None) -> list[str]:
        return [getattr(self.params, f"{c}_column", c) for c in (self.columns if roles is None else roles)]

    def check(self, ctx: ValidationContext) -> list[str]:
        path = ctx.recipe_dir / self.params.path
        problem = file_problem("path", self.params.path, path)
        if problem:
            return [problem]
        try:
            self.read(ctx.recipe_dir)
        except UserError as exc:
            return [str(exc)]
        return []

    def read(self, recipe_dir: Path) -> dict[str, list[Any]]:
        """Its columns, by their role (``text``, ``label``, ``sentence1`` …), at most ``limit`` rows."""
        if self._rows is None:
            path = recipe_dir / self.params.path
            table = read_table(path)
            wanted = self.wanted()
            require_columns(table.column_names, wanted, str(path))
            n = min(len(table), self.params.limit or len(table))
            rows = {role: list(table[name])[:n] for role, name in zip(self.columns, wanted)}
            rows |= {role: list(table[name])[:n] for role, name in zip(self.optional, self.wanted(self.optional))
                     if name in table.column_names}
            empty = [i for i in range(n) if any(rows[r][i] in (None, "") for r in self.columns)]
            if empty:
                raise UserError(f"{path}: row {empty[0] + 1} has an empty {', '.join(self.columns)} value "
                                f"({len(empty)} such rows); fill or remove them.")
            pattern = getattr(self.params, "label_pattern", None)
            if pattern:
                rows["label"] = self.pattern_labels(path, rows["label"], pattern)
            self._rows = rows
        return self._rows

    def label(self) -> str:
        return f"{self.title} ({Path(self.params.path).name})"

    def pattern_labels(self, path: Path, values: list[Any], pattern: str) -> list[str]:
        """Each label cut out of its column by ``label_pattern`` (its first group, else the match)."""
        import re

        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise UserError(f"label_pattern: '{pattern}' is not a regular expression ({exc}).") from None
        out = []
        for i, value in enumerate(values):
            found = compiled.search(str(value))
            if found is None:
                raise UserError(f"{path}: row {i + 1}'s {self.params.label_column} '{value}' does not match "
                                f"label_pattern '{pattern}'; fix the pattern or the row.")
            out.append(found.group(1) if compiled.groups else found.group(0))
        return out


class SimilarityParams(FileParams):
    sentence1_column: str = Field("sentence1", description="The first text of each pair.")
    sentence2_column: str = Field("sentence2", description="The second text of each pair.")
    score_column: str = Field("score", description="The gold similarity (any scale: only its order and linear "
                                                   "relation count).")
    batch_size: int = Field(16, gt=0, description="Encoding batch size: 16, sentence-transformers' "
                                                  "EmbeddingSimilarityEvaluator's, so that the scores equal its own.")


class Similarity(FileTask):
    """Semantic similarity: Spearman (and Pearson) of cosine against gold scores, per width."""

    name = "similarity"
    title = "Semantic similarity"
    metric = "spearman"
    Params = SimilarityParams
    columns = ("sentence1", "sentence2", "score")

    def check(self, ctx: ValidationContext) -> list[str]:
        problems = super().check(ctx)
        if not problems:
            try:
                [float(s) for s in self.read(ctx.recipe_dir)["score"]]
            except (TypeError, ValueError) as exc:
                problems.append(f"{self.params.score_column}: every score must be a number ({exc}).")
        return problems

    def score(self, ctx: TaskContext, model: str) -> dict[int, dict[str, float]]:
        rows = self.read(ctx.recipe_dir)
        # each side encoded once for every width, in the batches the evaluator uses (its numbers to the last digit)
        a = ctx.encode(model, [str(t) for t in rows["sentence1"]], batch_size=self.params.batch_size)
        b = ctx.encode(model, [str(t) for t in rows["sentence2"]], batch_size=self.params.batch_size)
        return protocols.similarity(a, b, [float(s) for s in rows["score"]], ctx.dims,
                                    **self.parts(ctx, len(rows["score"])))


class LabelledParams(FileParams):
    text_column: str = Field("text", description="The text.")
    label_column: str = Field("label", description="Its class.")
    label_pattern: str | None = Field(None, description="A regular expression that cuts the class out of the label "
                                                        "column (its first group): '\\((\\w+)\\)$' takes a manual "
                                                        "page's section from 'open(2)'.")


class ClassificationParams(LabelledParams):
    split_column: str = Field("split", description='Rows whose value is "train" fit the classifier, "test" score '
                                                   "it; a file without this column is split in half per label "
                                                   "(seeded).")
    n_experiments: int = Field(10, gt=0, description="Classifiers fitted, each on its own undersampled training set "
                                                     "(MTEB's n_experiments).")
    samples_per_label: int = Field(8, gt=0, description="Training texts per label in each experiment (MTEB's "
                                                        "samples_per_label).")


class Classification(FileTask):
    """Classification: logistic regression on the embeddings, accuracy and macro-F1, per width (MTEB's protocol)."""

    name = "classification"
    title = "Classification"
    metric = "accuracy"
    Params = ClassificationParams
    columns = ("text", "label")
    optional = ("split",)

    def splits(self, recipe_dir: Path, seed: int) -> tuple[list[int], list[int]]:
        rows = self.read(recipe_dir)
        path = recipe_dir / self.params.path
        if "split" in rows:
            split = rows["split"]
            train = [i for i, s in enumerate(split) if s == "train"]
            test = [i for i, s in enumerate(split) if s == "test"]
        else:
            rng = np.random.RandomState(seed)
            train, test = [], []
            for label in sorted(set(rows["label"])):
                members = [i for i, y in enumerate(rows["label"]) if y == label]
                rng.shuffle(members)
                half = len(members) // 2
                train += members[:half]
                test += members[half:]
        if not train or not test:
            raise UserError(f"{path}: classification needs training and test rows ({len(train)} and {len(test)}); "
                            f"give '{self.params.split_column}' values \"train\" and \"test\", or leave the column "
                            "out.")
        return sorted(train), sorted(test)

    def check(self, ctx: ValidationContext) -> list[str]:
        problems = super().check(ctx)
        if not problems:
            try:
                self.splits(ctx.recipe_dir, 0)
            except UserError as exc:
                problems.append(str(exc))
        return problems

    def score(self, ctx: TaskContext, model: str) -> dict[int, dict[str, float]]:
        rows = self.read(ctx.recipe_dir)
        train, test = self.splits(ctx.recipe_dir, ctx.seed)
        parts = self.parts(ctx, len(test))
        vectors = ctx.encode(model, rows["text"])
        labels = [str(y) for y in rows["label"]]
        p = self.params
        return protocols.classification(vectors[train], [labels[i] for i in train], vectors[test],
                                        [labels[i] for i in test], ctx.dims, n_experiments=p.n_experiments,
                                        samples_per_label=p.samples_per_label, seed=ctx.seed, **parts)


class ClusteringParams(LabelledParams):
    runs: int = Field(10, gt=0, description="k-means runs (seeds) averaged.")


class Clustering(FileTask):
    """Clustering: mini-batch k-means, V-measure against the labels, per width (MTEB's protocol)."""

    name = "clustering"
    title = "Clustering"
    metric = "v_measure"
    Params = ClusteringParams
    columns = ("text", "label")

    def check(self, ctx: ValidationContext) -> list[str]:
        problems = super().check(ctx)
        if not problems and len(set(map(str, self.read(ctx.recipe_dir)["label"]))) < 2:
            problems.append(f"{self.params.label_column}: clustering needs at least two labels.")
        return problems

    def score(self, ctx: TaskContext, model: str) -> dict[int, dict[str, float]]:
        rows = self.read(ctx.recipe_dir)
        vectors = ctx.encode(model, rows["text"])
        return protocols.clustering(vectors, [str(y) for y in rows["label"]], ctx.dims, runs=self.params.runs,
                                    seed=ctx.seed, **self.parts(ctx, len(rows["label"])))


class RetrievalParams(FileParams):
    query_column: str = Field("query", description="The query of each row.")
    document_column: str = Field("document", description="A document relevant to it (a query on several rows "
                                                         "has several relevant documents).")
    k: int = Field(10, gt=0, description="Cut-off of MRR, Recall and nDCG.")


class Retrieval(FileTask):
    """Retrieval on (query, relevant document) rows: MRR, Recall and nDCG at k per width, the run's own scorer."""

    name = "retrieval"
    title = "Retrieval"
    metric = "mrr"
    Params = RetrievalParams
    columns = ("query", "document")

    def label(self) -> str:
        return f"Retrieval@{self.params.k} ({Path(self.params.path).name})"

    def ir(self, recipe_dir: Path) -> tuple[list[str], list[str], list[set[int]]]:
        """Distinct queries, distinct documents (the corpus: every document of the file), and
        each query's relevant documents by position."""
        rows = self.read(recipe_dir)
        queries = list(dict.fromkeys(str(q) for q in rows["query"]))
        documents = list(dict.fromkeys(str(d) for d in rows["document"]))
        qpos, dpos = {q: i for i, q in enumerate(queries)}, {d: i for i, d in enumerate(documents)}
        relevant: list[set[int]] = [set() for _ in queries]
        for q, d in zip(rows["query"], rows["document"]):
            relevant[qpos[str(q)]].add(dpos[str(d)])
        return queries, documents, relevant

    def score(self, ctx: TaskContext, model: str) -> dict[int, dict[str, float]]:
        queries, documents, relevant = self.ir(ctx.recipe_dir)
        q = ctx.encode(model, queries, role="query")
        c = ctx.encode(model, documents, role="document")
        return protocols.retrieval(q, c, relevant, ctx.dims, k=self.params.k, **self.parts(ctx, len(queries)))


@hookimpl
def register_tasks(register):
    register(Similarity)
    register(Classification)
    register(Clustering)
    register(Retrieval)
