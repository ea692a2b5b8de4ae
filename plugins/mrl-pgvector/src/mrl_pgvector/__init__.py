"""Index engine ``pgvector``: the Matryoshka funnel in PostgreSQL + pgvector.

One table per index holds the full-width vectors; an HNSW expression index on their first ``d``
dimensions shortlists, and the same SQL statement reranks the shortlist at full width (see
:mod:`.engine`). The server is yours (``--dsn``) or an embedded PostgreSQL this plugin starts
(:mod:`.server`). Registered through the ``mrl_plugins`` entry point like any third-party
plugin: it uses only the public contract (:class:`mrl_plugins.components.Engine`).
"""

from .engine import PgFunnel, Pgvector, PgvectorParams, Sql, register_index_backends

__all__ = ["PgFunnel", "Pgvector", "PgvectorParams", "Sql", "register_index_backends"]
