"""The search side: a corpus's vectors in an engine, searched as a funnel (shortlist with the
first dimensions, rerank at full width), built, saved, opened, timed and searched by text.

``index``        :class:`FunnelIndex`, the core's funnel over any shortlist index backend
``folder``       an index folder: its typed manifest, the checks of its files, its text store
``build``        building an index from a model and texts, or from ``mrl-run embed``'s shards; opening one
``destination``  the ``-o`` of ``mrl-run index``: what may be replaced, room on the disk
``searcher``     :class:`Searcher`: a model (or its query encoder), an index and its texts; search by text
``timing``       searches timed side by side, and what a configuration costs

Index backends and engines are plugins (:class:`~mrl_plugins.components.IndexBackend`); nothing
here names a built-in one. The public names below are imported on first use.
"""

from __future__ import annotations

from typing import Any

_PUBLIC = {
    "index": ("FunnelIndex", "funnel_index", "open_funnel"),
    "build": ("IndexedCorpus", "build_from_texts", "open_index"),
    "timing": ("Timing", "measure", "search_cost"),
    "folder": ("TextStore",),
}
__all__ = sorted(name for names in _PUBLIC.values() for name in names)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC["index"]:
        from . import index as module
    elif name in _PUBLIC["build"]:
        from . import build as module  # type: ignore[no-redef]
    elif name in _PUBLIC["timing"]:
        from . import timing as module  # type: ignore[no-redef]
    elif name in _PUBLIC["folder"]:
        from . import folder as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module 'mrl_plugins.search' has no attribute {name!r}")
    return getattr(module, name)
