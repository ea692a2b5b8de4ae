"""Built-in comparison: plain truncation of some model's vectors, re-normalised."""

from __future__ import annotations

from pydantic import Field

from ..components import Comparison, ComparisonContext, Metrics, Params
from ..hookspecs import hookimpl


class TruncateParams(Params):
    model: str = Field(
        "base",
        description='Whose vectors to truncate: "base", "tuned", or another model id or local path.',
    )


class Truncate(Comparison):
    """Truncate a model's full vectors to each dimension and re-normalise (no training)."""

    name = "truncate"
    Params = TruncateParams

    def label(self) -> str:
        return f"{self.params.model} · truncate"

    def run(self, ctx: ComparisonContext) -> dict[int, Metrics]:
        queries, corpus = ctx.embeddings(self.params.model)
        return ctx.score(queries, corpus)


@hookimpl
def register_comparisons(register):
    register(Truncate)
