"""Models by name: where one loads from (a folder, the packaged offline copy, the Hub), its width
read from its files, the device, loading it (``loading``); whether it can be loaded here
(``checks``); and every sentence-transformers import whose place moved between versions
(``compat``)."""

from .loading import (
    PACKAGED_MODELS,
    ResolvedModel,
    embedding_dim_from_files,
    full_width,
    load_model,
    max_seq_length_from_files,
    mixed_precision,
    pick_device,
    resolve_model,
)

__all__ = ["PACKAGED_MODELS", "ResolvedModel", "embedding_dim_from_files", "full_width", "load_model",
           "max_seq_length_from_files", "mixed_precision", "pick_device", "resolve_model"]
