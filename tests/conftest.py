"""Shared fixtures: PostgreSQL for the store tests (isolated in fresh schemas).

The PostgreSQL server at 127.0.0.1:5432 (trust auth, user postgres, database test)
is optional on a developer machine: tests that need it skip with a clear reason when
it is absent -- except under ``CI=true``, where its absence fails the run.
Set PLINTH_TEST_PG_URL to point elsewhere. Every schema a test session creates is
named ``plinth_test_<pid>_<random>`` and dropped at the end of the session, so
parallel and later runs never collide.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
from _ray_cluster import ray_cluster  # noqa: F401 - the session's Ray cluster, for every folder

# Servers the tests start run replicas as the server's user (isolation.mode: off):
# the test jobs run this interpreter, which may sit under a 0700 home (/root/.pyenv)
# that replicas isolated as other OS users could not execute. The isolation tests
# (tests/api/test_isolation.py) ask for `users` explicitly in their configuration.
os.environ.setdefault("PLINTH_ISOLATION", "off")

PG_URL = os.environ.get("PLINTH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_CONNINFO = PG_URL.replace("postgresql+psycopg://", "postgresql://")


def _pg_available() -> str | None:
    """None when the server answers; else why not."""
    try:
        import psycopg

        with psycopg.connect(_CONNINFO, connect_timeout=3):
            return None
    except Exception as e:  # noqa: BLE001 - any failure means "not available"
        return f"{type(e).__name__}: {e}".strip()


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[Callable[[], str]]:
    """A factory of SQLAlchemy URLs, each to a fresh, empty PostgreSQL schema."""
    why = _pg_available()
    if why is not None:
        msg = f"PostgreSQL at {PG_URL} is not available ({why})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; it is required under CI=true", pytrace=False)
        pytest.skip(f"{msg}; start it to run the PostgreSQL tests")
    import psycopg

    created: list[str] = []

    def make() -> str:
        schema = f"plinth_test_{os.getpid()}_{secrets.token_hex(4)}"
        with psycopg.connect(_CONNINFO, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        created.append(schema)
        sep = "&" if "?" in PG_URL else "?"
        return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"

    try:
        yield make
    finally:
        with psycopg.connect(_CONNINFO, autocommit=True) as conn:
            for schema in created:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def pg_url(pg_schemas: Callable[[], str]) -> str:
    """One fresh PostgreSQL schema shared by the session's store tests."""
    return pg_schemas()
