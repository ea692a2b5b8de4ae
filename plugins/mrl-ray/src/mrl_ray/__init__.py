"""Executor ``ray``: ``mrl-run embed --executor ray`` on a Ray cluster, through Ray Data.

The core reads and checks the corpus and writes each shard's texts (see
:mod:`mrl_plugins.search.embedder`); this executor reads those texts with ``ray.data.read_text``,
embeds them with ``map_batches`` over a pool of model actors (one per GPU, or per
``cpus_per_worker`` CPUs), and streams the vectors back in order; the core writes, records and
checks each shard as it completes, as it does for the built-in ``local`` executor. Registered
through the ``mrl_plugins`` entry point like any third-party plugin: it uses only the public
contract (:class:`mrl_plugins.components.Executor`).
"""

from .executor import Ray, RayParams, register_executors

__all__ = ["Ray", "RayParams", "register_executors"]
