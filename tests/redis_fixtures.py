"""Fixtures for tests that need a real Redis: one ``redis-server`` per test session (pytest-redis).

Make them visible with ``from tests.redis_fixtures import *  # noqa: F403`` in ``tests/conftest.py`` (or import
``redis_server_process``, ``redis_proc``, ``redis_url`` and ``redis_store`` into a test module: ``redis_proc``
asks for ``redis_server_process`` by name). Mark the tests that use them ``redis``.

Without ``redis-server`` on PATH those tests are skipped, unless ``DURAPOD_REQUIRE_REDIS=1`` (CI sets it):
then they fail, so that a CI machine without Redis cannot pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
from pytest_redis import factories
from pytest_redis.executor import RedisExecutor
from redis import Redis as SyncRedis

from durapod.stores.redis import RedisStore

__all__ = ["redis_available", "redis_proc", "redis_server_process", "redis_store", "redis_url", "require_redis"]

#: The raw pytest-redis fixture: a redis-server on a free port for the whole session. Use ``redis_proc``,
#: which skips (or fails) first when there is no redis-server.
# (pytest-redis documents port=None as "any free port", but its type hints leave None out)
redis_server_process = factories.redis_proc(port=None)  # type: ignore[arg-type]


def redis_available() -> bool:
    """True if a ``redis-server`` executable is on PATH."""
    return shutil.which("redis-server") is not None


def require_redis() -> None:
    """Skip the calling test when there is no redis-server (fail instead when DURAPOD_REQUIRE_REDIS=1)."""
    if redis_available():
        return
    message = "redis-server is not on PATH"
    if os.environ.get("DURAPOD_REQUIRE_REDIS") == "1":
        pytest.fail(f"{message}, and DURAPOD_REQUIRE_REDIS=1 says the Redis tests must run")
    pytest.skip(f"{message} (set DURAPOD_REQUIRE_REDIS=1 to fail instead)")


@pytest.fixture(scope="session")
def redis_proc(request: pytest.FixtureRequest) -> RedisExecutor:
    """The session's ``redis-server`` (a pytest-redis executor with ``.host`` and ``.port``)."""
    require_redis()
    executor: RedisExecutor = request.getfixturevalue("redis_server_process")
    return executor


@pytest.fixture
def redis_url(redis_proc: object) -> str:
    """``redis://127.0.0.1:<port>/0`` of the session's server, its database flushed for this test.

    A plain (not async) fixture, so that async fixtures can ask for it with ``request.getfixturevalue``.
    """
    url = f"redis://{redis_proc.host}:{redis_proc.port}/0"  # type: ignore[attr-defined]
    with SyncRedis.from_url(url) as client:
        client.flushdb()
    return url


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    """A RedisStore on the session's server under a fresh key prefix; closed after the test."""
    store = RedisStore.from_url(redis_url, key_prefix=f"test-{uuid.uuid4().hex[:8]}:")
    try:
        yield store
    finally:
        await store.close()
