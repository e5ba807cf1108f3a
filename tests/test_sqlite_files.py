"""The SQLite file itself: created private (0600, with its -wal and -shm files)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from durapod import Client, SQLiteStore


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
