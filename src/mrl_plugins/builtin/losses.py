"""Built-in base losses: MultipleNegativesRankingLoss, its GradCache form, GISTEmbed and CoSENTLoss.

``cached-mnr`` (GradCache) gives large in-batch negative counts with the memory of a small batch:
sentence-transformers' ``MatryoshkaLoss`` knows it and caches the prefixes' losses too. ``gist``
(GISTEmbedLoss) uses a guide model to drop in-batch negatives the guide rates closer to the query
than its positive (likely false negatives); the default guide is a frozen copy of the model as it
starts training, so it needs no second model. These are what the field uses to lift small-model
retrieval; a sweep may choose between them (``"loss.name" = { choices = ["mnr", "cached-mnr"] }``).
"""

from __future__ import annotations

import copy
from typing import Literal

from pydantic import Field

from ..components import Loss, Params, model_field
from ..hookspecs import hookimpl


class ScaleParams(Params):
    scale: float = Field(20.0, gt=0, description="Multiplier of the cosine similarities (inverse temperature).")


class MNRLoss(Loss[ScaleParams]):
    """MultipleNegativesRankingLoss: in-batch negatives over (anchor, positive[, negative]) rows."""

    name = "mnr"
    Params = ScaleParams
    accepts = ("triplets", "pairs")  # hard negatives when the data has them
    batch_sampler = "no_duplicates"

    def build(self, model):
        from ..models.compat import st_losses

        return st_losses().MultipleNegativesRankingLoss(model, scale=self.params.scale)


class CachedParams(ScaleParams):
    mini_batch_size: int = Field(32, ge=1, description="Rows per forward pass; [train] batch_size is the number "
                                                      "of in-batch negatives, paid for in time, not memory.")


class CachedMNRLoss(Loss[CachedParams]):
    """CachedMultipleNegativesRankingLoss (GradCache): MNR's in-batch negatives at a large batch, small memory."""

    name = "cached-mnr"
    Params = CachedParams
    accepts = ("triplets", "pairs")
    batch_sampler = "no_duplicates"

    def build(self, model):
        from ..models.compat import st_losses

        return st_losses().CachedMultipleNegativesRankingLoss(model, scale=self.params.scale,
                                                              mini_batch_size=self.params.mini_batch_size)


class GISTParams(Params):
    guide: str = model_field("self", besides=("self",), description='The guide model: "self" (a frozen copy of the '
                             "model as it starts training), or a model's folder (relative to the recipe) or Hub id.")
    temperature: float = Field(0.01, gt=0, description="Temperature of the cosine similarities.")
    margin_strategy: Literal["absolute", "relative"] = Field("absolute", description="How false negatives are "
                                                                                     "told from true ones.")
    margin: float = Field(0.0, ge=0, description="Drop negatives the guide scores within this of the positive.")


class GISTLoss(Loss[GISTParams]):
    """GISTEmbedLoss: in-batch negatives filtered by a guide model (likely false negatives are left out)."""

    name = "gist"
    Params = GISTParams
    accepts = ("triplets", "pairs")
    batch_sampler = "no_duplicates"

    def build(self, model):
        from ..models.compat import st_losses

        p = self.params
        if p.guide == "self":
            guide = copy.deepcopy(model)
        else:
            from ..models import load_model, resolve_model

            guide = load_model(resolve_model(p.guide), device=str(model.device))
        for parameter in guide.parameters():
            parameter.requires_grad_(False)
        return st_losses().GISTEmbedLoss(model, guide, temperature=p.temperature, margin_strategy=p.margin_strategy,
                                         margin=p.margin)


class CoSENTLossComponent(Loss[ScaleParams]):
    """CoSENTLoss: ranks (sentence1, sentence2) pairs by a similarity score in [0, 1]."""

    name = "cosent"
    Params = ScaleParams
    accepts = ("scored-pairs",)

    def build(self, model):
        from ..models.compat import st_losses

        return st_losses().CoSENTLoss(model, scale=self.params.scale)


@hookimpl
def register_losses(register):
    register(MNRLoss)
    register(CachedMNRLoss)
    register(GISTLoss)
    register(CoSENTLossComponent)
