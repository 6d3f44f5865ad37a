"""Database fixtures for the worklist tests: SQLite in tmp_path, or one throw-away PG schema.

The tests run against PostgreSQL only when ``CXR_TEST_POSTGRES_URL`` is set, e.g.
``postgresql+psycopg://cxr:cxr@localhost:5432/cxr_test`` (see ``.ci`` / the setup script for
how the local server, role and database are created). Run ``python tests/pg_server.py`` to check
that the server answers.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text

POSTGRES_URL_ENV = "CXR_TEST_POSTGRES_URL"


def postgres_base_url_or_skip() -> str:
    """The server URL from the environment, or skip the calling test saying how to enable it."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set; set it to e.g. "
                    "postgresql+psycopg://cxr:cxr@localhost:5432/cxr_test to run the PostgreSQL "
                    "variant of this test")
    return url


@contextmanager
def fresh_postgres_schema(base_url: str) -> Iterator[str]:
    """Create an empty schema, yield a URL whose connections use only it, then drop it.

    The schema is selected through libpq's ``options=-csearch_path=...``, so any process given
    the URL (the worker subprocesses too) works inside the same isolated schema.
    """
    schema = f"cxr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def worklist_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A URL to an empty worklist database: a SQLite file in tmp_path, or a fresh PG schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'worklist.db').as_posix()}"
    else:
        with fresh_postgres_schema(postgres_base_url_or_skip()) as url:
            yield url


def main() -> int:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        print(f"{POSTGRES_URL_ENV} is not set", file=sys.stderr)
        return 2
    engine = create_engine(url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version()")).scalar_one()
    engine.dispose()
    print(f"ok: {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
