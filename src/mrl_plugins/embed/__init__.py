"""Embedding a corpus once, for any size: ``mrl-run embed`` and what it writes.

``start``     one embed as its request asks: ``-o`` checked, the corpus's files checked, locked
``job``       the executor contract's data: the job, a shard to embed, its vectors; how every
              executor encodes (``EmbedJob.encode``) and reads shard texts
``local``     the built-in executor (this process, or a multi-process pool over devices)
``embedder``  the request; reads the corpus once, plans and writes shards, records and checks them, resumes
``folder``    the embeddings folder's layout, its manifest and its checks
``stamp``     which model embedded a set of vectors (shared with index folders)

Executors for clusters are plugins (``plugins/mrl-ray``): they receive an
:class:`~.job.EmbedJob` and shard tasks, and import them from here.
"""

from .job import EmbedJob, ShardTask, ShardVectors, shard_texts
from .stamp import ModelStamp

__all__ = ["EmbedJob", "ModelStamp", "ShardTask", "ShardVectors", "shard_texts"]
