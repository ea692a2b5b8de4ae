"""Which model embedded a set of vectors: its name and its embedding of a fixed probe sentence, so
that a query embedded by another model is refused whatever the model is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PROBE = "mrl-plugins index probe: which model embedded this corpus?"


@dataclass(frozen=True)
class ModelStamp:
    """Which model embedded an index: its name and its embedding of a fixed probe sentence, so
    a query embedded by another model is refused whatever the model is called."""

    name: str
    probe: tuple[float, ...]

    @classmethod
    def of(cls, model: Any, name: str) -> ModelStamp:
        from ..evaluation.encode import encode_texts

        vector = encode_texts(model, [PROBE], role="document")[0]
        return cls(name, tuple(round(float(v), 6) for v in vector[:16]))

    def matches(self, other: ModelStamp) -> bool:
        return len(self.probe) == len(other.probe) and np.allclose(self.probe, other.probe, atol=1e-3)
