"""Every import whose place differs between sentence-transformers 5.4+ and 6.x, in one module.

Nothing else in the package imports a sentence-transformers module path that moved; each
function here tries the 6.x place first and falls back to the 5.x one (imported by name, as the
type checker only knows the installed version's layout). ``tests/test_st_compat.py`` checks
every function against the installed version, and the 5.x paths against 5.x's own source.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, cast

import numpy as np


def _first(*paths: str) -> ModuleType:
    """The first of these modules that imports (the newest layout first)."""
    for path in paths[:-1]:
        try:
            return importlib.import_module(path)
        except ImportError:
            continue
    return importlib.import_module(paths[-1])


def st_losses() -> ModuleType:
    """sentence-transformers' losses (``MatryoshkaLoss``, ``MultipleNegativesRankingLoss`` …)."""
    return _first("sentence_transformers.sentence_transformer.losses", "sentence_transformers.losses")


def st_models() -> ModuleType:
    """sentence-transformers' modules (``Transformer``, ``Pooling``, ``Dense``, ``Normalize``)."""
    return _first("sentence_transformers.sentence_transformer.modules", "sentence_transformers.models")


def quantize_embeddings(vectors: np.ndarray, precision: str) -> np.ndarray:
    """sentence-transformers' own embedding quantiser (``ubinary``, ``int8`` …)."""
    module = _first("sentence_transformers.util.quantization", "sentence_transformers.quantization")
    return cast(np.ndarray, module.quantize_embeddings(np.ascontiguousarray(vectors, dtype=np.float32),
                                                       precision=precision))


def mine_hard_negatives(dataset: Any, model: Any, *, progress: bool = True, **kwargs: Any) -> Any:
    """sentence-transformers' hard-negative miner (``sentence_transformers.util``, in every version we allow).

    ``progress=False``: no progress bars. The miner encodes with ``show_progress_bar=True`` whatever
    it is asked (``verbose`` covers its statistics only), and an explicit ``disable=False`` beats
    ``TQDM_DISABLE``, so the model's encoders are wrapped on the instance for the call."""
    miner = _first("sentence_transformers.util.hard_negatives", "sentence_transformers.util").mine_hard_negatives
    if progress:
        return miner(dataset, model, **kwargs)
    names = [name for name in ("encode", "encode_query", "encode_document") if callable(getattr(model, name, None))]
    for name in names:
        def quiet(*args: Any, _call: Any = getattr(model, name), **kw: Any) -> Any:
            return _call(*args, **{**kw, "show_progress_bar": False})

        object.__setattr__(model, name, quiet)  # on the instance: the class's method is untouched
    try:
        return miner(dataset, model, **kwargs)
    finally:
        for name in names:
            model.__dict__.pop(name, None)


def uses_gradient_cache(loss: Any) -> bool:
    """Whether a base loss caches gradients (a ``Cached…`` loss), so full embeddings never exist."""
    try:
        module = importlib.import_module("sentence_transformers.base.losses.gradcache")
    except ImportError:  # sentence-transformers < 6: the cached losses are the classes named Cached…
        return type(loss).__name__.startswith("Cached")
    return bool(module.uses_gradient_cache(loss))


def strip_card_examples(model: Any) -> None:
    """Keep training text out of the card sentence-transformers will write for ``model``: the
    widget examples, the usage snippet's sentences and the 'Samples' table of each dataset (all
    three come from the training rows)."""
    data = model.model_card_data
    data.widget = []
    data.usage_examples = None  # sentence-transformers then shows its own generic sentences
    data.generate_widget_examples = False
    for dataset in (*data.train_datasets, *data.eval_datasets):
        for key in ("examples", "_example_columns"):
            dataset.pop(key, None)
        dataset["examples_table"] = ""
