"""Built-in comparisons: plain truncation, PCA truncation, and the control run without MRL."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
from pydantic import Field

from ..components import Comparison, ComparisonContext, Control, Params, ValidationContext, Variant
from ..data.split import seeded_sample
from ..errors import UserError
from ..evaluation.metrics import Metrics
from ..hookspecs import hookimpl

MODEL_HELP = (
    'Whose vectors: a model of the run ("base", "mrl", "mrl-plain" with a warm start, "no-mrl" with that '
    "comparison), or another model's local folder or Hub id."
)


class TruncateParams(Params):
    model: str = Field("base", description=MODEL_HELP)


class Truncate(Comparison[TruncateParams]):
    """Truncate a model's full vectors to each dimension and re-normalise (no training)."""

    name = "truncate"
    Params = TruncateParams

    def label(self, models: Mapping[str, str]) -> str:
        return f"{models[self.params.model]} · truncate"

    def run(self, ctx: ComparisonContext) -> dict[int, Metrics]:
        queries, corpus = ctx.embeddings(self.params.model)
        return ctx.score(queries, corpus)

    def task_transform(self, ctx: ComparisonContext) -> Callable[[np.ndarray], np.ndarray] | None:
        """The model's own embeddings (a model of another name, say): the tasks score it as it is."""
        return lambda x: x


class PCAParams(Params):
    model: str = Field("base", description=MODEL_HELP)
    fit_on: Literal["train", "eval-corpus"] = Field(
        "train", description='"train": training-side documents (default); "eval-corpus": the evaluation corpus itself.'
    )
    max_fit_texts: int = Field(5000, gt=0, description="Training texts sampled (seeded) to fit the PCA.")
    center: bool = Field(
        False,
        description="Subtract the mean before projecting. Off by default: without centring the full-dimension "
        "projection is a rotation, so full-dimension rankings are exactly the model's own.",
    )
    seed: int = Field(0, description="Seed of the fit sample.")


def fit_pca(x: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes (rows, by explained variance) and mean of ``x``, via scikit-learn."""
    from sklearn.decomposition import PCA as SkPCA

    pca = SkPCA(n_components=n_components, svd_solver="full").fit(x)
    return pca.components_.astype(np.float32), pca.mean_.astype(np.float32)


class PCA(Comparison[PCAParams]):
    """Project a model's vectors on principal axes fitted on training-side texts, then truncate."""

    name = "pca"
    Params = PCAParams
    _projection: tuple[np.ndarray, np.ndarray] | None = None
    """The principal axes and the shift the evaluation pass fitted (for the ``[[task]]`` evaluations)."""

    def label(self, models: Mapping[str, str]) -> str:
        fit = "" if self.params.fit_on == "train" else ", fit on eval corpus"
        return f"{models[self.params.model]} · PCA{fit}"

    def check(self, ctx: ValidationContext) -> list[str]:
        """With the data loaded (at the start of a run): enough texts to fit one axis per dimension."""
        p = self.params
        if ctx.data is None or ctx.full_dim is None:
            return []
        if p.fit_on == "eval-corpus":
            n, what = len(ctx.data.eval.corpus), "evaluation documents"
        else:
            n, what = min(len(ctx.data.training_texts("documents")),
                          p.max_fit_texts), "training-side documents to fit on"
        if n < ctx.full_dim:
            return [f"pca: {n} {what}, fewer than the model's {ctx.full_dim} dimensions, so PCA cannot be fitted; use "
                    "more "
                    'training data, raise max_fit_texts, or set fit_on = "eval-corpus".']
        return []

    def fit_texts(self, ctx: ComparisonContext) -> list[str]:
        return seeded_sample(sorted(set(ctx.train_texts("documents"))), self.params.max_fit_texts, self.params.seed)

    def run(self, ctx: ComparisonContext) -> dict[int, Metrics]:
        p = self.params
        queries, corpus = ctx.embeddings(p.model)
        full = queries.shape[1]
        fit = ctx.encode(p.model, self.fit_texts(ctx)) if p.fit_on == "train" else corpus
        if fit.shape[0] < full:
            raise UserError(
                f"[[compare]] pca: {fit.shape[0]} texts to fit on, fewer than the model's {full} dimensions; "
                "use more training data, raise max_fit_texts, or set fit_on = \"eval-corpus\"."
            )
        components, mean = fit_pca(fit, full)
        shift = mean if p.center else np.zeros_like(mean)
        self._projection = (components, shift)
        return ctx.score((queries - shift) @ components.T, (corpus - shift) @ components.T)

    def task_transform(self, ctx: ComparisonContext) -> Callable[[np.ndarray], np.ndarray] | None:
        """The projection the evaluation pass fitted, for the ``[[task]]`` evaluations."""
        if self._projection is None:
            return None
        components, shift = self._projection
        return lambda x: (np.asarray(x, dtype=np.float32) - shift) @ components.T


class NoMRL(Control):
    """Control run: the same fine-tuning with the base loss alone (no MatryoshkaLoss), truncated."""

    name = "no-mrl"

    def variant(self) -> Variant:
        return Variant("no-mrl", label="no-MRL", matryoshka=False)


class VariantParams(Params):
    objective: str | None = Field(None,
                                  description="Train with this objective (its default parameters) instead of the "
                                              "recipe's.")
    warm_start: str | None = Field(None, description="Train after this warm start (its default parameters).")
    label: str | None = Field(None, description="The column's label (default: from the objective and the warm start).")


class TrainVariant(Control[VariantParams]):
    """Control: MRL trained again with another objective and/or warm start, in a column of its own."""

    name = "variant"
    Params = VariantParams

    def check(self, ctx: ValidationContext) -> list[str]:
        p, problems = self.params, []
        if p.objective is None and p.warm_start is None:
            problems.append("variant: name an objective, a warm_start, or both (else it is the MRL model again).")
        for kind, value in (("objective", p.objective), ("warm_start", p.warm_start)):
            if value is not None and ctx.registry is not None and value not in ctx.registry.names(kind):
                problems.append(f"{kind}: {ctx.registry.unknown_message(kind, value)}")
        return problems

    def variant(self) -> Variant:
        p = self.params
        key = "-".join(["mrl", *(x for x in (p.objective, p.warm_start) if x)])
        label = p.label or " + ".join([p.objective or "MRL", *([p.warm_start] if p.warm_start else [])])
        return Variant(key, label=label, objective=p.objective, warm_start=p.warm_start or False)


@hookimpl
def register_comparisons(register):
    register(Truncate)
    register(PCA)
    register(NoMRL)
    register(TrainVariant)
