"""Executor ``spark``: ``mrl-run embed --executor spark`` on Apache Spark, through ``mapInPandas``.

The core reads and checks the corpus and writes each shard's texts (see
:mod:`mrl_plugins.embed.embedder`); this executor hands the texts to Spark in the units the
built-in ``local`` executor encodes (each shard cut into ``job.chunk`` texts), encodes each unit
with :meth:`~mrl_plugins.embed.EmbedJob.encode` inside ``mapInPandas`` on the executors, and
yields each shard to the core when all its units are back; the core writes, records and checks
it as it does for ``local``. The same units encoded by the same code give the same bytes: the
folder equals the local executor's byte for byte (``tests/test_spark.py``). Registered through
the ``mrl_plugins`` entry point like any third-party plugin: it uses only the public contract
(:class:`mrl_plugins.components.Executor`).
"""

from .executor import Spark, SparkParams, register_executors

__all__ = ["Spark", "SparkParams", "register_executors"]
