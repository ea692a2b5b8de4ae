"""Built-in comparison ``adaptor``: a post-hoc Matryoshka adaptor on frozen embeddings.

After the Matryoshka-Adaptor (Yoon et al., 2024): a small residual network ``y = x + g(x)`` maps
a model's (normalised) embeddings so that every prefix of ``y`` keeps the similarities the full
``x`` had: a pairwise term over each batch, a top-k term on each text's nearest neighbours and,
when the data has (query, document) pairs, a ranking term (in-batch softmax) at every prefix.
``g`` is linear or one GELU layer, initialised to zero, so before training the adaptor is the
identity and changes no ranking. It is fitted on training-side texts only, never evaluation texts,
and never backpropagates through the transformer: seconds on a CPU.

The adapted model is saved as the model's own modules plus a standard ``Dense`` between a
``Normalize`` and the final ``Normalize`` (the linear adaptor folded into one weight matrix
``I + W``; the GELU one with ``use_residual``), so ``SentenceTransformer(path, truncate_dim=48)``
loads it with no mrl-plugins code.

Its stopping epoch is chosen on the run's validation split: the fit is scored there every
``validate_every`` epochs, epoch 0 (the identity, the un-adapted model) included, and the epoch
with the best mean MRR over the run's widths is kept, so on validation the adaptor cannot do
worse than no adaptor on that average. The net is fitted once, on the validation pass, and the
evaluation pass reports it. Which widths it helps at is a decision of its own
(:func:`mrl_plugins.evidence.decisions.adaptor_gates`).

With ``cv_folds = k`` (issue #36, item 4) both choices are made by **k-fold cross-validation over
the training pairs** instead: the pairs are dealt into k folds that share no text
(:func:`mrl_plugins.data.split.pair_folds`); for each fold a net is fitted on every fitting text
and pair outside it and scored at each checkpoint on that fold's queries, ranked among that
fold's own documents; the epoch with the best mean over all folds' queries is kept and the net is
fitted once more on everything for that many epochs. The per-width gate then compares the adapted
and un-adapted per-query scores of all folds (as many queries as the training pairs, against
the validation split's 200 or fewer) with the run's paired test; the report says the gate was
chosen so. What it costs: k + 1 fits. What it does not buy (measured: docs/benchmarks.md, it
chose worse than the validation split on two of three datasets): the transformer was
fine-tuned on those pairs, so both sides of the comparison are scored on text the model has seen,
and each fold's corpus is only that fold's documents; the validation split stays the run's
basis for every other choice (search settings are tuned at the corpus size they serve, issue
#37, and a fold of training documents is not that corpus).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..components import Column, Comparison, ComparisonContext, ValidationContext
from ..data.split import seeded_sample
from ..evaluation.encode import normalise
from ..hookspecs import hookimpl
from .adaptor_cv import CrossValidation, cross_validate, fold_retrieval
from .adaptor_fit import AdaptorNet, AdaptorParams, best_epoch, checkpoints, fit_adaptor

__all__ = [  # the net, its fit and its cross-validation live in adaptor_fit and adaptor_cv; importable from here
    "Adaptor", "AdaptorNet", "AdaptorParams", "CrossValidation", "adapted_model", "best_epoch", "checkpoints",
    "cross_validate", "fit_adaptor", "fold_retrieval", "shortlist_rerank",
]

logger = logging.getLogger("mrl_plugins")


def adapted_model(model: Any, net: AdaptorNet) -> Any:
    """A copy of ``model`` that normalises, adapts and normalises again."""
    from ..models.compat import st_models
    from .warm_starts import append_modules

    adapted = copy.deepcopy(model)
    tail = [net.module(), st_models().Normalize()]
    if type(list(adapted)[-1]).__name__ != "Normalize":
        tail.insert(0, st_models().Normalize())
    append_modules(adapted, tail)
    adapted.truncate_dim = None
    return adapted


class Adaptor(Comparison[AdaptorParams]):
    """Post-hoc Matryoshka adaptor: a residual map on frozen embeddings, fitted on training texts."""

    name = "adaptor"
    Params = AdaptorParams
    measured_with = frozenset({"save", "rerank_full"})  # the adapted column is the same; the rerank has its own

    def __init__(self, params: AdaptorParams | None = None):
        super().__init__(params)
        self._fitted: dict[tuple[str, tuple[int, ...]], tuple[AdaptorNet, dict[str, Any]]] = {}

    def label(self, models: Mapping[str, str]) -> str:
        base = f"{models[self.params.model]} · adaptor"
        extra = [*(["mlp"] if self.params.kind != "linear" else []),
                 *([f"{self.params.cv_folds}-fold"] if self.params.cv_folds else [])]
        return base + (f" ({', '.join(extra)})" if extra else "")

    def check(self, ctx: ValidationContext) -> list[str]:
        if ctx.data is None:
            return []
        problems = []
        if len(ctx.data.training_texts("all")) < 2 * self.params.top_k:
            n = len(ctx.data.training_texts("all"))
            problems.append(f"top_k: {self.params.top_k} neighbours per text need at least {2 * self.params.top_k} "
                            f"training texts to fit on, and there are {n}; lower top_k to at most {max(1, n // 2)} "
                            "or use more data.")
        if self.params.cv_folds:
            n = len(ctx.data.training_pairs())
            if n < MIN_CV_PAIRS * self.params.cv_folds:
                problems.append(f"cv_folds = {self.params.cv_folds}: cross-validation needs (query, document) "
                                f"training rows, at least {MIN_CV_PAIRS} per fold, and the data has {n}; lower "
                                "cv_folds, use more data, or set cv_folds = 0 to choose on the validation split.")
        return problems

    def encode_pairs(self, ctx: ComparisonContext, pairs: list[tuple[str, str]], known: dict[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        """``known`` with the pairs' texts added (most are fitting texts already: only the rest are encoded)."""
        missing = sorted({t for pair in pairs for t in pair} - known.keys())
        return {**known, **dict(zip(missing, ctx.encode(self.params.model, missing)))} if missing else known

    def fit_texts(self, ctx: ComparisonContext) -> list[str]:
        return seeded_sample(sorted(set(ctx.train_texts("all"))), self.params.max_fit_texts, self.params.seed)

    def fit(self, ctx: ComparisonContext) -> tuple[AdaptorNet, dict[str, Any]]:
        """The fitted net and what its fit chose and cost; fitted once per model and widths (the
        first pass is the validation one when the run has a validation split)."""
        p = self.params
        key = (p.model, tuple(ctx.dims))
        if key in self._fitted:
            return self._fitted[key]
        t0 = time.perf_counter()
        fit = self.fit_texts(ctx)
        texts = ctx.encode(p.model, fit)
        pairs = seeded_sample(ctx.train_pairs(), p.max_fit_texts, p.seed)
        known = dict(zip(fit, texts))
        if pairs and (p.ranking_weight > 0 or p.cv_folds):
            known = self.encode_pairs(ctx, pairs, known)
        encoded_pairs = None
        if pairs and p.ranking_weight > 0:
            encoded_pairs = np.stack([known[q] for q, _ in pairs]), np.stack([known[d] for _, d in pairs])
        t1 = time.perf_counter()
        if p.cv_folds:  # both passes use it: it needs no validation split
            if p.model in FINE_TUNED:
                logger.warning("adaptor of '%s' with cv_folds = %d: that model was fine-tuned on the training pairs "
                               "the folds are cut from, where it is already good; measured, cross-validation then "
                               "chose worse than the validation split (docs/benchmarks.md); cv_folds = 0 uses it.",
                               p.model, p.cv_folds)
            cv = cross_validate(known, fit, pairs, ctx.dims, p, ctx.k)
            net, _ = fit_adaptor(texts, encoded_pairs, ctx.dims, p.model_copy(update={"epochs": cv.epoch}))
            facts = {"epochs": cv.epoch, "epochs_chosen_on": f"{cv.folds}-fold cross-validation",
                     "cv": cv.facts(), "fit_texts": len(fit), "fit_pairs": len(pairs) if encoded_pairs else 0,
                     "encode_seconds": round(t1 - t0, 2), "fit_seconds": round(time.perf_counter() - t1, 2)}
            self._fitted[key] = (net, facts)
            return net, facts
        judge = None
        if ctx.split == "validation":
            queries, corpus = ctx.embeddings(p.model)
            key_mrr = f"mrr@{ctx.k}"

            def judge(net: AdaptorNet) -> float:
                metrics = ctx.score(net.apply(queries), net.apply(corpus))
                return float(np.mean([metrics[d][key_mrr] for d in ctx.dims]))

        net, epoch = fit_adaptor(texts, encoded_pairs, ctx.dims, p, judge)
        chosen = judge is not None
        facts = {"epochs": epoch if chosen else p.epochs, "epochs_chosen_on": "validation" if chosen else None,
                 "fit_texts": len(fit), "fit_pairs": len(pairs) if encoded_pairs else 0,
                 "encode_seconds": round(t1 - t0, 2), "fit_seconds": round(time.perf_counter() - t1, 2)}
        self._fitted[key] = (net, facts)
        return net, facts

    def task_transform(self, ctx: ComparisonContext) -> Callable[[np.ndarray], np.ndarray] | None:
        """The fitted net (the first column, adapted at every width), for the ``[[task]]`` evaluations."""
        return self.fit(ctx)[0].apply

    def run(self, ctx: ComparisonContext) -> list[Column]:
        p = self.params
        net, facts = self.fit(ctx)
        queries, corpus = ctx.embeddings(p.model)
        if p.save and ctx.split == "eval":
            adapted_model(ctx.model(p.model), net).save(str(ctx.output_dir() / "model"))
        adapted_q, adapted_c = net.apply(queries), net.apply(corpus)
        columns = [Column("", ctx.score(adapted_q, adapted_c), facts=facts)]
        if p.rerank_full:
            ranked = shortlist_rerank(adapted_q, adapted_c, queries, corpus, ctx.dims, p.rerank_full, ctx.k)
            columns.append(Column(f"→ rerank {ctx.dims[0]} un-adapted", ctx.score_ranked(ranked),
                                  params={"rerank_full": p.rerank_full}))
        return columns


def shortlist_rerank(adapted_q: np.ndarray, adapted_c: np.ndarray, queries: np.ndarray, corpus: np.ndarray,
                     dims: list[int], shortlist: int, k: int) -> dict[int, np.ndarray]:
    """Per width: the top ``shortlist`` by the adapted prefix, reranked by the un-adapted full
    vectors: the adaptor where it helps (small widths), the model itself where it does not (the
    final ranking is always the un-adapted model's, within the shortlist)."""
    full_q, full_c = normalise(queries), normalise(corpus)
    n = min(shortlist, len(corpus))
    ranked = {}
    for d in dims:
        short = normalise(adapted_q[:, :d]) @ normalise(adapted_c[:, :d]).T
        candidates = np.argpartition(-short, n - 1, axis=1)[:, :n]
        exact = np.einsum("qd,qnd->qn", full_q, full_c[candidates])
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        ranked[d] = np.take_along_axis(candidates, order, axis=1)
    return ranked


FINE_TUNED = frozenset({"mrl", "mrl-plain", "no-mrl"})
"""The run's own models trained on its training pairs (variants are too, under their own keys)."""
MIN_CV_PAIRS = 20
"""Training pairs per fold below which ``cv_folds`` is refused at ``validate``."""


@hookimpl
def register_comparisons(register):
    register(Adaptor)
