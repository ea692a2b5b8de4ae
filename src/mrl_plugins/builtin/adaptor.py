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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ..components import Column, Comparison, ComparisonContext, Params, ValidationContext
from ..data.split import pair_folds, seeded_sample
from ..data.types import normalise_text
from ..evaluation.encode import normalise
from ..evaluation.metrics import Metric
from ..evaluation.retrieval import score_dims
from ..evidence.stats import paired_p_value
from ..hookspecs import hookimpl
from .comparisons import MODEL_HELP

logger = logging.getLogger("mrl_plugins")


class AdaptorParams(Params):
    model: str = Field("base", description=MODEL_HELP)
    kind: Literal["linear", "mlp"] = Field("linear",
                                           description='"linear": y = x + Wx + b; "mlp": y = x + GELU(Wx + b).')
    epochs: int = Field(30, ge=0, description="Passes over the fitting texts (0: the identity, untrained).")
    batch_size: int = Field(256, ge=8,
                            description="Texts per step; the pairwise and top-k terms compare within a batch.")
    learning_rate: float = Field(1e-2, gt=0,
                                 description="Adam's step size (1e-3 barely moves the zero-initialised map).")
    max_fit_texts: int = Field(5000, gt=0, description="Training-side texts (and pairs) sampled, seeded, to fit on.")
    top_k: int = Field(10, ge=1, description="Neighbours per text kept close by the top-k term.")
    pairwise_weight: float = Field(1.0, ge=0)
    topk_weight: float = Field(1.0, ge=0)
    ranking_weight: float = Field(1.0, ge=0,
                                  description="Weight of the ranking term on (query, document) pairs, if any.")
    scale: float = Field(20.0, gt=0, description="Inverse temperature of the ranking term.")
    seed: int = Field(0, description="Seeds the sample and the training.")
    save: bool = Field(True, description="Save the adapted model in the run's output (comparisons/<column>/model).")
    validate_every: int = Field(5, ge=1, description="Score the fit on the validation split every N epochs; the best "
                                "epoch (0, the identity, included) is kept.")
    rerank_full: int = Field(0, ge=0, description="Also measure a shortlist of this many on the adapted prefix, "
                             "reranked with the un-adapted full vector (both from one forward pass); 0: not.")
    cv_folds: int = Field(0, ge=0, description="Choose the stopping epoch and the widths to use the adaptor at by "
                          "k-fold cross-validation over the training pairs (k + 1 fits; each fold's queries ranked "
                          "among its own documents by a net fitted without any text of that fold) instead of on the "
                          "validation split; 0: the validation split. For a model the run fine-tuned on those "
                          "pairs it chose worse than the validation split (docs/benchmarks.md).")

    @field_validator("cv_folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if value == 1:
            raise ValueError("cv_folds = 1 leaves nothing to fit on; use 0 (choose on the validation split) or "
                             "at least 2 folds (5 is usual)")
        return value


class AdaptorNet:
    """``y = x + g(x)``, ``g`` linear or one GELU layer, zero-initialised (the identity)."""

    def __init__(self, dim: int, kind: str):
        import torch

        self.kind = kind
        self.linear = torch.nn.Linear(dim, dim)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def __call__(self, x: Any) -> Any:
        import torch.nn.functional as F

        h = self.linear(x)
        return x + (F.gelu(h) if self.kind == "mlp" else h)

    def apply(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self(torch.from_numpy(normalise(x))).numpy()

    def module(self) -> Any:
        """The adaptor as a sentence-transformers ``Dense``."""
        import torch

        from ..models.compat import st_models

        d = self.linear.in_features
        weight, bias = self.linear.weight.detach().clone(), self.linear.bias.detach().clone()
        if self.kind == "linear":  # x + Wx + b = (I + W) x + b
            return st_models().Dense(d, d, bias=True, activation_function=torch.nn.Identity(),
                                     init_weight=weight + torch.eye(d), init_bias=bias)
        return st_models().Dense(d, d, bias=True, activation_function=torch.nn.GELU(), init_weight=weight,
                                 init_bias=bias, use_residual=True)


def checkpoints(p: AdaptorParams) -> list[int]:
    """The epochs at which :func:`fit_adaptor` judges the net, in order: 0 (the identity), every
    ``validate_every``-th, and the last."""
    return [0, *(e for e in range(1, p.epochs + 1) if e % p.validate_every == 0 or e == p.epochs)]


def fit_adaptor(texts: np.ndarray, pairs: tuple[np.ndarray, np.ndarray] | None, dims: list[int], p: AdaptorParams,
                judge: Callable[[AdaptorNet], float] | None = None) -> tuple[AdaptorNet, int]:
    """Train the adaptor on frozen, normalised embeddings of training-side texts (and pairs).
    With ``judge`` (higher is better), the net is judged at each of :func:`checkpoints`, and the
    best state is returned with its epoch (the earliest of equals); without, the net after
    ``epochs`` epochs."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(p.seed)
    x_all = torch.from_numpy(normalise(texts))
    net = AdaptorNet(x_all.shape[1], p.kind)
    scores: dict[int, float] = {}
    states: dict[int, Any] = {}

    def consider(epoch: int) -> None:
        if judge is not None:
            scores[epoch] = judge(net)
            states[epoch] = copy.deepcopy(net.linear.state_dict())  # a few hundred kB: one per checkpoint

    judged = set(checkpoints(p))
    consider(0)
    if p.epochs == 0:
        return net, 0
    optimiser = torch.optim.Adam(net.linear.parameters(), lr=p.learning_rate)
    q_all = p_all = None
    if pairs is not None and len(pairs[0]) and p.ranking_weight > 0:
        q_all, p_all = torch.from_numpy(normalise(pairs[0])), torch.from_numpy(normalise(pairs[1]))
    generator = torch.Generator().manual_seed(p.seed)
    for epoch in range(1, p.epochs + 1):
        order = torch.randperm(len(x_all), generator=generator)
        pair_order = torch.randperm(len(q_all), generator=generator) if q_all is not None else None
        for step, start in enumerate(range(0, len(x_all), p.batch_size)):
            x = x_all[order[start : start + p.batch_size]]
            if len(x) < 2:
                continue
            target = x @ x.T
            k = min(p.top_k, len(x) - 1)
            neighbours = (target - 2 * torch.eye(len(x))).topk(k, dim=1).indices
            y = net(x)
            loss = torch.zeros(())
            for d in dims:
                yd = F.normalize(y[:, :d], dim=-1)
                sims = yd @ yd.T
                loss = loss + p.pairwise_weight * (sims - target).abs().mean()
                loss = loss + p.topk_weight * (sims.gather(1, neighbours) - target.gather(1, neighbours)).abs().mean()
            if pair_order is not None and q_all is not None and p_all is not None:
                b = pair_order[(step * p.batch_size) % len(pair_order):][: p.batch_size]
                qy, py = net(q_all[b]), net(p_all[b])
                for d in dims:
                    logits = p.scale * F.normalize(qy[:, :d], dim=-1) @ F.normalize(py[:, :d], dim=-1).T
                    loss = loss + p.ranking_weight * F.cross_entropy(logits, torch.arange(len(b)))
            optimiser.zero_grad()
            (loss / len(dims)).backward()
            optimiser.step()
        if epoch in judged:
            consider(epoch)
    if not scores:
        return net, p.epochs
    best = best_epoch(scores)
    net.linear.load_state_dict(states[best])
    return net, best


def best_epoch(scores: Mapping[int, float]) -> int:
    """The epoch to stop at, from each judged epoch's score (higher is better): the best, the
    earliest of equals (a later epoch must beat the best so far by more than 1e-9). The one rule
    for the validation split (:func:`fit_adaptor`) and for cross-validation (:func:`cross_validate`)."""
    best: int | None = None
    for epoch in sorted(scores):
        if best is None or scores[epoch] > scores[best] + 1e-9:
            best = epoch
    if best is None:
        raise ValueError("no epoch was judged")
    return best


@dataclass(frozen=True)
class CrossValidation:
    """What k-fold cross-validation over the training pairs chose, and the per-query evidence
    behind the per-width gate (every fold's queries, in fold order)."""

    folds: int
    epoch: int
    adapted: dict[int, np.ndarray]
    """Per width: each query's MRR@k under the net of its fold's fit, stopped at :attr:`epoch`."""
    plain: dict[int, np.ndarray]
    """Per width: each query's MRR@k un-adapted (epoch 0, the identity)."""

    @property
    def queries(self) -> int:
        return len(next(iter(self.plain.values())))

    def facts(self) -> dict[str, Any]:
        """For results.json (``facts["cv"]``): the gate reads ``delta`` and ``p`` per width."""
        dims = sorted(self.plain, reverse=True)
        return {"folds": self.folds, "queries": self.queries,
                "adapted": {str(d): round(float(self.adapted[d].mean()), 4) for d in dims},
                "plain": {str(d): round(float(self.plain[d].mean()), 4) for d in dims},
                "delta": {str(d): round(float((self.adapted[d] - self.plain[d]).mean()), 4) for d in dims},
                "p": {str(d): round(paired_p_value(self.adapted[d], self.plain[d]), 4) for d in dims}}


def fold_retrieval(pairs: Sequence[tuple[str, str]], rows: Sequence[int]
                   ) -> tuple[list[str], list[str], list[set[int]]]:
    """A fold's retrieval set: its distinct queries, its distinct documents (one per normalised
    text) and each query's relevant documents among them."""
    queries: dict[str, str] = {}
    documents: dict[str, int] = {}
    doc_texts: list[str] = []
    relevant: dict[str, set[int]] = {}
    for i in rows:
        query, document = pairs[i]
        q, d = normalise_text(query), normalise_text(document)
        queries.setdefault(q, query)
        if d not in documents:
            documents[d] = len(doc_texts)
            doc_texts.append(document)
        relevant.setdefault(q, set()).add(documents[d])
    return list(queries.values()), doc_texts, [relevant[q] for q in queries]


def cross_validate(known: Mapping[str, np.ndarray], fit: Sequence[str], pairs: Sequence[tuple[str, str]],
                   dims: list[int], p: AdaptorParams, k: int = 10) -> CrossValidation:
    """k-fold cross-validation of the adaptor over ``pairs`` (see the module's docstring):
    ``known`` maps every text of ``fit`` and ``pairs`` to its (full-width) embedding. The chosen
    epoch is the one with the best mean MRR@k over every fold's queries and the run's widths;
    epoch 0 (no adaptor) included, the earliest of equals."""
    key = Metric.MRR.key(k)
    epochs = checkpoints(p)
    scored: dict[int, dict[int, list[np.ndarray]]] = {e: {d: [] for d in dims} for e in epochs}
    folds = [rows for rows in pair_folds(pairs, p.cv_folds, p.seed) if rows]
    for rows in folds:
        held = {normalise_text(t) for i in rows for t in pairs[i]}
        inside = set(rows)
        fold_fit = [t for t in fit if normalise_text(t) not in held]
        fold_pairs = [pair for i, pair in enumerate(pairs) if i not in inside]
        queries, documents, relevant = fold_retrieval(pairs, rows)
        q_emb = np.stack([known[t] for t in queries])
        c_emb = np.stack([known[t] for t in documents])
        encoded = None
        if fold_pairs and p.ranking_weight > 0:
            encoded = (np.stack([known[q] for q, _ in fold_pairs]), np.stack([known[d] for _, d in fold_pairs]))
        at = iter(epochs)

        def judge(net: AdaptorNet, at: Any = at, q_emb: np.ndarray = q_emb, c_emb: np.ndarray = c_emb,
                  relevant: list[set[int]] = relevant) -> float:
            found = score_dims(net.apply(q_emb), net.apply(c_emb), relevant, dims, k=k)
            for d, by_width in scored[next(at)].items():
                by_width.append(found.per_query[d][key])
            return float(np.mean([found[d][key] for d in dims]))

        fit_adaptor(np.stack([known[t] for t in fold_fit]), encoded, dims, p, judge)
    joined = {e: {d: np.concatenate(parts) for d, parts in by_width.items()} for e, by_width in scored.items()}
    means = {e: float(np.mean([v.mean() for v in by_width.values()])) for e, by_width in joined.items()}
    best = best_epoch(means)
    return CrossValidation(len(folds), best, joined[best], joined[0])


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
