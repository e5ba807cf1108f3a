"""Fixtures for tests that need a real PostgreSQL server: one throwaway database per test session.

The session connects to the server named by ``DURAPOD_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``: the machine's server, trust auth), creates a database
``durapod_test_<random>`` for the session and drops it at the end, so tests never touch data they did not
create. Each test gets its own schema in that database (``postgres_url`` carries it as ``?schema=``).

Without a reachable server those tests are skipped, unless ``DURAPOD_REQUIRE_POSTGRES=1`` (CI sets it):
then they fail, so that a CI machine without Postgres cannot pass by skipping them. Mark the tests that
use them ``postgres``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import Iterator

import pytest

__all__ = ["postgres_database", "postgres_url", "require_postgres"]

_ADMIN_URL = os.environ.get("DURAPOD_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def require_postgres(reason: str) -> None:
    """Skip the calling test because Postgres cannot be used (fail instead when DURAPOD_REQUIRE_POSTGRES=1)."""
    if os.environ.get("DURAPOD_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}, and DURAPOD_REQUIRE_POSTGRES=1 says the Postgres tests must run")
    pytest.skip(f"{reason} (set DURAPOD_REQUIRE_POSTGRES=1 to fail instead)")


def _admin(statement: str) -> None:
    """Run one statement on the server's admin database, on a thread of its own (the session fixture may
    be first asked for inside a running event loop)."""
    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(_ADMIN_URL, timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, run()).result()


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database made for this test session on the Postgres server (dropped afterwards)."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        require_postgres("asyncpg is not installed")
    database = f"durapod_test_{uuid.uuid4().hex[:12]}"
    try:
        _admin(f'CREATE DATABASE "{database}"')
    except (OSError, TimeoutError) as exc:
        require_postgres(f"no PostgreSQL server at {_ADMIN_URL}: {exc}")
    try:
        yield _with_database(_ADMIN_URL, database)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """``postgresql://.../<session database>?schema=t_<random>``: a fresh schema for this test.

    A plain (not async) fixture, so that async fixtures can ask for it with ``request.getfixturevalue``.
    The schema is left in the session's database, which is dropped at the end.
    """
    return f"{postgres_database}?schema=t_{uuid.uuid4().hex[:12]}"
