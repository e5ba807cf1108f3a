"""Shared fixtures: ``store`` runs a test once per store kind (see ``STORE_FACTORIES``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from durapod.stores import open_store
from durapod.stores.base import Store
from durapod.stores.memory import MemoryStore
from durapod.stores.redis import RedisStore
from durapod.stores.sqlite import SQLiteStore
from tests.postgres_fixtures import postgres_database, postgres_url
from tests.redis_fixtures import redis_proc, redis_server_process, redis_store, redis_url

__all__ = [
    "STORE_FACTORIES",
    "STORE_MARKS",
    "postgres_database",
    "postgres_url",
    "redis_proc",
    "redis_server_process",
    "redis_store",
    "redis_url",
]

#: Builds an empty store for one test. It gets the test's request, so that it can pull the fixtures it
#: needs (``request.getfixturevalue("tmp_path")``, a Redis server...).
StoreFactory = Callable[[pytest.FixtureRequest], Awaitable[Store]]


async def _memory_store(request: pytest.FixtureRequest) -> Store:
    return MemoryStore()


async def _sqlite_store(request: pytest.FixtureRequest) -> Store:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return SQLiteStore(tmp_path / "jobs.db")


async def _redis_store(request: pytest.FixtureRequest) -> Store:
    url: str = request.getfixturevalue("redis_url")  # the session's redis-server, flushed for this test
    return RedisStore.from_url(url, key_prefix=f"c-{uuid.uuid4().hex[:8]}:")


async def _postgres_store(request: pytest.FixtureRequest) -> Store:
    url: str = request.getfixturevalue("postgres_url")  # the session's database, a fresh schema for this test
    return open_store(url)


#: Every kind of store the ``store`` fixture runs a test on. Add a kind here (with its marks in
#: STORE_MARKS, e.g. ``[pytest.mark.redis]``) and every test that takes ``store`` runs on it too.
STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": _memory_store,
    "sqlite": _sqlite_store,
    "redis": _redis_store,
    "postgres": _postgres_store,
}
STORE_MARKS: dict[str, list[pytest.MarkDecorator]] = {"redis": [pytest.mark.redis], "postgres": [pytest.mark.postgres]}


@pytest.fixture(params=[pytest.param(kind, marks=STORE_MARKS.get(kind, []), id=kind) for kind in STORE_FACTORIES])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A fresh, empty store of each kind in turn; closed after the test."""
    made = await STORE_FACTORIES[request.param](request)
    try:
        yield made
    finally:
        await made.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """With ``DURAPOD_REQUIRE_REDIS=1`` or ``DURAPOD_REQUIRE_POSTGRES=1`` (CI), a skipped test of that kind fails."""
    report = yield
    for marker, variable, what in (
        ("redis", "DURAPOD_REQUIRE_REDIS", "Redis"),
        ("postgres", "DURAPOD_REQUIRE_POSTGRES", "Postgres"),
    ):
        if (
            os.environ.get(variable) == "1"
            and getattr(report, "skipped", False)
            and item.get_closest_marker(marker) is not None
        ):
            report.outcome = "failed"  # type: ignore[attr-defined]
            report.longrepr = f"{item.nodeid}: a {what} test was skipped, and {variable}=1"  # type: ignore[attr-defined]
    return report
