"""Base classes of the components that plugins register (see :mod:`mrl_plugins.hookspecs`).

A component is a class with a ``name``, a pydantic ``Params`` schema for its recipe keys, and
the methods of its kind. Keep torch, transformers and datasets imports inside methods: the
classes are imported by ``mrl-run validate`` and ``mrl-run plugins``, which must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from .data import DataBundle, DataRequest, IRSet

if TYPE_CHECKING:
    import numpy as np
    import torch

Metrics = dict[str, float]
"""One dimension's scores, e.g. ``{"mrr@10": 0.81, "recall@10": 0.93, "ndcg@10": 0.84}``."""


class Params(BaseModel):
    """Base of every component's parameter schema: unknown keys are errors, never ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class ValidationContext:
    """What a component may consult while a recipe is validated, before any model loads."""

    recipe_dir: Path
    full_dim: int | None
    """The model's embedding dimension when it can be read from local files, else ``None``."""


class Component:
    """Common base: ``name`` is what recipes use; ``Params`` validates the component's keys."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | None = None):
        self.params = params if params is not None else self.Params()

    def check(self, ctx: ValidationContext) -> list[str]:
        """Problems the schema cannot see (a missing file, a dimension above the model's)."""
        return []

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class DataSource(Component):
    """Produces training rows and a leakage-free IR evaluation set."""

    produces: ClassVar[tuple[str, ...]]
    """Row formats this source can produce, preferred first (keys of ``data.ROW_COLUMNS``)."""

    def formats(self) -> tuple[str, ...]:
        """Row formats for these parameters (default: ``produces``)."""
        return self.produces

    def load(self, request: DataRequest) -> DataBundle:
        raise NotImplementedError


class Loss(Component):
    """Builds a sentence-transformers base loss; the runner wraps it in MatryoshkaLoss."""

    accepts: ClassVar[tuple[str, ...]]
    """Row formats this loss trains on, preferred first."""
    batch_sampler: ClassVar[str] = "batch_sampler"
    """The trainer's batch sampler: ``"no_duplicates"`` for in-batch-negative losses."""

    def build(self, model: Any) -> torch.nn.Module:
        raise NotImplementedError


class DimSchedule(Component):
    """Chooses the Matryoshka dimensions, descending and starting at the full dimension."""

    def dims(self, full_dim: int) -> list[int]:
        raise NotImplementedError

    def weights(self, dims: list[int]) -> list[float] | None:
        """Loss weight per dimension, or ``None`` for equal weights."""
        return None


@dataclass(frozen=True)
class Variant:
    """An extra model a comparison needs trained, e.g. the control run without MatryoshkaLoss.

    The runner trains every variant in its training stage (on every rank under torchrun), with
    the recipe's data, loss and training settings (and its warm start only if ``warm_start``);
    ``ctx.embeddings(key)`` then serves it.
    """

    key: str
    matryoshka: bool = True
    warm_start: bool = False


@dataclass
class ComparisonContext:
    """What the runner hands a comparison: the evaluation set and cached embeddings.

    ``embeddings(model)`` returns full-dimension ``(queries, corpus)`` float32 arrays for
    ``"base"``, ``"tuned"``, a variant key (``"no-mrl"``), a model id or a path, encoding each
    model once per run. ``encode(model, texts)`` embeds other texts at full dimension.
    ``train_texts(side)`` are training-side texts, never evaluation texts (``side``:
    ``"documents"``, ``"queries"`` or ``"all"``), e.g. to fit PCA. ``score(queries, corpus)``
    scores full-dimension arrays at every dimension of the run.
    """

    dims: list[int]
    eval_set: IRSet
    embeddings: Callable[[str], tuple[np.ndarray, np.ndarray]]
    encode: Callable[[str, list[str]], np.ndarray]
    train_texts: Callable[..., list[str]]
    score: Callable[[np.ndarray, np.ndarray], dict[int, Metrics]]


class Comparison(Component):
    """A post-hoc method scored at the run's dimensions next to the fine-tuned model."""

    def label(self) -> str:
        return self.name

    def variants(self) -> list[Variant]:
        """Models to train for this comparison (default: none)."""
        return []

    def run(self, ctx: ComparisonContext) -> dict[int, Metrics]:
        raise NotImplementedError


@dataclass
class WarmStartContext:
    """What the runner hands a warm start: training-side texts and the model's own encoder.

    ``train_texts(side)`` are training texts only, never evaluation texts (``side``:
    ``"documents"``, ``"queries"`` or ``"all"``); ``encode(texts, role)`` embeds them with the
    model being prepared, at full dimension (``role``: ``"query"`` or ``"document"``).
    """

    seed: int
    train_texts: Callable[..., list[str]]
    encode: Callable[[list[str], str], np.ndarray]


class WarmStart(Component):
    """Changes the model before Matryoshka training starts; the change is saved with it."""

    def label(self) -> str:
        return self.name

    def apply(self, model: Any, ctx: WarmStartContext) -> dict[str, Any]:
        """Modify ``model`` in place; return facts for results.json."""
        raise NotImplementedError


#: Component kinds: recipe table, hook name, base class, and the noun used in messages.
@dataclass(frozen=True)
class Kind:
    key: str
    hook: str
    base: type[Component]
    noun: str


KINDS: dict[str, Kind] = {
    k.key: k
    for k in (
        Kind("data", "register_data_sources", DataSource, "data source"),
        Kind("loss", "register_losses", Loss, "loss"),
        Kind("dims", "register_dim_schedules", DimSchedule, "dimension schedule"),
        Kind("compare", "register_comparisons", Comparison, "comparison"),
        Kind("warm_start", "register_warm_starts", WarmStart, "warm start"),
    )
}
