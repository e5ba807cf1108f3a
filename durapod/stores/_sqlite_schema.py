"""The SQLite file's format: tables, migrations, and opening a connection to it.

Schema (``PRAGMA user_version`` 3): ``jobs`` holds each job's JSON record (its fields that differ from their
defaults: ``_codec._job_json``) next to the queryable columns, and the seq of its latest ``job_status``
event, which is derived from the row (``status_seq``); ``steps``, ``events`` and ``controls`` hold each
job's journal, event log and pending control requests; ``schedules`` holds each schedule's record;
``workers`` the worker ids in use. How a job maps onto its row is in :mod:`durapod.stores._codec` (shared
with the Postgres store).

A connection runs in WAL mode with the ``synchronous`` level the store's durability asks for. A new file
is created readable by its owner only (mode 0600); SQLite gives the ``-wal`` and ``-shm`` files the mode
of the database file.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import threading
from typing import Final

from durapod.errors import StoreError

_SCHEMA_1: Final = (
    """CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        owner TEXT,
        lease_until INTEGER,
        epoch INTEGER NOT NULL,
        version INTEGER NOT NULL,
        steps INTEGER NOT NULL,
        record TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX jobs_status ON jobs (status, created_at)",
    "CREATE INDEX jobs_agent ON jobs (agent, status, created_at)",
    "CREATE INDEX jobs_owner ON jobs (owner)",
    "CREATE INDEX jobs_created ON jobs (created_at)",
    """CREATE TABLE steps (
        job_id TEXT NOT NULL, idx INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (job_id, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE events (
        job_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (job_id, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE controls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        requested_at INTEGER NOT NULL
    )""",
    "CREATE INDEX controls_job ON controls (job_id)",
    # the journal's length is the job's ``steps``: kept by sqlite itself, so a step is one statement
    """CREATE TRIGGER steps_count AFTER INSERT ON steps BEGIN
        UPDATE jobs SET steps = NEW.idx + 1 WHERE id = NEW.job_id;
    END""",
    """CREATE TABLE schedules (
        agent TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (agent, name)
    ) WITHOUT ROWID""",
)
_SCHEMA_2: Final = (
    # steps may be journaled out of order (steps started together finish in any order), and a step is one
    # small row: the journal's length is counted when a job is read, not kept in its row
    "DROP TRIGGER steps_count",
    # every lookup by owner also names the job ids: the primary key serves it, and writes skip an index
    "DROP INDEX jobs_owner",
    # who runs under which worker id, so that two live workers never share one
    """CREATE TABLE workers (
        id TEXT PRIMARY KEY, token TEXT NOT NULL, info TEXT NOT NULL, lease_until INTEGER NOT NULL
    ) WITHOUT ROWID""",
)
_SCHEMA_3: Final = (
    # a job's latest ``job_status`` event is derived from its row, not written again: ``status_seq`` is
    # its seq (NULL: none) and its job the row's record; a write that replaces the record first copies
    # that event into ``events`` (see _sqlite_ops._KEEP_STATUS_EVENT_SQL)
    "ALTER TABLE jobs ADD COLUMN status_seq INTEGER",
)
#: ``_MIGRATIONS[n]`` takes a file from schema version ``n`` to ``n + 1``; append, never edit.
_MIGRATIONS: Final = (_SCHEMA_1, _SCHEMA_2, _SCHEMA_3)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


def _connect(path: str, *, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
    """Open ``path`` in WAL mode and create or check its schema."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, cached_statements=256)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"SQLite store {path!r} has schema version {version}, newer than the version"
                    f" {SCHEMA_VERSION} this durapod knows; upgrade durapod"
                )
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            if version < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_for_checkpoints(file: str, *, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
    """A plain connection to a store's existing file (``file`` absolute), for the checkpointer thread: its
    checkpoints sync the files as the store's ``synchronous`` level says. It never creates the file."""
    uri = pathlib.Path(file).as_uri() + "?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn


def _create_private(file: str) -> None:
    """Create ``file`` (if missing) readable and writable by its owner only, before SQLite opens it: jobs
    hold inputs, results and error messages that other users of the machine must not read."""
    if file in (":memory:", ""):
        return
    descriptor = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(descriptor)


def _check_integrity(conn: sqlite3.Connection, path: str) -> None:
    """``PRAGMA quick_check``: a file with damaged pages is reported when it is opened, instead of listings
    that silently miss the jobs on those pages."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise StoreError(
            f"SQLite store {path!r} is damaged (PRAGMA quick_check: {'; '.join(problems)}); restore it from a"
            " backup, or recover what it holds with the sqlite3 shell's .recover"
        )


class _IntegrityCheck:
    """``PRAGMA quick_check`` once per store, by whichever of its connections opens first (until it
    passes: a damaged file fails every attempt to open it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passed = False

    def run(self, conn: sqlite3.Connection, path: str) -> None:
        with self._lock:
            if not self._passed:
                _check_integrity(conn, path)
                self._passed = True


def _open(
    path: str, file: str, synchronous: str, busy_timeout: float, integrity: _IntegrityCheck | None = None
) -> sqlite3.Connection:
    try:
        if not os.path.exists(file):
            _create_private(file)
        conn = _connect(file, synchronous=synchronous, busy_timeout=busy_timeout)
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot open SQLite store {path!r}: {exc}") from exc
    if integrity is not None:
        try:
            integrity.run(conn, path)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"SQLite store {path!r} is damaged: {exc}") from exc
        except BaseException:
            conn.close()
            raise
    return conn
