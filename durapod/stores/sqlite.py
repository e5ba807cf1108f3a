"""SQLiteStore: the store contract in one SQLite file, with group commit across jobs.

Every write is queued to one writer thread that owns the write connection. The writer takes everything
queued (a batch), runs it in one ``BEGIN IMMEDIATE`` transaction, commits once, and then wakes the
awaiting coroutines of each event loop with one ``call_soon_threadsafe``. A refused operation (a
:class:`VersionConflict`, a fenced step) gets its own exception and the rest of the batch commits: every
operation makes its checks before its first write, so a refusal has nothing to undo (this is checked; an
operation that breaks the rule, or an unexpected failure such as a full disk, makes the writer run the
batch again one operation per transaction, so each still gets its own answer). Reads run on a second
connection in a reader thread, batched the same way. No sqlite call ever runs on the event loop.

Schema (``PRAGMA user_version`` 1): ``jobs`` holds each job's JSON record (``Job.model_dump_json()``)
next to the queryable columns; times are integer microseconds since the Unix epoch (UTC) so that they
sort and compare exactly. The record is the truth for everything except ``owner``, ``lease_until``,
``epoch``, ``version`` and ``steps``: those columns are what the store maintains (a lease renewal or a
journaled step updates the column only) and are applied onto the decoded job on every read.

Durability: with ``durability="normal"`` (WAL, ``synchronous=NORMAL``) a committed write survives a
process crash; ``"full"`` (``synchronous=FULL``) also survives power loss, at the price of an fsync per
batch. Several processes on one host may share the file: every check (version, epoch, lease, journal
length) is made inside the writing transaction, so it holds across processes.

Cancellation: a coroutine cancelled while it awaits a write does not cancel the write. The write may
have been committed or not; the caller cannot tell, exactly as with a lost reply from a server. Re-read
the job (or retry the compare-and-set, which fails safely) to find out.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import json
import os
import queue
import re
import sqlite3
import threading
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeVar

from pydantic import JsonValue

from durapod.errors import (
    CorruptRecord,
    DurapodError,
    InvalidInput,
    JobNotFound,
    StaleOwnerError,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)
from durapod.models import SETTLED, Job, JobStatus, StepRecord
from durapod.schedules import ScheduleState
from durapod.stores.base import ControlKind, ControlRequest, Page, Store, decode_cursor, encode_cursor, matches

__all__ = ["SQLiteStore"]

T = TypeVar("T")

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
#: ``_MIGRATIONS[n]`` takes a file from schema version ``n`` to ``n + 1``; append, never edit.
_MIGRATIONS: Final = (_SCHEMA_1,)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

# the columns every job read selects, in the order _decode_job expects
_JOB_COLUMNS: Final = "id, record, owner, lease_until, epoch, version, steps"
_CLAIMABLE_SQL: Final = (
    "status IN ('pending', 'running') AND (owner IS NULL OR lease_until IS NULL OR lease_until < :now"
    " OR (:reclaim_own AND owner = :owner))"
)
_SAVE_SQL: Final = """
    UPDATE jobs SET
        agent = ?3, status = ?4, created_at = ?5, epoch = ?7, version = ?8, record = ?11,
        lease_until = CASE WHEN ?10 THEN NULL WHEN owner IS ?6 AND epoch = ?7 THEN lease_until ELSE ?9 END,
        owner = ?6
    WHERE id = ?1 AND version = ?2
    RETURNING lease_until, steps"""
_APPEND_STEP_SQL: Final = """
    INSERT INTO steps (job_id, idx, record)
    SELECT ?1, ?2, ?3 FROM jobs
    WHERE id = ?1 AND status = 'running' AND epoch = ?4
        AND coalesce((SELECT max(idx) FROM steps WHERE job_id = ?1), -1) + 1 = ?2"""
# metadata keys that can be put in a JSON path as they are; others are filtered in Python only
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_\-]+")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _optional_micros(moment: datetime | None) -> int | None:
    return None if moment is None else _micros(moment)


def _reason(exc: Exception) -> str:
    """An exception's message on one line, short enough for a log."""
    reason = " ".join(str(exc).split())
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _decode_job(row: Sequence[Any]) -> Job:
    """Decode a row of ``_JOB_COLUMNS`` and apply the columns the store maintains."""
    job_id, record, owner, lease_micros, epoch, version, steps = row
    try:
        job = Job.model_validate_json(record)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise CorruptRecord(job_id, _reason(exc)) from None
    if job.id != job_id:
        raise CorruptRecord(job_id, f"the record is of job {job.id!r}")
    lease_until = None if lease_micros is None else _moment(lease_micros)
    if (job.owner, job.lease_until, job.epoch, job.version, job.steps) != (
        owner,
        lease_until,
        epoch,
        version,
        steps,
    ):
        job = job.model_copy(
            update={"owner": owner, "lease_until": lease_until, "epoch": epoch, "version": version, "steps": steps}
        )
    return job


def _claimed(job: Job, owner: str, lease_until: datetime) -> Job:
    recoveries = job.recoveries + 1 if job.status == JobStatus.RUNNING else job.recoveries
    return job.evolve(owner=owner, lease_until=lease_until, epoch=job.epoch + 1, recoveries=recoveries)


def _write_claim(conn: sqlite3.Connection, job: Job) -> None:
    conn.execute(
        "UPDATE jobs SET owner = ?, lease_until = ?, epoch = ?, version = ?, record = ? WHERE id = ?",
        (job.owner, _optional_micros(job.lease_until), job.epoch, job.version, job.model_dump_json(), job.id),
    )


def _encode_json(value: object, what: str, job_id: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(what, value, str(exc), job_id) from None


# ---------------------------------------------------------------------------------------------------
# Operations. Each runs in a worker thread with that thread's connection, inside the batch's transaction
# (writes). An operation refuses by raising a DurapodError, and only before its first write: so a refusal
# needs no rollback, and the batch's other operations commit. (A savepoint per operation would cost three
# statements, and as many GIL hand-overs, instead of one.) The worker checks the rule as it goes.


def _op_create(conn: sqlite3.Connection, values: tuple[Any, ...]) -> Job | None:
    inserted = conn.execute(
        "INSERT INTO jobs (id, agent, status, created_at, owner, lease_until, epoch, version, steps, record)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        values,
    ).rowcount
    if inserted:
        return None
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (values[0],)).fetchone()
    return _decode_job(row)


def _op_get(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _decode_job(row)


def _op_save(conn: sqlite3.Connection, values: tuple[Any, ...]) -> tuple[int | None, int]:
    job_id, expected_version, version = values[0], values[1], values[7]
    if version == expected_version + 1:
        row = conn.execute(_SAVE_SQL, values).fetchone()
        if row is not None:
            return row[0], row[1]
    found = conn.execute("SELECT version FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if found is None:
        raise JobNotFound(job_id)
    raise VersionConflict(job_id, expected_version, found[0])


def _op_list(
    conn: sqlite3.Connection,
    statuses: tuple[str, ...] | None,
    agent: str | None,
    metadata: Mapping[str, JsonValue] | None,
    limit: int | None,
    after: tuple[int, str] | None,
) -> tuple[list[Job], bool]:
    """The page's jobs and whether more follow."""
    where: list[str] = []
    params: list[Any] = []
    if statuses is not None:
        where.append(f"status IN ({', '.join('?' * len(statuses))})")
        params.extend(statuses)
    if agent is not None:
        where.append("agent = ?")
        params.append(agent)
    if after is not None:
        where.append("(created_at, id) < (?, ?)")
        params.extend(after)
    for key, value in (metadata or {}).items():
        # narrows the scan; ``matches`` below decides. An undecodable record passes so that it is reported.
        if isinstance(value, str) and _PLAIN_KEY.fullmatch(key):
            where.append("(NOT json_valid(record) OR json_extract(record, ?) = ?)")
            params.extend((f'$.metadata."{key}"', value))
    sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC"
    if limit is not None and not metadata:
        sql += " LIMIT ?"
        params.append(limit + 1)
    found: list[Job] = []
    for row in conn.execute(sql, params):
        job = _decode_job(row)
        if metadata and not matches(job, None, None, metadata):
            continue
        found.append(job)
        if limit is not None and len(found) > limit:
            return found[:limit], True
    return found, False


def _op_delete(conn: sqlite3.Connection, job_id: str) -> bool:
    for table in ("steps", "events", "controls"):
        conn.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
    return conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0


def _op_append_step(conn: sqlite3.Connection, job_id: str, index: int, epoch: int, record: str) -> None:
    if conn.execute(_APPEND_STEP_SQL, (job_id, index, record, epoch)).rowcount:
        return  # the steps_count trigger has set the job's count
    found = conn.execute("SELECT status, epoch FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if found is None:
        raise JobNotFound(job_id)
    status, current_epoch = found
    if status != JobStatus.RUNNING:
        raise StaleOwnerError(job_id, epoch, current_epoch, f"job is {status}")
    if current_epoch != epoch:
        raise StaleOwnerError(job_id, epoch, current_epoch, "another worker claimed it")
    (length,) = conn.execute("SELECT count(*) FROM steps WHERE job_id = ?", (job_id,)).fetchone()
    raise StaleOwnerError(job_id, epoch, current_epoch, f"step #{index} but journal has {length}")


def _op_read_steps(conn: sqlite3.Connection, job_id: str) -> list[StepRecord]:
    steps: list[StepRecord] = []
    for index, record in conn.execute("SELECT idx, record FROM steps WHERE job_id = ? ORDER BY idx", (job_id,)):
        try:
            steps.append(StepRecord.model_validate_json(record))
        except (ValueError, TypeError) as exc:
            raise CorruptRecord(f"{job_id}/steps/{index}", _reason(exc)) from None
    return steps


def _op_append_events(conn: sqlite3.Connection, rows: list[tuple[str, int, str]]) -> None:
    # a seq already logged keeps its first event: readers may have seen it
    conn.executemany("INSERT OR IGNORE INTO events (job_id, seq, record) VALUES (?, ?, ?)", rows)


def _op_read_events(conn: sqlite3.Connection, job_id: str, after: int) -> list[dict[str, JsonValue]]:
    events: list[dict[str, JsonValue]] = []
    rows = conn.execute("SELECT seq, record FROM events WHERE job_id = ? AND seq > ? ORDER BY seq", (job_id, after))
    for seq, record in rows:
        try:
            event = json.loads(record)
        except (ValueError, TypeError) as exc:
            raise CorruptRecord(f"{job_id}/events/{seq}", _reason(exc)) from None
        if not isinstance(event, dict):
            raise CorruptRecord(f"{job_id}/events/{seq}", "not a JSON object")
        events.append(event)
    return events


def _op_claim(
    conn: sqlite3.Connection, job_id: str, owner: str, lease_until: datetime, now: int, reclaim_own: bool
) -> Job | None:
    row = conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = :id AND {_CLAIMABLE_SQL}",
        {"id": job_id, "owner": owner, "now": now, "reclaim_own": reclaim_own},
    ).fetchone()
    if row is None:
        return None
    claimed = _claimed(_decode_job(row), owner, lease_until)
    _write_claim(conn, claimed)
    return claimed


def _op_claim_orphans(
    conn: sqlite3.Connection,
    agent: str | None,
    owner: str,
    lease_until: datetime,
    now: int,
    limit: int,
    reclaim_own: bool,
) -> list[Job]:
    claimed: list[Job] = []
    after = (-(2**62), "")
    sql = f"""SELECT created_at, {_JOB_COLUMNS} FROM jobs
        WHERE {_CLAIMABLE_SQL} AND (:agent IS NULL OR agent = :agent) AND (created_at, id) > (:created, :id)
        ORDER BY created_at, id LIMIT :limit"""
    while len(claimed) < limit:
        params = {"owner": owner, "now": now, "reclaim_own": reclaim_own, "agent": agent}
        params.update(created=after[0], id=after[1])
        rows = conn.execute(sql, {**params, "limit": limit - len(claimed)}).fetchall()
        if not rows:
            break
        for created, *columns in rows:
            after = (created, columns[0])
            try:
                job = _decode_job(columns)
            except CorruptRecord:
                continue  # one undecodable job must not stop every worker from taking the others
            claimed.append(job := _claimed(job, owner, lease_until))
            _write_claim(conn, job)
    return claimed


def _op_renew_leases(conn: sqlite3.Connection, owner: str, job_ids: str, lease_until: int) -> set[str]:
    rows = conn.execute(
        "UPDATE jobs SET lease_until = ? WHERE owner = ? AND status IN ('pending', 'running')"
        " AND id IN (SELECT value FROM json_each(?)) RETURNING id",
        (lease_until, owner, job_ids),
    ).fetchall()
    return {job_id for (job_id,) in rows}


def _op_release(conn: sqlite3.Connection, job_id: str, owner: str) -> bool:
    return conn.execute("UPDATE jobs SET lease_until = NULL WHERE id = ? AND owner = ?", (job_id, owner)).rowcount > 0


def _op_request_control(conn: sqlite3.Connection, job_id: str, kind: str, payload: str, requested_at: int) -> None:
    inserted = conn.execute(
        "INSERT INTO controls (job_id, kind, payload, requested_at)"
        " SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?1)",
        (job_id, kind, payload, requested_at),
    ).rowcount
    if not inserted:
        raise JobNotFound(job_id)


def _op_take_controls(conn: sqlite3.Connection, job_ids: str) -> list[ControlRequest]:
    rows = conn.execute(
        "SELECT id, job_id, kind, payload, requested_at FROM controls"
        " WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY requested_at, id",
        (job_ids,),
    ).fetchall()
    taken: list[ControlRequest] = []
    for control_id, job_id, kind, payload, requested_at in rows:
        try:
            decoded = json.loads(payload)
        except (ValueError, TypeError) as exc:
            raise CorruptRecord(f"controls/{control_id}", _reason(exc)) from None
        taken.append(ControlRequest(job_id, kind, _moment(requested_at), decoded))
    if rows:
        conn.execute(
            "DELETE FROM controls WHERE id IN (SELECT value FROM json_each(?))", (json.dumps([row[0] for row in rows]),)
        )
    return taken


def _decode_schedule(agent: str, name: str, record: str) -> ScheduleState:
    try:
        return ScheduleState.model_validate_json(record)
    except (ValueError, TypeError) as exc:
        raise CorruptRecord(f"schedules/{agent}/{name}", _reason(exc)) from None


def _op_get_schedule(conn: sqlite3.Connection, agent: str, name: str) -> ScheduleState | None:
    row = conn.execute("SELECT record FROM schedules WHERE agent = ? AND name = ?", (agent, name)).fetchone()
    return None if row is None else _decode_schedule(agent, name, row[0])


def _op_save_schedule(
    conn: sqlite3.Connection, agent: str, name: str, version: int, expected_version: int | None, record: str
) -> None:
    if expected_version is None:
        written = conn.execute(
            "INSERT INTO schedules (agent, name, version, record) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (agent, name, version, record),
        ).rowcount
    elif version == expected_version + 1:
        written = conn.execute(
            "UPDATE schedules SET version = ?, record = ? WHERE agent = ? AND name = ? AND version = ?",
            (version, record, agent, name, expected_version),
        ).rowcount
    else:
        written = 0
    if not written:
        found = conn.execute("SELECT version FROM schedules WHERE agent = ? AND name = ?", (agent, name)).fetchone()
        raise VersionConflict(
            f"schedule {agent}/{name}",
            0 if expected_version is None else expected_version,
            None if found is None else found[0],
        )


def _op_list_schedules(conn: sqlite3.Connection, agent: str | None) -> list[ScheduleState]:
    rows = conn.execute(
        "SELECT agent, name, record FROM schedules WHERE ?1 IS NULL OR agent = ?1 ORDER BY agent, name", (agent,)
    )
    return [_decode_schedule(*row) for row in rows]


def _op_delete_schedule(conn: sqlite3.Connection, agent: str, name: str) -> bool:
    return conn.execute("DELETE FROM schedules WHERE agent = ? AND name = ?", (agent, name)).rowcount > 0


# ---------------------------------------------------------------------------------------------------
# Worker threads


class _Stop:
    """The last item a worker takes: it closes its connection, then resolves ``done`` (if any)."""

    __slots__ = ("done",)

    def __init__(self, done: asyncio.Future[None] | None) -> None:
        self.done = done


_Work = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
_Item = _Work | _Stop
# (future, succeeded, result or exception)
_Outcome = tuple["asyncio.Future[Any]", bool, Any]


def _settle(outcomes: list[_Outcome]) -> None:
    """Resolve futures on their own loop. A future its caller cancelled is done already and skipped."""
    for future, succeeded, value in outcomes:
        if future.done():
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)


def _deliver(outcomes: list[_Outcome]) -> None:
    """One ``call_soon_threadsafe`` per event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits these any more
            loop.call_soon_threadsafe(_settle, settled)


def _store_error(path: str, exc: BaseException) -> StoreError:
    error: StoreError
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        error = StoreUnavailable(f"SQLite store {path!r} stayed locked: {exc}")
    else:
        error = StoreError(f"SQLite store {path!r}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


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


def _open(path: str, file: str, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
    try:
        return _connect(file, synchronous=synchronous, busy_timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite store {path!r}: {exc}") from exc


class _Worker:
    """A thread that owns one connection and runs the operations queued for it, a batch at a time."""

    max_batch = 1000

    def __init__(self, path: str, role: str, connect: Callable[[], sqlite3.Connection], *, writes: bool) -> None:
        self.queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._path = path
        self._connect = connect
        self._writes = writes
        self._conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._main, name=f"durapod-sqlite-{role}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        stop: _Stop | None = None
        try:
            while stop is None:
                batch: list[_Work] = []
                item = self.queue.get()
                while True:
                    if isinstance(item, _Stop):
                        stop = item
                        break
                    batch.append(item)
                    if len(batch) >= self.max_batch:
                        break
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    try:
                        outcomes = self._run(batch)
                    except Exception as exc:  # a bug here must not stop the thread nor strand the callers
                        outcomes = [(future, False, _store_error(self._path, exc)) for _, _, future in batch]
                    _deliver(outcomes)
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if stop is not None and stop.done is not None:
                _deliver([(stop.done, True, None)])

    def _run(self, batch: list[_Work]) -> list[_Outcome]:
        if self._conn is None:
            try:
                self._conn = self._connect()
            except StoreError as exc:  # the file cannot be opened: the next batch tries again
                return [(future, False, StoreError(str(exc))) for _, _, future in batch]
        conn = self._conn
        if not self._writes:
            return [self._run_one(conn, op, args, future) for op, args, future in batch]
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # another process held the write lock beyond busy_timeout
            return [(future, False, _store_error(self._path, exc)) for _, _, future in batch]
        try:
            return self._run_together(conn, batch)
        except Exception:
            # something failed that should not (an I/O error, a full disk, a refusal after a write):
            # nothing of the batch is committed, so run each operation alone to give each its own answer
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [self._run_alone(conn, op, args, future) for op, args, future in batch]

    def _run_one(
        self, conn: sqlite3.Connection, op: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]
    ) -> _Outcome:
        try:
            return (future, True, op(conn, *args))
        except DurapodError as exc:
            return (future, False, exc)
        except Exception as exc:
            return (future, False, _store_error(self._path, exc))

    def _run_together(self, conn: sqlite3.Connection, batch: list[_Work]) -> list[_Outcome]:
        """Group commit: the whole batch in the transaction begun by the caller, committed once."""
        outcomes: list[_Outcome] = []
        for op, args, future in batch:
            changes = conn.total_changes
            try:
                outcomes.append((future, True, op(conn, *args)))
            except DurapodError as exc:
                if conn.total_changes != changes:
                    raise  # refused after writing: only a transaction of its own can undo it
                outcomes.append((future, False, exc))
        conn.execute("COMMIT")
        return outcomes

    def _run_alone(
        self, conn: sqlite3.Connection, op: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any]
    ) -> _Outcome:
        """One operation in a transaction of its own, rolled back unless it succeeds."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return (future, False, _store_error(self._path, exc))
        outcome = self._run_one(conn, op, args, future)
        try:
            conn.execute("COMMIT" if outcome[1] else "ROLLBACK")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return (future, False, _store_error(self._path, exc))
        return outcome

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


class SQLiteStore(Store):
    """Jobs, journals, events, leases and control requests in one SQLite file (WAL mode).

    The embedded default for anything that must survive a restart. Writes from many coroutines are
    committed together (group commit): each caller continues once its own write is committed. Several
    processes on one host may share the file. Threads start on the first operation; the file is created
    (or its schema checked) then, so a bad path fails the first operation with :class:`StoreError`.

    Args:
        path: the database file (created if missing). ``":memory:"`` keeps everything in memory.
        durability: ``"normal"`` (``synchronous=NORMAL``: committed writes survive a process crash) or
            ``"full"`` (``synchronous=FULL``: they also survive power loss; an fsync per commit).
        busy_timeout: seconds to wait for another process's write lock before
            :class:`StoreUnavailable`.

    Raises:
        ValueError: ``durability`` or ``busy_timeout`` is not valid (naming the value).

    Example:
        >>> store = SQLiteStore("jobs.db")
        >>> store
        SQLiteStore('jobs.db')
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Literal["normal", "full"] = "normal",
        busy_timeout: float = 30.0,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ValueError(f"invalid durability {durability!r}: expected 'normal' or 'full'")
        if not busy_timeout >= 0:
            raise ValueError(f"invalid busy_timeout {busy_timeout!r}: expected seconds >= 0")
        self._path = os.fspath(path)
        in_memory = self._path in (":memory:", "")
        self._file = self._path if in_memory else os.path.abspath(self._path)
        self._synchronous = "FULL" if durability == "full" else "NORMAL"
        self._durability = durability
        self._busy_timeout = float(busy_timeout)
        # an in-memory database lives in one connection: reads go to the writer too
        self._shares_connection = in_memory
        self._lock = threading.Lock()
        self._closed = False
        self._writer: _Worker | None = None
        self._reader: _Worker | None = None
        self._stopped: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    @property
    def path(self) -> str:
        """The database file, as given."""
        return self._path

    @property
    def durability(self) -> Literal["normal", "full"]:
        """``"normal"`` or ``"full"`` (see the class docstring)."""
        return self._durability

    # -- plumbing ------------------------------------------------------------------------------------

    def _worker(self, role: str) -> _Worker:
        # the worker must not hold the store, so that a store dropped without close() is collected
        # and its finalizer stops the thread
        connect = functools.partial(_open, self._path, self._file, self._synchronous, self._busy_timeout)
        worker = _Worker(self._path, role, connect, writes=role == "writer")
        weakref.finalize(self, worker.queue.put, _Stop(None))
        return worker

    def _submit(self, reads: bool, op: Callable[..., T], args: tuple[Any, ...]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._lock:  # so that nothing is queued after the stop item
            if self._closed:
                raise StoreError(f"{self!r} is closed")
            if reads and not self._shares_connection:
                if self._reader is None:
                    self._reader = self._worker("reader")
                self._reader.queue.put((op, args, future))
            else:
                if self._writer is None:
                    self._writer = self._worker("writer")
                self._writer.queue.put((op, args, future))
        return future

    def _write(self, op: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self._submit(False, op, args)

    def _read(self, op: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self._submit(True, op, args)

    # -- the Store protocol ----------------------------------------------------------------------------

    async def create(self, job: Job) -> tuple[Job, bool]:
        """Insert ``job`` if no job has its id.

        Returns:
            The stored job and True if it was created; the existing job and False otherwise.

        Raises:
            CorruptRecord: the existing job's record cannot be decoded.
        """
        values = (
            job.id,
            job.agent,
            str(job.status),
            _micros(job.created_at),
            job.owner,
            _optional_micros(job.lease_until),
            job.epoch,
            job.version,
            0,  # the journal's length is the truth for ``steps``, and a new job's journal is empty
            job.model_dump_json(),
        )
        existing = await self._write(_op_create, values)
        return (job, True) if existing is None else (existing, False)

    async def get(self, job_id: str) -> Job | None:
        """The job with that id, or None.

        Raises:
            CorruptRecord: its record cannot be decoded (``.key`` is the job id).
        """
        return await self._read(_op_get, job_id)

    async def save(self, job: Job, *, expected_version: int) -> Job:
        """Compare-and-set write of ``job``: only if the stored version is ``expected_version``.

        ``job.version`` must be ``expected_version + 1``. The stored lease and step count are kept as the
        store rules say (see :mod:`durapod.stores.base`).

        Returns:
            The job as stored.

        Raises:
            JobNotFound: no job has that id.
            VersionConflict: the stored version is not ``expected_version``, or ``job.version`` is not
                one higher.
        """
        values = (
            job.id,
            expected_version,
            job.agent,
            str(job.status),
            _micros(job.created_at),
            job.owner,
            job.epoch,
            job.version,
            _optional_micros(job.lease_until),
            job.status in SETTLED,
            job.model_dump_json(),
        )
        lease_micros, steps = await self._write(_op_save, values)
        lease_until = None if lease_micros is None else _moment(lease_micros)
        if lease_until != job.lease_until or steps != job.steps:
            job = job.model_copy(update={"lease_until": lease_until, "steps": steps})
        return job

    async def list(
        self,
        *,
        status: Collection[JobStatus] | None = None,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """Jobs newest first (``created_at``, then id, descending), filtered, one page of ``limit``.

        Args:
            status: keep jobs in one of these statuses (a single status is accepted too).
            agent: keep jobs of this agent.
            metadata: keep jobs whose metadata has all these keys with equal values.
            limit: the page size (None: every matching job).
            cursor: a previous page's ``next_cursor``.

        Raises:
            ValueError: an invalid cursor, status or limit (naming it).
            CorruptRecord: a scanned record cannot be decoded.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"invalid limit {limit!r}: expected an int >= 0")
        statuses: tuple[str, ...] | None = None
        if status is not None:
            if isinstance(status, str):
                status = (JobStatus(status),)
            statuses = tuple(sorted({str(JobStatus(value)) for value in status}))
            if not statuses:
                return Page([], None)
        after: tuple[int, str] | None = None
        if cursor is not None:
            created, job_id = decode_cursor(cursor)
            after = (_micros(created), job_id)
        jobs, has_more = await self._read(_op_list, statuses, agent, dict(metadata) if metadata else None, limit, after)
        return Page(jobs, encode_cursor(jobs[-1]) if has_more and jobs else None)

    async def delete(self, job_id: str) -> bool:
        """Remove a job with its journal, events and control requests. True if it existed."""
        return await self._write(_op_delete, job_id)

    async def append_step(self, record: StepRecord) -> None:
        """Journal one step, fenced: the job must be running with ``record.epoch`` and the journal hold
        exactly ``record.index`` steps. Sets the job's ``steps`` count without changing its version.

        Raises:
            JobNotFound: no job has that id.
            StaleOwnerError: the job is not running with ``record.epoch``, or ``record.index`` is not
                the journal's length.
        """
        await self._write(_op_append_step, record.job_id, record.index, record.epoch, record.model_dump_json())

    async def read_steps(self, job_id: str) -> builtins.list[StepRecord]:
        """The job's journal, in order (empty for an unknown job).

        Raises:
            CorruptRecord: a step cannot be decoded (``.key`` is ``"<job id>/steps/<index>"``).
        """
        return await self._read(_op_read_steps, job_id)

    async def append_events(self, job_id: str, events: Sequence[Mapping[str, JsonValue]]) -> None:
        """Append events (JSON objects, each with an int ``seq``) to the job's event log.

        An event whose ``seq`` is already logged for the job is ignored (the first one stays).

        Raises:
            InvalidInput: an event is not JSON or has no int ``seq``; nothing is written.
        """
        rows: list[tuple[str, int, str]] = []
        for event in events:
            seq = event.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise InvalidInput("event", event, "no int 'seq'", job_id)
            rows.append((job_id, seq, _encode_json(dict(event), "event", job_id)))
        if rows:
            await self._write(_op_append_events, rows)

    async def read_events(self, job_id: str, *, after: int = -1) -> builtins.list[dict[str, JsonValue]]:
        """The job's logged events whose ``seq`` is greater than ``after``, in ``seq`` order."""
        return await self._read(_op_read_events, job_id, after)

    async def claim(
        self, job_id: str, owner: str, *, lease_until: datetime, now: datetime, reclaim_own: bool = False
    ) -> Job | None:
        """Take the lease of a pending or running job whose lease is free (see :class:`Store`).

        The lease is free when the job has no owner or its ``lease_until`` is None or before ``now``; with
        ``reclaim_own`` also when ``owner`` holds it already.

        Returns:
            The claimed job (``epoch`` and ``version`` one higher, one more recovery if it was running),
            or None if it is not claimable.

        Raises:
            CorruptRecord: the job's record cannot be decoded; nothing is written.
        """
        return await self._write(_op_claim, job_id, owner, lease_until, _micros(now), reclaim_own)

    async def claim_orphans(
        self,
        agent: str | None,
        owner: str,
        *,
        lease_until: datetime,
        now: datetime,
        limit: int,
        reclaim_own: bool = False,
    ) -> builtins.list[Job]:
        """Claim up to ``limit`` claimable jobs (as :meth:`claim`) of ``agent`` (None: any agent), oldest first.

        A job whose record cannot be decoded is skipped (it stays where it is), so that one bad record
        does not stop every worker from taking the others.
        """
        if limit <= 0:
            return []
        return await self._write(_op_claim_orphans, agent, owner, lease_until, _micros(now), limit, reclaim_own)

    async def renew_leases(self, owner: str, job_ids: Collection[str], *, lease_until: datetime) -> set[str]:
        """Extend the leases ``owner`` holds on ``job_ids``; returns the ids it still holds.

        Does not change ``version``. Jobs another worker claimed, settled jobs and unknown ids are left
        out.
        """
        if not job_ids:
            return set()
        return await self._write(_op_renew_leases, owner, json.dumps(list(job_ids)), _micros(lease_until))

    async def release(self, job_id: str, owner: str) -> bool:
        """Clear ``owner``'s lease on the job so any worker may claim it. False if ``owner`` is not its owner."""
        return await self._write(_op_release, job_id, owner)

    async def request_control(self, request: ControlRequest) -> None:
        """Record a control request for the job's owner to act on.

        Raises:
            JobNotFound: no job has that id.
            InvalidInput: the payload is not JSON.
        """
        payload = _encode_json(request.payload, "control payload", request.job_id)
        kind: ControlKind = request.kind
        await self._write(_op_request_control, request.job_id, kind, payload, _micros(request.requested_at))

    async def take_controls(self, job_ids: Collection[str]) -> builtins.list[ControlRequest]:
        """Remove and return the control requests of ``job_ids``, oldest first."""
        if not job_ids:
            return []
        return await self._write(_op_take_controls, json.dumps(list(job_ids)))

    async def get_schedule(self, agent: str, name: str) -> ScheduleState | None:
        """The schedule ``name`` of ``agent``, or None.

        Raises:
            CorruptRecord: its record cannot be decoded (``.key`` is ``"schedules/<agent>/<name>"``).
        """
        return await self._read(_op_get_schedule, agent, name)

    async def save_schedule(self, state: ScheduleState, *, expected_version: int | None) -> ScheduleState:
        """Compare-and-set write of a schedule.

        With ``expected_version`` None the schedule is created and must not exist; otherwise the stored
        one must have ``expected_version`` and ``state.version`` must be one higher.

        Returns:
            ``state``, as stored.

        Raises:
            VersionConflict: any of those does not hold (``.job_id`` is ``"schedule <agent>/<name>"``).
        """
        await self._write(
            _op_save_schedule, state.agent, state.name, state.version, expected_version, state.model_dump_json()
        )
        return state

    async def list_schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules of ``agent`` (None: every agent), by agent and name."""
        return await self._read(_op_list_schedules, agent)

    async def delete_schedule(self, agent: str, name: str) -> bool:
        """Remove a schedule. True if it existed."""
        return await self._write(_op_delete_schedule, agent, name)

    async def close(self) -> None:
        """Commit what is queued, stop the threads and close the connections. Idempotent.

        Operations called after ``close`` raise :class:`StoreError`.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._closed:
                self._closed = True
                for worker in (self._writer, self._reader):
                    if worker is not None:
                        done: asyncio.Future[None] = loop.create_future()
                        self._stopped.append(done)
                        worker.queue.put(_Stop(done))
            waiting = [future for future in self._stopped if future.get_loop() is loop]
        for future in waiting:
            await asyncio.shield(future)
