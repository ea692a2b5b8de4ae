"""What an executor is handed and hands back: the contract of ``mrl-run embed``'s workers.

``mrl-run embed`` splits a corpus into shards (:mod:`mrl_plugins.search.embedder`): it reads the
corpus once, streaming, checks every row, and writes each shard's texts as JSON lines
(``shard-00000.jsonl``). An :class:`~mrl_plugins.components.Executor` then turns shard texts into
vectors, on this process, on every device of the machine, or on a cluster, and the core writes
them (``shard-00000.npy``), records them and, once every shard is there, the manifest. So every
executor writes the same shards and the same manifest, and the reading, the checks and the files
are the core's alone.

Every executor embeds with :meth:`EmbedJob.encode` (the same prompt, width, normalisation and
dtype, and the same over-length check), and reads shard texts with :func:`shard_texts`: both are
plain functions of picklable objects, so they run unchanged on a Ray worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

EmbedDtype = Literal["float32", "float16"]
_LOADED: dict[tuple[str, str], Any] = {}
"""Models this process has loaded for a job, by ``(model, device)``: the driver's own copy is
reused by an in-process executor instead of being loaded twice."""


@dataclass(frozen=True)
class ShardTask:
    """One shard to embed: its number, its texts file (JSON lines of ``{"id", "text"}``) and rows."""

    index: int
    texts: Path
    rows: int


@dataclass
class ShardVectors:
    """An embedded shard: ``(rows, full_dim)`` unit-length vectors in the job's dtype, and which
    rows were longer than the model reads (``max_seq_length`` tokens: the rest was cut off)."""

    vectors: np.ndarray
    over_length: np.ndarray
    """Boolean ``(rows,)``."""


@dataclass(frozen=True)
class EmbedJob:
    """Everything an executor needs to embed shards, picklable: the model to load (a local folder
    or a Hub id) and how to encode."""

    model: str
    """Where the model loads from (a folder, or a Hub id): what each worker loads."""
    model_name: str
    """The name it was asked for (recorded in the manifest)."""
    local_files_only: bool
    full_dim: int
    dtype: EmbedDtype = "float32"
    batch_size: int = 256
    device: str = "cpu"
    """The device of an in-process encode; workers on other machines choose their own."""
    chunk: int = 4096
    """Texts per encode call: the unit of progress (and of a multi-process pool's work)."""

    def load_model(self, device: str | None = None) -> Any:
        """The model, on ``device`` (default: the job's), at full width."""
        from ..models import ResolvedModel, load_model

        key = (self.model, device or self.device)
        if key not in _LOADED:
            origin = "local path" if self.local_files_only else "hub"
            _LOADED.clear()  # one model at a time
            _LOADED[key] = load_model(ResolvedModel(self.model_name, self.model, origin), device=key[1])
        return _LOADED[key]

    def remember(self, model: Any) -> None:
        """Hand :meth:`load_model` the model this process already loaded on the job's device."""
        _LOADED.clear()
        _LOADED[(self.model, self.device)] = model

    def encode(self, model: Any, texts: list[str], pool: Any = None) -> ShardVectors:
        """Embed ``texts`` as documents (the model's document prompt), at full width, unit length,
        in the job's dtype; ``pool`` is a sentence-transformers multi-process pool. Over-length
        texts are found with the model's own tokenizer, counting only texts long enough to exceed
        it (a word piece covers at least one character)."""
        from ..evaluation.encode import encode_texts, normalise

        # longest first: sentence-transformers sorts within one encode call, but a pool hands its
        # processes contiguous chunks, so sorted texts keep every batch's padding small there too
        # (unsorted chunks made two CPU processes 2.2x slower on Debian descriptions)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        ordered = [texts[i] for i in order]
        vectors = np.empty((len(texts), self.full_dim), dtype=np.float32)
        vectors[order] = encode_texts(model, ordered, role="document", batch_size=self.batch_size, pool=pool)
        return ShardVectors(normalise(vectors).astype(self.dtype), over_length(model, texts))


def over_length(model: Any, texts: list[str]) -> np.ndarray:
    """Which texts have more tokens (special tokens included) than the model reads."""
    limit = getattr(model, "max_seq_length", None)
    tokenizer = getattr(model, "tokenizer", None)
    out = np.zeros(len(texts), dtype=bool)
    if not limit or tokenizer is None:
        return out
    long = [i for i, text in enumerate(texts) if len(text) > limit - 2]
    if long:
        lengths = tokenizer([texts[i] for i in long], add_special_tokens=True, truncation=False,
                            return_attention_mask=False, return_token_type_ids=False, verbose=False)["input_ids"]
        for i, ids in zip(long, lengths):
            out[i] = len(ids) > limit
    return out


def shard_texts(path: str | Path) -> list[str]:
    """The texts of a shard's JSON lines, in order."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]
