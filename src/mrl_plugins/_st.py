"""Imports that moved in sentence-transformers 6; one place so both 5.4+ and 6.x work."""

from __future__ import annotations

from types import ModuleType


def st_losses() -> ModuleType:
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses
    return losses


def st_models() -> ModuleType:
    try:
        from sentence_transformers.sentence_transformer import modules
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models as modules
    return modules
