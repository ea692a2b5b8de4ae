"""Built-in base losses: MultipleNegativesRankingLoss and CoSENTLoss."""

from __future__ import annotations

from pydantic import Field

from ..components import Loss, Params
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
        from .._st import st_losses

        return st_losses().MultipleNegativesRankingLoss(model, scale=self.params.scale)


class CoSENTLossComponent(Loss[ScaleParams]):
    """CoSENTLoss: ranks (sentence1, sentence2) pairs by a similarity score in [0, 1]."""

    name = "cosent"
    Params = ScaleParams
    accepts = ("scored-pairs",)

    def build(self, model):
        from .._st import st_losses

        return st_losses().CoSENTLoss(model, scale=self.params.scale)


@hookimpl
def register_losses(register):
    register(MNRLoss)
    register(CoSENTLossComponent)
