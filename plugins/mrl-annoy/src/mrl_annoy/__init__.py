"""Index backend ``annoy``: Spotify's Annoy over the Matryoshka shortlist prefix.

Annoy builds a forest of random-projection trees over the (re-normalised) first ``dim``
dimensions, with angular distance, and answers from a file it memory-maps; the core's funnel
reranks its shortlist at full width, exactly as it does for FAISS's backends. Registered through
the ``mrl_plugins`` entry point like any third-party plugin: it uses only the public contract
(:class:`mrl_plugins.components.IndexBackend`, :class:`~mrl_plugins.components.ShortlistIndex`).
"""

from .backend import Annoy, AnnoyParams, register_index_backends

__all__ = ["Annoy", "AnnoyParams", "register_index_backends"]
