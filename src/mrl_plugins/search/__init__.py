"""The search side: funnel indexes (shortlist at a low dimension, rerank at full) over
index-backend plugins, built from embeddings or from a model and texts, saved and loaded.

``FunnelIndex`` is the index; :func:`build_from_texts` builds one from a model and a corpus
(what ``mrl-run index`` does); :func:`open_index` loads a saved one with its backend from the
plugin registry; :func:`measure` times searches side by side.
"""

from ..evaluation import normalise
from .build import IndexedCorpus, build_from_texts, open_index
from .corpus import CorpusReader
from .folder import TextStore
from .index import FunnelIndex, ModelStamp, SearchHits
from .timing import Timing, measure, search_cost

__all__ = [
    "CorpusReader",
    "FunnelIndex",
    "IndexedCorpus",
    "ModelStamp",
    "SearchHits",
    "TextStore",
    "Timing",
    "build_from_texts",
    "measure",
    "normalise",
    "open_index",
    "search_cost",
]
