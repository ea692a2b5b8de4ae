"""The contexts a comparison or a warm start receives, over plain arrays and texts, to test one
without a run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..components import IndexBackend
from ..contexts import ComparisonContext, Role, TaskContext, TextSide, WarmStartContext
from ..data.types import IRSet
from ..evaluation.metrics import Metrics
from .models import isolated_registry


# -- contexts ------------------------------------------------------------------------------
@dataclass
class ArrayComparisonContext(ComparisonContext):
    """A comparison's context over arrays: every model's embeddings are ``queries``/``corpus``,
    ``encode`` returns ``fit_vectors`` (or, given ``text_vectors``, each text's own vector) and
    records the texts it was asked for in ``encoded``."""

    queries: np.ndarray
    corpus: np.ndarray
    relevant: list[set[int]]
    dims: list[int]
    fit_vectors: np.ndarray | None = None
    texts: Sequence[str] = ()
    k: int = 10
    encoded: list[str] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    """Loaded models ``model()`` serves, when the comparison under test needs one."""
    pairs: Sequence[tuple[str, str]] = ()
    folder: Path | None = None
    text_vectors: Mapping[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.exact_index = isolated_registry().exact_index()
        self.eval_set = IRSet(
            {f"q{i}": f"query {i}" for i in range(len(self.queries))},
            {f"d{i}": f"doc {i}" for i in range(len(self.corpus))},
            {f"q{i}": {f"d{j}" for j in rel} for i, rel in enumerate(self.relevant)},
        )

    def embeddings(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        return self.queries, self.corpus

    def encode(self, model: str, texts: Sequence[str]) -> np.ndarray:
        self.encoded.extend(texts)
        if self.text_vectors is not None:
            return np.stack([self.text_vectors[t] for t in texts]).astype(np.float32)
        if self.fit_vectors is None:
            raise ValueError("ArrayComparisonContext: pass fit_vectors to test a comparison that encodes texts")
        return self.fit_vectors

    def train_texts(self, side: TextSide = "documents") -> list[str]:
        return list(self.texts)

    def score(self, queries: np.ndarray, corpus: np.ndarray) -> dict[int, Metrics]:
        from ..evaluation.retrieval import score_dims

        return score_dims(queries, corpus, self.relevant, self.dims, k=self.k)

    def score_ranked(self, ranked: Mapping[int, np.ndarray]) -> dict[int, Metrics]:
        from ..evaluation.retrieval import scores_of

        return scores_of(dict(ranked), self.relevant, self.k)

    def index_backend(self, name: str, params: Mapping[str, Any] | None = None) -> IndexBackend:
        return isolated_registry().build("index", name, params)

    def model(self, name: str) -> Any:
        return self.models[name]

    def output_dir(self) -> Path:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="mrl-comparison-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def train_pairs(self) -> list[tuple[str, str]]:
        return list(self.pairs)


@dataclass
class TextsWarmStartContext(WarmStartContext):
    """A warm start's context over a list of texts, encoded by ``model``; records what it encoded."""

    model: Any
    texts: Sequence[str]
    seed: int = 0
    encoded: list[str] = field(default_factory=list)

    def train_texts(self, side: TextSide = "all") -> list[str]:
        return list(self.texts)

    def encode(self, texts: Sequence[str], role: Role = "document") -> np.ndarray:
        from ..evaluation.encode import encode_texts

        self.encoded.extend(texts)
        return encode_texts(self.model, list(texts), role=role)


@dataclass
class ModelsTaskContext(TaskContext):
    """An evaluation task's context over loaded models by name (``{"mrl": model}``), at ``dims``;
    relative paths are read from ``recipe_dir``."""

    models: Mapping[str, Any]
    dims: list[int]
    recipe_dir: Path = Path(".")
    seed: int = 42

    def encode(self, model: str, texts: Sequence[str], role: Role = "document",
               batch_size: int | None = None) -> np.ndarray:
        from ..evaluation.encode import encode_texts

        return encode_texts(self.models[model], list(texts), role=role, batch_size=batch_size or 64)
