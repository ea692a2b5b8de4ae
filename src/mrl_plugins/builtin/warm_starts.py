"""Built-in warm start ``pca-rotation``: the leading dimensions hold the most variance from step one.

Training-side texts (never evaluation texts) are embedded by the model as it is, PCA is fitted
on those embeddings with scikit-learn, and a bias-free square ``Dense`` layer whose rows are the
principal axes is inserted before the model's final ``Normalize`` (or appended when it has
none). The projection is not centred, so the layer is an orthogonal rotation: full-dimension
cosine similarities, and hence rankings, are exactly the model's own before training, while
truncating the rotated vectors keeps the directions of largest variance. MatryoshkaLoss then
trains from there; the layer is an ordinary sentence-transformers module, saved and loaded with
the model.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

from pydantic import Field

from ..components import Params, ValidationContext, WarmStart, WarmStartContext
from ..data.split import seeded_sample
from ..errors import UserError
from ..evaluation.encode import normalise
from ..hookspecs import hookimpl


class PCARotationParams(Params):
    sample_size: int = Field(5000, gt=0, description="Training-side texts sampled (seeded) to fit the PCA.")
    side: Literal["all", "documents", "queries"] = Field("all", description="Which training texts to fit on.")


def insert_before_normalize(model: Any, module: Any) -> int:
    """Insert ``module`` before the last ``Normalize`` (or at the end); returns its index."""
    items = list(model._modules.items())
    position = len(items)
    for i in range(len(items) - 1, -1, -1):
        if type(items[i][1]).__name__ == "Normalize":
            position = i
            break
    items.insert(position, ("rotation", module))
    model._modules = OrderedDict((str(i), m) for i, (_, m) in enumerate(items))
    return position


def append_modules(model: Any, modules: list[Any]) -> None:
    """Append sentence-transformers modules to the end of ``model``'s pipeline."""
    items = [*model._modules.values(), *modules]
    model._modules = OrderedDict((str(i), m) for i, m in enumerate(items))


class PCARotation(WarmStart[PCARotationParams]):
    """Rotate embeddings onto principal axes fitted on training texts, before Matryoshka training."""

    name = "pca-rotation"
    Params = PCARotationParams

    def check(self, ctx: ValidationContext) -> list[str]:
        """With the data loaded (at the start of a run): enough texts to fit a full rotation."""
        if ctx.data is None or ctx.full_dim is None:
            return []
        n = min(len(ctx.data.training_texts(self.params.side)), self.params.sample_size)
        if n < ctx.full_dim:
            return [f"pca-rotation: {n} training texts ({self.params.side}) to fit on, fewer than the model's "
                    f"{ctx.full_dim} dimensions; use more training data or raise sample_size."]
        return []

    def fit_texts(self, ctx: WarmStartContext) -> list[str]:
        return seeded_sample(sorted(set(ctx.train_texts(self.params.side))), self.params.sample_size, ctx.seed)

    def apply(self, model: Any, ctx: WarmStartContext) -> dict[str, Any]:
        import torch

        from ..models.compat import st_models
        from .comparisons import fit_pca

        texts = self.fit_texts(ctx)
        x = normalise(ctx.encode(texts, "document"))
        dim = x.shape[1]
        if x.shape[0] < dim:
            raise UserError(
                f"[warm_start] pca-rotation: {x.shape[0]} training texts to fit on, fewer than the model's {dim} "
                "dimensions; use more training data or raise sample_size."
            )
        components, _ = fit_pca(x, dim)
        layer = st_models().Dense(
            dim, dim, bias=False, activation_function=torch.nn.Identity(), init_weight=torch.from_numpy(components)
        ).to(model.device)
        position = insert_before_normalize(model, layer)
        variance = (x @ components.T).var(axis=0)
        return {
            "fit_texts": len(texts),
            "side": self.params.side,
            "inserted_at": position,
            "variance_share_first_half": round(float(variance[: dim // 2].sum() / variance.sum()), 4),
        }


@hookimpl
def register_warm_starts(register):
    register(PCARotation)
