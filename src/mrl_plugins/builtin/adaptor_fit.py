"""The adaptor's net and its fit: parameters, the linear map on frozen embeddings, training with
checkpoints judged by a caller, and the one stopping-epoch rule (:mod:`.adaptor` has the whole
story)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ..components import Params
from ..evaluation.encode import normalise
from .comparisons import MODEL_HELP


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
