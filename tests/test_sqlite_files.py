"""The SQLite file itself: created private (0600, with its -wal and -shm files); deleted, replaced or
damaged under a store, it is reported instead of losing writes silently."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from durapod import Client, DurableAgent, JobContext, SQLiteStore, StoreError
from durapod.stores import _sqlite_worker as sqlite_worker
from durapod.stores._sqlite_checkpoint import _Checkpointer


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The usual umask (022), under which a file made without care is world-readable (0644)."""
    saved = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("usual_umask")
async def test_the_database_and_its_wal_and_shm_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with Client(SQLiteStore(path)) as client:
        await client.submit("job-1", {"secret": "input"})
        assert await client.status("job-1") is not None  # the reader has the file open too
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(file.exists() for file in files)
        assert {file.name: oct(mode(file)) for file in files} == {file.name: "0o600" for file in files}


@pytest.mark.usefixtures("usual_umask")
async def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with Client(SQLiteStore(path)) as client:
        await client.submit("job-1")
    path.chmod(0o640)  # the owner shares it with a group on purpose
    async with Client(SQLiteStore(path)) as client:
        await client.submit("job-2")
    assert mode(path) == 0o640


# -- the file deleted, replaced or damaged under the store ------------------------------------------------


def remove_database(path: Path) -> None:
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        (path.parent / name).unlink(missing_ok=True)


async def test_a_database_deleted_under_a_running_store_stops_its_writes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteStore(path)
    client = Client(store)
    try:
        await client.submit("before")
        assert await client.status("before") is not None
        remove_database(path)
        with pytest.raises(StoreError) as refused:
            await client.submit("after")
        assert str(path) in str(refused.value)
        assert "deleted" in str(refused.value)
        # a new file at the path changes nothing: this store writes nowhere any more, and says so
        async with Client(SQLiteStore(path)) as fresh:
            await fresh.submit("elsewhere")
        for attempt in (client.submit("later"), client.status("before")):
            with pytest.raises(StoreError, match="nothing more is written"):
                await attempt
    finally:
        await store.close()
    async with Client(SQLiteStore(path)) as check:
        assert [job.id for job in await check.list()] == ["elsewhere"]


async def test_a_database_replaced_under_a_running_store_is_reported(tmp_path: Path) -> None:
    path, other = tmp_path / "jobs.db", tmp_path / "other.db"
    async with Client(SQLiteStore(other)) as elsewhere:
        await elsewhere.submit("theirs")
    async with Client(SQLiteStore(path)) as client:
        await client.submit("mine")
        with sqlite3.connect(path) as conn:  # (a file replaced next to a WAL it does not own would read it)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.replace(other, path)
        with pytest.raises(StoreError) as refused:
            await client.submit("more")
        assert str(path) in str(refused.value) and "replaced" in str(refused.value)
    async with Client(SQLiteStore(path)) as check:
        assert [job.id for job in await check.list()] == ["theirs"]  # nothing of ours went into their file


def spoil_pages(path: Path) -> None:
    """Write garbage over a few pages in the middle of the (checkpointed) file: its jobs table."""
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = path.stat().st_size // page_size
    assert pages > 10
    with path.open("r+b") as file:
        for page in range(pages // 2, pages // 2 + 3):
            file.seek(page * page_size + 100)
            file.write(bytes(range(256)) * 8)


async def test_a_database_with_garbage_pages_is_reported_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with Client(SQLiteStore(path)) as client:
        for index in range(300):
            await client.submit(f"job-{index:03d}", {"text": "x" * 200})
    spoil_pages(path)
    async with Client(SQLiteStore(path)) as client:
        with pytest.raises(StoreError) as refused:
            await client.list()
    assert str(path) in str(refused.value)
    assert "is damaged" in str(refused.value)


async def test_a_worker_whose_file_is_deleted_reports_it_instead_of_completing_into_nowhere(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    entered, release = asyncio.Event(), asyncio.Event()

    async def wait_for_release() -> str:
        entered.set()
        await release.wait()
        return "drafted"

    async def agent(text: str, ctx: JobContext) -> str:
        return await ctx.step("draft", wait_for_release)

    async with DurableAgent(agent, SQLiteStore(path), name="drafts", lease_ttl=1.0) as durable:
        await durable.start("job-1", "x")
        await asyncio.wait_for(entered.wait(), timeout=10)
        remove_database(path)
        release.set()
        with pytest.raises(StoreError) as refused:
            await asyncio.wait_for(durable.wait("job-1"), timeout=10)
        assert str(path) in str(refused.value) and "deleted" in str(refused.value)
    assert not path.exists()  # nothing was written into a new file behind the caller's back


async def test_the_log_is_copied_into_the_file_by_a_thread_of_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No write waits for SQLite to copy its write-ahead log into the database file: the store's
    checkpointer thread does it, on a connection of its own, while the store is open."""
    made: list[_Checkpointer] = []

    class Checkpointer(_Checkpointer):
        interval = 0.0  # every commit asks for a checkpoint (by default, at most one in 10 ms)

        def __init__(self, path: str, conn: sqlite3.Connection) -> None:
            super().__init__(path, conn)
            made.append(self)

    monkeypatch.setattr(sqlite_worker, "_Checkpointer", Checkpointer)
    path = tmp_path / "jobs.db"
    store = SQLiteStore(path)
    try:
        await Client(store).submit("job-1")
        [checkpointer] = made

        def checkpointed() -> None:
            with checkpointer.ran:
                assert checkpointer.ran.wait_for(lambda: checkpointer.runs >= 1, timeout=10)

        await asyncio.to_thread(checkpointed)
        # the database file alone, without its log, holds the job: the log was copied into it
        alone = tmp_path / "alone.db"
        await asyncio.to_thread(shutil.copyfile, path, alone)
        conn = sqlite3.connect(alone)
        try:
            assert conn.execute("SELECT id FROM jobs").fetchall() == [("job-1",)]
        finally:
            conn.close()
    finally:
        await store.close()
