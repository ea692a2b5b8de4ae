"""The funnel in PostgreSQL + pgvector: one table, an HNSW index on a prefix, one SQL statement.

A :class:`PgFunnel` is one table ``(id bigint, text, embedding vector(D))`` (``halfvec(D)`` with
the ``float16`` store) holding the full-width, unit-length vectors. Its shortlist index is an
HNSW *expression* index on the first ``d`` dimensions, built after loading as pgvector advises::

    CREATE INDEX ON docs USING hnsw ((subvector(embedding, 1, 48)::vector(48)) vector_cosine_ops)

(``binary_quantize(subvector(...))::bit(48)`` with ``bit_hamming_ops`` for binary codes; the
plain column at full width), and a search is one statement: the shortlist by the prefix in the
index, reranked by cosine at the rerank width::

    SELECT id, 1 - (embedding <=> $q) FROM (
        SELECT id, embedding FROM docs
        ORDER BY subvector(embedding, 1, 48)::vector(48) <=> $q48 LIMIT 200) shortlist
    ORDER BY embedding <=> $q LIMIT 10

An HNSW scan returns at most ``hnsw.ef_search`` rows (40 by default): a shortlist of 200 would
silently be 40. Each search sets ``ef_search`` to at least the shortlist (pgvector caps it at
1,000); a larger shortlist turns on pgvector 0.8's iterative scan, which keeps scanning the graph
until the shortlist is full. Ids are the row numbers the core's funnel uses, scores the same
cosine similarities, so either engine's hits mean the same thing.

Loading is transactional: the table is created, filled by binary ``COPY`` and indexed in one
transaction that :meth:`PgFunnel.save` commits. A build that fails or is interrupted (a full
disk, Ctrl-C, a killed process) rolls back: no half-loaded table is left, and ``replace`` drops
an older table of the same name inside that transaction, so it is gone only if the new one is in.
An index that is never saved (a run's comparison) is never committed: closing it (or the
process ending) leaves nothing in the database.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from mrl_plugins import hookimpl
from mrl_plugins.components import Engine, Manifest, Params, SearchHits, SearchIndex, ServingChoice, ServingSnippet
from mrl_plugins.errors import UserError, is_disk_full

from .server import Server, redacted, server_memory

logger = logging.getLogger("mrl_plugins")

EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
FORMAT_VERSION = 3  # an index folder whose vectors an engine holds (mrl_plugins.search.folder)


def build_id(manifest: Manifest) -> str | None:
    """The build id this engine writes into its index folders' manifests (its own key)."""
    return (manifest.model_extra or {}).get("build_id")


class PgvectorParams(Params):
    dsn: str | None = Field(None, description="Connection string of your PostgreSQL (default: MRL_PGVECTOR_DSN, else "
                                              "an embedded server this plugin starts). Keep passwords in PGPASSWORD "
                                              "or ~/.pgpass: the index folder records the string without one.")
    data_dir: str | None = Field(None, description="The embedded server's data folder (default: MRL_PGVECTOR_DATA, "
                                                   "else the user's data folder).")
    table: str | None = Field(None, description="Table name (default: a new mrl_<id> per index). An existing table "
                                                "is refused unless --overwrite.")
    quantize: Literal["none", "binary"] = Field("none", description='"binary": the shortlist index holds sign bits '
                                                                    "(binary_quantize, Hamming distance).")
    m: int = Field(16, ge=2, le=100, description="HNSW links per node.")
    ef_construction: int = Field(64, ge=4, le=1000, description="HNSW candidate list while building.")
    ef_search: int = Field(40, ge=1, le=EF_SEARCH_MAX,
                           description="HNSW candidate list while searching (raised to the shortlist when smaller).")
    copy_batch: int = Field(10000, ge=1, description="Rows per binary COPY batch while loading.")

    @field_validator("dsn")
    @classmethod
    def _no_password(cls, dsn: str | None) -> str | None:
        if dsn:
            from psycopg.conninfo import conninfo_to_dict

            try:
                parts = conninfo_to_dict(dsn)
            except Exception as exc:
                raise ValueError(f"not a PostgreSQL connection string ({exc})") from None
            if parts.get("password"):
                raise ValueError("holds a password, which would be written into the run's results and the index "
                                 "folder; keep it in PGPASSWORD or ~/.pgpass (or put the whole string in "
                                 "MRL_PGVECTOR_DSN, which is never recorded)")
        return dsn

    @field_validator("table")
    @classmethod
    def _identifier(cls, name: str | None) -> str | None:
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise ValueError(f"'{name}' is not a plain SQL identifier (letters, digits, _; at most 63)")
        return name


class Pgvector(Engine[PgvectorParams]):
    """PostgreSQL + pgvector: HNSW on a prefix, reranked at full width in one SQL statement."""

    name = "pgvector"
    Params = PgvectorParams
    quantized = {"binary": ("pgvector", {"quantize": "binary"})}
    stores = frozenset({"float32", "float16"})

    def server(self) -> Server:
        return Server.of(self.params.dsn, self.params.data_dir)

    def funnel(self, full_dim: int, shortlist_dim: int, *, rerank_dim: int | None = None,
               store_dtype: str = "float32", model: Any = None, replace: bool = False) -> SearchIndex:
        if store_dtype not in self.stores:
            raise UserError(f"index engine 'pgvector' stores vectors as float32 (vector) or float16 (halfvec), not "
                            f"{store_dtype}.")
        return PgFunnel.create(self.params, full_dim, shortlist_dim, rerank_dim or full_dim, store_dtype, model,
                               replace=replace)

    def open(self, folder: Path, manifest: Manifest, *, mmap: bool = True) -> SearchIndex:
        # the manifest says where the table is; parameters given here (--dsn: the server moved) win
        params = PgvectorParams(**{**manifest.index.params, **self.params.model_dump(exclude_unset=True)})
        return PgFunnel.reopen(params, folder, manifest)

    @classmethod
    def serving_snippet(cls, choice: ServingChoice, measured: Mapping[str, Any]) -> ServingSnippet | None:
        """The SQL of the run's serving choice in PostgreSQL + pgvector: the table, the HNSW index on
        the prefix (binary codes when the choice shortlists binary codes), ``ef_search`` at the
        shortlist, and the one statement; with this engine's own measurement when the run made one."""
        binary = choice.index == "binary" or choice.index_params.get("quantize") == "binary"
        store = "float16" if choice.store == "float16" else "float32"
        sql = Sql("documents", choice.full_dim, choice.dim, choice.rerank_dim, store, "binary" if binary else "none")
        n = choice.shortlist
        def prefix(d: int) -> str:
            return "$1" if d == choice.full_dim else f"subvector($1::vector, 1, {d})"

        query_prefix, rerank_query = sql.query.replace("%(qs)s", prefix(choice.dim)), prefix(choice.rerank_dim)
        settings = [f"SET hnsw.ef_search = {min(n, EF_SEARCH_MAX)};  -- at least the shortlist: an HNSW scan "
                    "returns at most ef_search rows (40 by default)"]
        if n > EF_SEARCH_MAX:
            settings.append("SET hnsw.iterative_scan = relaxed_order;  -- above 1,000: scan on until the shortlist "
                            "is full")
        code = "\n".join([
            "-- pgvector >= 0.7; $1 is the query's full embedding (unit length) as vector",
            sql.create_table().replace('"documents"', "documents") + ";",
            "-- COPY the documents' full embeddings in, then index the prefix:",
            f"CREATE INDEX ON documents USING hnsw (({sql.expr}) {sql.ops});",
            *settings,
            f"SELECT id, text, 1 - ({sql.reranked} <=> {sql.rerank_query.replace('%(qr)s', rerank_query)}) AS score",
            "FROM (SELECT id, text, embedding FROM documents",
            f"      ORDER BY {sql.expr} {sql.op} {query_prefix}",
            f"      LIMIT {n}) shortlist",
            f"ORDER BY {sql.reranked} <=> {sql.rerank_query.replace('%(qr)s', rerank_query)}",
            f"LIMIT {choice.k};",
        ])
        ours = [m for m in measured.values() if m["dim"] == choice.dim and m["shortlist"] == n]
        recall = f", recall@{choice.k} {choice.recall:.3f} against exact search" if choice.recall is not None else ""
        note = (f"The same funnel as the choice above ({choice.dim}-dim shortlist of {n}, reranked at "
                f"{choice.rerank_dim}), which kept {choice.kept:.1%} of exact quality held out{recall}")
        if ours:
            m = ours[0]
            got = f", recall@{choice.k} {m['recall']:.3f}" if m["recall"] is not None else ""
            note += f"; this run measured it in pgvector too: {m['kept']:.1%} kept{got}."
        else:
            note += (f", measured with the `{choice.index}` index in process; the run did not measure it in pgvector "
                     "(add a `funnel` comparison with index = \"pgvector\" to the recipe), and HNSW can miss "
                     "neighbours the exact shortlist keeps.")
        return ServingSnippet("PostgreSQL + pgvector", "sql", code, note)

    def discard(self, folder: Path, manifest: Manifest) -> None:
        """Drop the table the old index folder describes, only if it is still that index's (its
        comment carries the build id): a table a newer build replaced is never dropped."""
        table, build = manifest.index.params.get("table"), build_id(manifest)
        if not table or not build:
            return
        try:
            conn = self.server().connect(autocommit=True)
        except UserError as exc:
            logger.warning("the old index's table %s was not dropped: %s", table, exc)
            return
        with conn:
            comment = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (table,)).fetchone()
            if comment and comment[0] == comment_of(build):
                conn.execute(f'DROP TABLE "{table}"')


def comment_of(build_id: str) -> str:
    return f"mrl-plugins index {build_id}"


class Sql:
    """The SQL of one funnel: the column's type, the shortlist expression, its operator class."""

    def __init__(self, table: str, full: int, dim: int, rerank: int, store: str, quantize: str):
        self.table, self.full, self.dim, self.rerank = table, full, dim, rerank
        self.type = "halfvec" if store == "float16" else "vector"
        self.binary = quantize == "binary"
        prefix = "embedding" if dim == full else f"subvector(embedding, 1, {dim})::{self.type}({dim})"
        if self.binary:
            self.expr, self.ops, self.op = f"binary_quantize({prefix})::bit({dim})", "bit_hamming_ops", "<~>"
            self.query = f"binary_quantize(%(qs)s::{self.type}({dim}))::bit({dim})"
            self.score = f"1 - 2 * ({self.expr} <~> {self.query})::float8 / {dim}"
        else:
            self.expr, self.ops, self.op = prefix, f"{self.type}_cosine_ops", "<=>"
            self.query = f"%(qs)s::{self.type}({dim})"
            self.score = f"1 - ({self.expr} <=> {self.query})"
        self.reranked = "embedding" if rerank == full else f"subvector(embedding, 1, {rerank})::{self.type}({rerank})"
        self.rerank_query = f"%(qr)s::{self.type}({rerank})"

    @property
    def index_name(self) -> str:
        return f"{self.table}_hnsw_{self.dim}{'_bit' if self.binary else ''}"

    def create_table(self) -> str:
        return f'CREATE TABLE "{self.table}" (id bigint PRIMARY KEY, text text, embedding {self.type}({self.full}))'

    def create_index(self, m: int, ef_construction: int) -> str:
        return (f'CREATE INDEX "{self.index_name}" ON "{self.table}" USING hnsw (({self.expr}) {self.ops}) '
                f"WITH (m = {m}, ef_construction = {ef_construction})")

    def shortlist_only(self) -> str:
        return (f'SELECT id, {self.score} FROM "{self.table}" ORDER BY {self.expr} {self.op} {self.query} '
                "LIMIT %(k)s")

    def funnel(self) -> str:
        return (f"SELECT id, 1 - ({self.reranked} <=> {self.rerank_query}) FROM (SELECT id, embedding FROM "
                f'"{self.table}" ORDER BY {self.expr} {self.op} {self.query} LIMIT %(n)s) shortlist '
                f"ORDER BY {self.reranked} <=> {self.rerank_query} LIMIT %(k)s")


class PgFunnel(SearchIndex):
    """A funnel index held in one PostgreSQL table (see the module's doc)."""

    def __init__(self, params: PgvectorParams, server: Server, conn: Any, sql: Sql, full_dim: int,
                 shortlist_dim: int, rerank_dim: int, store_dtype: str, model: Any):
        self.params, self.server, self.conn, self.sql = params, server, conn, sql
        self.full_dim, self.shortlist_dim, self.rerank_dim = full_dim, shortlist_dim, rerank_dim
        self.store_dtype, self.model = store_dtype, model
        self._count = 0
        self.indexed = False
        self.saved = False
        self.build_id = uuid.uuid4().hex[:12]
        self._session: tuple[int, bool] | None = None
        self.version = ""

    # -- making and reopening --------------------------------------------------------------------
    @classmethod
    def create(cls, params: PgvectorParams, full_dim: int, shortlist_dim: int, rerank_dim: int, store: str,
               model: Any, *, replace: bool) -> PgFunnel:
        if not 0 < shortlist_dim <= full_dim or not 0 < rerank_dim <= full_dim:
            raise UserError(f"shortlist dimension {shortlist_dim} and rerank dimension {rerank_dim} must be between 1 "
                            f"and the model's dimension {full_dim}.")
        server = Server.of(params.dsn, params.data_dir)
        table = params.table or f"mrl_{uuid.uuid4().hex[:12]}"
        conn = server.connect(autocommit=False)  # one transaction from CREATE TABLE to save()
        sql = Sql(table, full_dim, shortlist_dim, rerank_dim, store, params.quantize)
        index = cls(params.model_copy(update={"table": table}), server, conn, sql, full_dim, shortlist_dim,
                    rerank_dim, store, model)
        index.version = index._pgvector_version()
        try:
            # one build of a table at a time, across processes and machines: held until the build's
            # transaction ends (committed by save(), rolled back by anything else, a kill included)
            if not conn.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))",
                                (f"mrl-pgvector:{table}",)).fetchone()[0]:
                raise UserError(f"another build of table {table} is under way in {server.where}; nothing was "
                                "changed. Wait for it to finish (then --overwrite replaces it), or choose another "
                                "name (--index-param table=NAME).")
            exists = conn.execute("SELECT to_regclass(%s)", (f'"{table}"',)).fetchone()[0] is not None
            if exists and not replace:
                raise UserError(f"table {table} already exists in {server.where}; nothing was changed. Pass "
                                "--overwrite to replace it (the old table is dropped only once the new one is "
                                "loaded), or choose another name (--index-param table=NAME).")
            if exists:
                conn.execute(f'DROP TABLE "{table}"')
            conn.execute(sql.create_table())
        except BaseException as exc:
            index.close()
            import psycopg

            said = " ".join(str(exc).split())
            # no CREATE on the schema (from PostgreSQL 15 on, only its owner has it on public)
            if isinstance(exc, psycopg.errors.InsufficientPrivilege):
                raise UserError(f"PostgreSQL at {server.where} refused to create table {table} ({said}); nothing "
                                "was changed. Grant this user CREATE on the schema, or connect as one who has it."
                                ) from None
            if isinstance(exc, psycopg.errors.DuplicateTable | psycopg.errors.UniqueViolation):
                raise UserError(f"table {table} was created in {server.where} by another command while this one "
                                f"started ({said}); nothing was changed. Run again once it finished (--overwrite "
                                "replaces it), or choose another name (--index-param table=NAME).") from None
            if isinstance(exc, psycopg.Error):
                raise UserError(f"PostgreSQL at {server.where} could not create table {table} ({said}); nothing was "
                                "changed.") from None
            raise
        return index

    @classmethod
    def reopen(cls, params: PgvectorParams, folder: Path, manifest: Manifest) -> PgFunnel:
        server = Server.of(params.dsn, params.data_dir)
        table = params.table
        rebuild = f"rebuild it with 'mrl-run index MODEL CORPUS -o {folder} --overwrite'"
        if not table:
            raise UserError(f"{folder}/manifest.json names no table; the manifest is damaged; {rebuild}.")
        conn = server.connect(autocommit=True)
        sql = Sql(table, manifest.full_dim, manifest.shortlist_dim, manifest.rerank_dim, manifest.store_dtype,
                  params.quantize)
        from mrl_plugins.embed import ModelStamp

        m = manifest.model
        index = cls(params, server, conn, sql, manifest.full_dim, manifest.shortlist_dim, manifest.rerank_dim,
                    manifest.store_dtype, ModelStamp(m.name, tuple(m.probe)) if m else None)
        index.indexed, index.saved, index.build_id = True, True, str(build_id(manifest) or "")
        index.version = index._pgvector_version()
        row = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (f'"{table}"',)).fetchone()
        if row is None or row[0] is None:
            conn.close()
            raise UserError(f"{folder}: its table {table} is not in {server.where} (dropped, or another server); "
                            f"point --dsn at the server that holds it, or {rebuild}.")
        if row[0] != comment_of(index.build_id):
            conn.close()
            raise UserError(f"{folder}: table {table} in {server.where} now holds another index ({row[0]}); the "
                            f"folder is stale; {rebuild}.")
        index._count = int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
        if index._count != manifest.count:
            conn.close()
            raise UserError(f"{folder}: table {table} holds {index._count} rows, the manifest says "
                            f"{manifest.count}; {rebuild}.")
        return index

    def _pgvector_version(self) -> str:
        return str(self.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0])

    # -- loading ---------------------------------------------------------------------------------
    def add(self, embeddings: np.ndarray, texts: list[str] | None = None) -> None:
        """Append unit-length copies of the embeddings by binary COPY, in batches (a progress bar
        when there are several). A failure rolls the whole load back; a full disk says so."""
        from tqdm.auto import tqdm

        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.full_dim:
            raise UserError(f"expected embeddings of shape (n, {self.full_dim}), got {vectors.shape}.")
        if texts is not None and len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts for {len(vectors)} embeddings")
        if self.saved:
            raise UserError(f"table {self.sql.table} is saved; build a new index to add documents.")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = vectors / np.where(norms > 0, norms, 1.0)
        batch = self.params.copy_batch
        kind = self.sql.type
        if kind == "halfvec":
            from pgvector import HalfVector

            wrap: Any = HalfVector
        else:
            wrap = lambda v: v  # noqa: E731  (numpy rows are dumped as vector)
        try:
            with tqdm(total=len(unit), unit="row", desc=f"COPY into {self.sql.table}", leave=False,
                      disable=len(unit) <= batch) as bar:
                for start in range(0, len(unit), batch):
                    stop = min(start + batch, len(unit))
                    with self.conn.cursor() as cur, cur.copy(
                            f'COPY "{self.sql.table}" (id, text, embedding) FROM STDIN WITH (FORMAT BINARY)') as copy:
                        copy.set_types(["int8", "text", kind])
                        for i in range(start, stop):
                            copy.write_row((self._count + i, texts[i] if texts is not None else None, wrap(unit[i])))
                    bar.update(stop - start)
        except BaseException as exc:
            self._failed(exc, "loading")
            raise
        self._count += len(unit)
        if self.indexed:
            self.conn.execute(f'ANALYZE "{self.sql.table}"')

    def _failed(self, exc: BaseException, doing: str) -> None:
        """Roll the load back (nothing half-built stays) and turn a full disk into its message."""
        import psycopg

        self.close()
        if isinstance(exc, psycopg.errors.DiskFull) or is_disk_full(exc):
            raise UserError(f"the database server ran out of disk while {doing} table {self.sql.table} "
                            f"({self.server.where}); the load was rolled back and nothing of it is left. Free some "
                            "space on the server (or point --dsn at another) and run the command again.") from None

    def build_index(self) -> None:
        """The HNSW index on the prefix, after loading, with ``maintenance_work_mem`` sized for its
        graph (pgvector builds fastest when the graph fits), then ANALYZE for the planner."""
        if self.indexed:
            return
        per_row = {"vector": 4, "halfvec": 2}[self.sql.type] * self.shortlist_dim if not self.sql.binary \
            else self.shortlist_dim / 8
        need = int(self._count * (per_row + 2 * self.params.m * 16 + 128) * 1.25)
        mem_mb = max(64, min(need >> 20, available_memory() // 4 >> 20, 16 << 10))
        try:
            self.conn.execute(f"SET LOCAL maintenance_work_mem = '{mem_mb}MB'")
            self.conn.execute(self.sql.create_index(self.params.m, self.params.ef_construction))
            self.conn.execute(f'ANALYZE "{self.sql.table}"')
        except BaseException as exc:
            self._failed(exc, "indexing")
            raise
        self.indexed = True

    # -- searching -------------------------------------------------------------------------------
    def _configure(self, n: int) -> None:
        """``hnsw.ef_search`` at least the shortlist, so the scan is never cut short; above
        pgvector's cap, iterative scans keep going until the shortlist is full."""
        iterative = n > EF_SEARCH_MAX
        want = (min(EF_SEARCH_MAX, max(self.params.ef_search, n)), iterative)
        if self._session == want:
            return
        self.conn.execute("SELECT set_config('hnsw.ef_search', %s, false), set_config('hnsw.iterative_scan', %s, "
                          "false), set_config('hnsw.max_scan_tuples', %s, false)",
                          (str(want[0]), "relaxed_order" if iterative else "off", str(max(20000, 4 * n))))
        self._session = want

    def search(self, queries: np.ndarray, k: int, shortlist: int | None = None) -> SearchHits:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.full_dim:
            raise UserError(f"queries have {queries.shape[1]} dimensions; this index expects {self.full_dim}.")
        if shortlist is not None and shortlist < k:
            raise UserError(f"the shortlist ({shortlist}) must be at least k ({k}).")
        self.build_index()
        n = min(shortlist or k, max(self._count, 1))
        self._configure(n)
        statement = self.sql.funnel() if shortlist is not None else self.sql.shortlist_only()
        cursors = []
        with self.conn.pipeline():  # the batch's queries over one connection, without a round trip each
            for q in queries:
                cur = self.conn.cursor()
                cur.execute(statement, {"qs": q[: self.shortlist_dim], "qr": q[: self.rerank_dim], "n": n, "k": k},
                            prepare=True)
                cursors.append(cur)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for row, cur in enumerate(cursors):
            found = cur.fetchall()
            cur.close()
            if found:
                ids[row, : len(found)] = [r[0] for r in found]
                scores[row, : len(found)] = [r[1] for r in found]
        return SearchHits(ids, scores)

    def shortlist_size(self, query: np.ndarray, n: int) -> int:
        """How many candidates the shortlist scan returns for ``n`` asked (== ``n`` unless the
        corpus is smaller: the test that ``ef_search`` is raised)."""
        self.build_index()
        self._configure(n)
        sql = f'SELECT count(*) FROM (SELECT id FROM "{self.sql.table}" ORDER BY {self.sql.expr} {self.sql.op} ' \
              f"{self.sql.query} LIMIT %(n)s) s"
        return int(self.conn.execute(sql, {"qs": np.asarray(query, np.float32)[: self.shortlist_dim], "n": n})
                   .fetchone()[0])

    def explain(self, query: np.ndarray, n: int) -> str:
        """The plan of a funnel query (to check that the HNSW index is used)."""
        self.build_index()
        self._configure(n)
        q = np.asarray(query, np.float32)
        rows = self.conn.execute("EXPLAIN " + self.sql.funnel(), {"qs": q[: self.shortlist_dim],
                                                                    "qr": q[: self.rerank_dim], "n": n, "k": 10})
        return "\n".join(r[0] for r in rows.fetchall())

    # -- sizes and facts -------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self._count

    def index_bytes(self) -> float:
        self.build_index()
        size = self.conn.execute("SELECT pg_relation_size(to_regclass(%s))", (f'"{self.sql.index_name}"',)).fetchone()
        return float(size[0]) / max(self._count, 1)

    def rerank_bytes(self) -> float:
        """The stored vector's bytes as PostgreSQL keeps it (header included)."""
        row = self.conn.execute(f'SELECT avg(pg_column_size(embedding)) FROM (SELECT embedding FROM "{self.sql.table}" '
                                "LIMIT 1000) s").fetchone()
        return float(row[0] or 0.0)

    def table_bytes(self) -> int:
        return int(self.conn.execute("SELECT pg_table_size(to_regclass(%s))", (f'"{self.sql.table}"',)).fetchone()[0])

    def facts(self) -> dict[str, Any]:
        server = self.conn.execute("SHOW server_version").fetchone()[0]
        return {"name": "pgvector", "pgvector": self.version, "postgresql": str(server),
                "server": "embedded" if self.server.dsn is None else "dsn", "m": self.params.m,
                "ef_construction": self.params.ef_construction, "ef_search": self.params.ef_search}

    def server_memory(self) -> int | None:
        return server_memory(self.server.data_dir)

    def decoded(self) -> np.ndarray:
        rows = self.conn.execute(f'SELECT embedding::vector FROM "{self.sql.table}" ORDER BY id').fetchall()
        if not rows:
            return np.zeros((0, self.full_dim), np.float32)
        return np.stack([np.asarray(r[0].to_numpy() if hasattr(r[0], "to_numpy") else r[0], np.float32)
                         for r in rows])

    # -- files -----------------------------------------------------------------------------------
    def save(self, folder: Path, *, texts: Path | None = None, shortlist: int | None = None) -> Path:
        """Index, comment the table with this build's id, commit, then write the manifest (last:
        a folder without it is not an index). The manifest's parameters say where the table is:
        the connection string without its password, or the embedded server's folder."""
        from mrl_plugins import __version__

        self.build_index()
        try:
            self.conn.execute(f"COMMENT ON TABLE \"{self.sql.table}\" IS '{comment_of(self.build_id)}'")
            self.conn.commit()
        except BaseException as exc:
            self._failed(exc, "committing")
            raise
        self.saved = True
        self.conn.autocommit = True
        params = self.params.model_dump(mode="json")
        params["dsn"] = redacted(self.server.dsn) if self.server.dsn and self.params.dsn else None
        params["data_dir"] = str(self.server.data_dir) if self.server.data_dir else None
        manifest = {
            "format": "mrl-plugins-index", "version": FORMAT_VERSION, "created_by": f"mrl-plugins {__version__}",
            "model": None if self.model is None else {"name": self.model.name, "probe": list(self.model.probe)},
            "full_dim": self.full_dim, "shortlist_dim": self.shortlist_dim, "rerank_dim": self.rerank_dim,
            "index": {"name": "pgvector", "params": params}, "count": self._count, "store_dtype": self.store_dtype,
            "normalised": True, "engine": True, "build_id": self.build_id, "texts": texts is not None,
            **({"shortlist": shortlist} if shortlist is not None else {}),
        }
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, folder / "manifest.json")
        return folder

    def close(self) -> None:
        """Close the connection; an index never saved was never committed, so it leaves nothing."""
        try:
            if not self.conn.closed:
                if not self.saved:
                    self.conn.rollback()
                self.conn.close()
        except Exception:  # the connection may already be broken (the failure being handled)
            pass

    def __del__(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None and not conn.closed:
            self.close()


def available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return 8 << 30


@hookimpl
def register_index_backends(register):
    register(Pgvector)
