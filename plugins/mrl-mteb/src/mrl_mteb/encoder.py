"""An MTEB encoder over one of a run's models at one width: full-width embeddings from the run
(encoded once per text), cut to the first ``dim`` dimensions and re-normalised, as every width of
the project is scored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta

from mrl_plugins.components import Role, TaskContext
from mrl_plugins.evaluation.encode import normalise

Cache = dict[tuple[str, tuple[str, ...]], np.ndarray]


def model_meta(name: str, dim: int) -> ModelMeta:
    """What MTEB records of the model: its name in the run and the width; nothing is loaded from it."""
    return ModelMeta(loader=None, name=f"mrl-plugins/{name}-{dim}", revision="run", release_date=None,
                     languages=None, n_parameters=None, memory_usage_mb=None, max_tokens=None, embed_dim=dim,
                     license=None, open_weights=None, public_training_code=None, public_training_data=None,
                     framework=["Sentence Transformers"], similarity_fn_name="cosine", use_instructions=False,
                     training_datasets=None, reference=None)


class WidthEncoder(AbsEncoder):
    """``model`` of the run at ``dim`` dimensions, for ``mteb.evaluate``.

    MTEB's query/document prompt types map to the run's roles (its prompts, if the model has
    any); texts MTEB asks for again (every width asks for the same ones) come from ``cache``.
    """

    def __init__(self, ctx: TaskContext, model: str, dim: int, cache: Cache, batch_size: int):
        self.ctx, self.model, self.dim, self.cache, self.batch_size = ctx, model, dim, cache, batch_size
        self.mteb_model_meta = model_meta(model, dim)

    def full(self, texts: Sequence[str], role: Role) -> np.ndarray:
        key = (role, tuple(texts))
        if key not in self.cache:
            self.cache[key] = np.asarray(self.ctx.encode(self.model, list(texts), role=role,
                                                         batch_size=self.batch_size), dtype=np.float32)
        return self.cache[key]

    def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        texts = [str(t) for batch in inputs for t in batch["text"]]
        role: Role = "query" if getattr(prompt_type, "value", prompt_type) == "query" else "document"
        return normalise(self.full(texts, role)[:, : self.dim])

