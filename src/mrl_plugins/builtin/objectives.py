"""Built-in training objectives: how the prefix dimensions are trained around the base loss.

``matryoshka`` is sentence-transformers' ``MatryoshkaLoss`` with the schedule's dimensions and
weights (the default, and what every run did before objectives were plugins). ``matryoshka-2d``
is its ``Matryoshka2dLoss`` (layers × dimensions). ``prefix-distill`` adds to ``MatryoshkaLoss``
a term that pulls each prefix's in-batch similarity distribution towards the full width's (KL at
a temperature, the full-width teacher detached), reusing the one forward pass MatryoshkaLoss makes
for all dimensions, in the spirit of ESE and 2DMSE's self-distillation. ``binary-matryoshka``
(issue #38) adds to ``MatryoshkaLoss`` the base loss on the *binary codes* of chosen prefixes (and
optionally on int8-rounded ones): the codes a binary index serves (:func:`binary_codes`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from ..components import Objective, ObjectiveContext, Params, ValidationContext
from ..errors import UserError
from ..hookspecs import hookimpl


class Matryoshka(Objective):
    """MatryoshkaLoss: the base loss at every dimension of the schedule, weighted."""

    name = "matryoshka"

    def label(self) -> str:
        return "MRL"

    def build(self, model: Any, loss: Any, ctx: ObjectiveContext) -> Any:
        from ..models.compat import st_losses

        return st_losses().MatryoshkaLoss(model, loss, matryoshka_dims=ctx.dims, matryoshka_weights=ctx.weights)


class Matryoshka2dParams(Params):
    n_layers_per_step: int = Field(1, ge=1, description="Earlier layers trained per step (besides the last).")
    n_dims_per_step: int = Field(1, ge=1,
                                 description="Dimensions trained per step (-1 in ST means all; here at least 1).")
    last_layer_weight: float = Field(1.0, gt=0, description="Weight of the last layer's loss.")
    prior_layers_weight: float = Field(1.0, gt=0, description="Weight of the earlier layers' losses.")
    kl_div_weight: float = Field(1.0, gt=0,
                                 description="Weight of the KL term pulling earlier layers towards the last.")
    kl_temperature: float = Field(0.3, gt=0, description="Temperature of that KL term.")


def hidden_layers(model_dir: Any) -> int | None:
    """The transformer's layer count, read from its config.json (None when unreadable)."""
    if model_dir is None:
        return None
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        for module in modules:
            if module.get("type", "").endswith("Transformer"):
                config = json.loads((model_dir / module.get("path", "") / "config.json").read_text())
                return config.get("num_hidden_layers")
    except (OSError, ValueError):
        return None
    return None


class Matryoshka2d(Objective[Matryoshka2dParams]):
    """Matryoshka2dLoss: dimensions × layers (2D Matryoshka Sentence Embeddings)."""

    name = "matryoshka-2d"
    Params = Matryoshka2dParams

    def label(self) -> str:
        return "2D-MRL"

    def check(self, ctx: ValidationContext) -> list[str]:
        layers = hidden_layers(ctx.model_dir)
        if layers is not None and layers < 2:
            return [f"the model has {layers} transformer layer: 2D Matryoshka trains earlier layers too and needs at "
                    "least 2; use name = \"matryoshka\"."]
        if layers is not None and self.params.n_layers_per_step >= layers:
            return [f"n_layers_per_step: {self.params.n_layers_per_step} earlier layers per step, but the model has "
                    f"{layers} layers in all; use at most {layers - 1}."]
        return []

    def build(self, model: Any, loss: Any, ctx: ObjectiveContext) -> Any:
        from ..models.compat import st_losses

        p = self.params
        return st_losses().Matryoshka2dLoss(
            model, loss, matryoshka_dims=ctx.dims, matryoshka_weights=ctx.weights,
            n_layers_per_step=p.n_layers_per_step,
            n_dims_per_step=p.n_dims_per_step, last_layer_weight=p.last_layer_weight,
            prior_layers_weight=p.prior_layers_weight, kl_div_weight=p.kl_div_weight, kl_temperature=p.kl_temperature,
        )


class PrefixDistillParams(Params):
    weight: float = Field(1.0, ge=0, description="Weight of the distillation term (0: plain MatryoshkaLoss).")
    temperature: float = Field(0.05, gt=0, description="Softmax temperature of the in-batch similarity distributions.")


class PrefixDistill(Objective[PrefixDistillParams]):
    """MatryoshkaLoss plus distillation of the full width's in-batch similarities into every prefix."""

    name = "prefix-distill"
    Params = PrefixDistillParams

    def label(self) -> str:
        return "MRL + prefix-distill"

    def build(self, model: Any, loss: Any, ctx: ObjectiveContext) -> Any:
        return prefix_distill_loss(model, loss, ctx, self.params.weight, self.params.temperature)


def prefix_distill_loss(model: Any, loss: Any, ctx: ObjectiveContext, weight: float, temperature: float) -> Any:
    import torch
    import torch.nn.functional as F

    from ..models.compat import st_losses, uses_gradient_cache

    if uses_gradient_cache(loss):
        raise UserError("[objective] prefix-distill: the base loss caches gradients (a Cached… loss), so the "
                        "full-width "
                        "embeddings it needs are never materialised; use a non-cached base loss such as mnr.")
    matryoshka = st_losses().MatryoshkaLoss(model, loss, matryoshka_dims=ctx.dims, matryoshka_weights=ctx.weights)
    prefix_weights = ctx.weights or [1.0] * len(ctx.dims)

    class PrefixDistillLoss(torch.nn.Module):
        """MatryoshkaLoss + weight · Σ_d w_d · KL(softmax(S_full/τ) ‖ softmax(S_d/τ)) over in-batch similarities.

        No τ² factor: that convention keeps gradients comparable for τ > 1; with the small τ of
        contrastive similarities (0.05 here, MNR's scale 20) it would shrink the term 400-fold."""

        def __init__(self) -> None:
            super().__init__()
            self.model, self.matryoshka = model, matryoshka

        def forward(self, sentence_features: Any, labels: Any) -> Any:
            full: list[Any] = []
            original = self.model.forward

            def capture(features: Any) -> Any:  # MatryoshkaLoss runs this once per input, at full width
                out = original(features)
                full.append(out["sentence_embedding"])
                return out

            self.model.forward = capture
            try:
                total = self.matryoshka(sentence_features, labels)
            finally:
                self.model.forward = original
            if weight == 0 or len(full) < 2:
                return total
            anchors, candidates = full[0], torch.cat(full[1:])
            similarity = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T
            teacher = F.softmax(similarity.detach() / temperature, -1)
            distill = torch.zeros((), device=anchors.device)
            for d, w in zip(ctx.dims[1:], prefix_weights[1:]):
                student = F.normalize(anchors[:, :d], dim=-1) @ F.normalize(candidates[:, :d], dim=-1).T
                distill = distill + w * F.kl_div(F.log_softmax(student / temperature, -1), teacher,
                                                 reduction="batchmean")
            return total + weight * distill

        def get_config_dict(self) -> dict[str, Any]:
            return {**matryoshka.get_config_dict(), "distill_weight": weight, "temperature": temperature}

    return PrefixDistillLoss()


class BinaryMatryoshkaParams(Params):
    binary_dims: list[int] | None = Field(
        None, description="Widths whose binary codes are trained (default: every width of the schedule).")
    binary_weights: list[float] | None = Field(
        None, description="One weight per binary width (default: the schedule's weights at those widths, else 1).")
    binary_weight: float = Field(1.0, ge=0, description="Weight of all binary terms against the float ones "
                                                        "(0: plain MatryoshkaLoss).")
    int8_weight: float = Field(0.0, ge=0, description="Weight of the base loss on int8-rounded prefixes at the "
                                                      "binary widths (0: none).")
    estimator: Literal["tanh-ste", "ste"] = Field(
        "tanh-ste", description='How gradients pass sign(): "tanh-ste" (forward sign, backward the gradient of the '
                                'tempered tanh), "ste" (forward sign, backward identity).')
    temperature: float = Field(0.5, gt=0, description="tanh-ste: temperature of tanh(z / T) on each prefix scaled to "
                                                      "unit RMS (smaller: closer to sign, gradients only near 0).")


class BinaryMatryoshka(Objective[BinaryMatryoshkaParams]):
    """MatryoshkaLoss plus the base loss on the binary codes (sign bits) of chosen prefixes."""

    name = "binary-matryoshka"
    Params = BinaryMatryoshkaParams

    def label(self) -> str:
        return "MRL + binary"

    def check(self, ctx: ValidationContext) -> list[str]:
        p = self.params
        problems = []
        if p.binary_dims is not None:
            if not p.binary_dims or any(d < 1 for d in p.binary_dims):
                problems.append("binary_dims: give one or more widths, each at least 1.")
            elif ctx.full_dim is not None and max(p.binary_dims) > ctx.full_dim:
                problems.append(f"binary_dims: {max(p.binary_dims)} is wider than the model's {ctx.full_dim} "
                                "dimensions.")
        if p.binary_weights is not None:
            if p.binary_dims is None:
                problems.append("binary_weights: give binary_dims too (one weight per width).")
            elif len(p.binary_weights) != len(p.binary_dims):
                problems.append(f"binary_weights: {len(p.binary_weights)} weights for {len(p.binary_dims)} "
                                "binary_dims; give one per width.")
            elif any(w < 0 for w in p.binary_weights):
                problems.append("binary_weights: weights cannot be negative.")
        return problems

    def build(self, model: Any, loss: Any, ctx: ObjectiveContext) -> Any:
        return binary_matryoshka_loss(model, loss, ctx, self.params)


def binary_codes(x: Any, estimator: str = "tanh-ste", temperature: float = 0.5) -> Any:
    """The binary code of each row, as ±1 (a binary index keeps its sign bits: ``x > 0``), with a
    gradient. Forward: exactly the code served, so the loss is the served codes' loss. Backward:
    ``"ste"`` passes the gradient through unchanged (Bengio et al. 2013's straight-through
    estimator); ``"tanh-ste"`` passes it through ``tanh(z / T)`` of the row scaled to unit RMS, so
    the coordinates near zero (the ones a small update flips) get the gradient and saturated ones
    little (the smooth surrogate of HashNet, Cao et al. 2017, with its exact forward kept)."""
    import torch

    z = x / x.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-12)
    hard = torch.where(z > 0, torch.ones_like(z), -torch.ones_like(z))
    soft = z if estimator == "ste" else torch.tanh(z / temperature)
    return soft + (hard - soft).detach()


def int8_codes(x: Any) -> Any:
    """Each row rounded to 255 levels of its own absolute maximum (what an int8 store keeps up to
    its scale), with a straight-through gradient."""
    import torch

    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127.0
    return x + (torch.round(x / scale) * scale - x).detach()


def binary_matryoshka_loss(model: Any, loss: Any, ctx: ObjectiveContext, p: BinaryMatryoshkaParams) -> Any:
    import torch

    from ..models.compat import st_losses, uses_gradient_cache

    if uses_gradient_cache(loss):
        raise UserError("[objective] binary-matryoshka: the base loss caches gradients (a Cached… loss), so the "
                        "embeddings it needs are never materialised; use a non-cached base loss such as mnr.")
    matryoshka = st_losses().MatryoshkaLoss(model, loss, matryoshka_dims=ctx.dims, matryoshka_weights=ctx.weights)
    schedule = dict(zip(ctx.dims, ctx.weights or [1.0] * len(ctx.dims)))
    dims = p.binary_dims or list(ctx.dims)
    if max(dims) > ctx.full_dim:
        raise UserError(f"[objective] binary_dims: {max(dims)} is wider than the model's {ctx.full_dim} dimensions.")
    weights = p.binary_weights or [schedule.get(d, 1.0) for d in dims]
    terms = [(d, w * p.binary_weight, "binary") for d, w in zip(dims, weights) if w * p.binary_weight > 0]
    terms += [(d, w * p.int8_weight, "int8") for d, w in zip(dims, weights) if w * p.int8_weight > 0]

    class BinaryMatryoshkaLoss(torch.nn.Module):
        """MatryoshkaLoss + Σ_d w_d · base loss on the binary (and int8) codes of the first d dims.

        One forward pass of the model per input (MatryoshkaLoss's); each code term replays the
        captured outputs with the embedding replaced by its code, so the base loss sees exactly
        what it would see from a model that emitted the codes."""

        def __init__(self) -> None:
            super().__init__()
            self.model, self.matryoshka, self.loss = model, matryoshka, loss

        def forward(self, sentence_features: Any, labels: Any) -> Any:
            full: list[Any] = []
            original = self.model.forward

            def capture(features: Any) -> Any:  # MatryoshkaLoss runs this once per input, at full width
                out = original(features)
                full.append(out)
                return out

            self.model.forward = capture
            try:
                total = self.matryoshka(sentence_features, labels)
            finally:
                self.model.forward = original
            if terms and len(full) != len(sentence_features):
                # the code terms replay one captured forward per input; a base loss that embeds an
                # input more than once (or never) would get the wrong embeddings replayed, and 0.9
                # silently trained plain MatryoshkaLoss then: stop instead
                raise UserError(
                    f"[objective] binary-matryoshka: the base loss ({type(self.loss).__name__}) ran the model "
                    f"{len(full)} times for {len(sentence_features)} inputs, and the binary terms replay exactly "
                    "one forward pass per input, so they cannot be added to it. Use a base loss that embeds each "
                    "input once (mnr, cosent, gist), or set [objective] name = \"matryoshka\".")
            for d, w, kind in terms:
                served = iter(full)

                def replay(features: Any, d: int = d, kind: str = kind, served: Any = served) -> Any:
                    out = dict(next(served))
                    prefix = out["sentence_embedding"][:, :d]
                    out["sentence_embedding"] = (binary_codes(prefix, p.estimator, p.temperature) if kind == "binary"
                                                 else int8_codes(prefix))
                    return out

                self.model.forward = replay
                try:
                    total = total + w * self.loss(sentence_features, labels)
                finally:
                    self.model.forward = original
            return total

        def get_config_dict(self) -> dict[str, Any]:
            return {**matryoshka.get_config_dict(), "binary_dims": dims, "binary_weights": weights,
                    "binary_weight": p.binary_weight, "int8_weight": p.int8_weight, "estimator": p.estimator,
                    "temperature": p.temperature}

    return BinaryMatryoshkaLoss()


@hookimpl
def register_objectives(register):
    register(Matryoshka)
    register(Matryoshka2d)
    register(PrefixDistill)
    register(BinaryMatryoshka)
