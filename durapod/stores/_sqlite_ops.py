"""The SQL operations of the SQLite store, each run by a worker thread on that thread's connection.

Each operation runs inside the batch's transaction (writes). An operation refuses by raising a
DurapodError, and only before its first write: so a refusal needs no rollback, and the batch's other
operations commit. (A savepoint per operation would cost three statements, and as many GIL hand-overs,
instead of one.) The worker checks the rule as it goes (see :mod:`durapod.stores._sqlite_worker`).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import JsonValue

from durapod._log import get_logger
from durapod.errors import CorruptRecord, JobNotFound, StaleOwnerError, VersionConflict
from durapod.models import CLAIMABLE, Job, JobStatus, StepRecord
from durapod.schedules import ScheduleState
from durapod.stores._codec import (
    _WORKER_FORGOTTEN_AFTER,
    _decode_event,
    _decode_job,
    _decode_schedule,
    _job_json,
    _listed_job,
    _moment,
    _optional_micros,
    _reason,
)
from durapod.stores.base import ControlRequest, claimed_job

_CLAIMABLE_STATUSES: Final = ", ".join(f"'{status.value}'" for status in sorted(CLAIMABLE))
_CLAIMABLE_SQL: Final = (
    f"status IN ({_CLAIMABLE_STATUSES}) AND (lease_until IS NULL OR lease_until < :now"
    " OR (:reclaim_own AND owner = :owner))"
)
_SAVE_SQL: Final = """
    UPDATE jobs SET
        agent = ?3, status = ?4, created_at = ?5, epoch = ?7, version = ?8, record = ?11, status_seq = ?12,
        lease_until = CASE WHEN ?10 THEN NULL WHEN owner IS ?6 AND epoch = ?7 THEN lease_until ELSE ?9 END,
        owner = ?6
    WHERE id = ?1 AND version = ?2
    RETURNING lease_until, (SELECT count(*) FROM steps WHERE steps.job_id = jobs.id)"""
# a step already journaled at that index is left as it is (OR IGNORE: the primary key refuses the row,
# with no lookup of its own first); _op_append_step then reads why nothing was written
_APPEND_STEP_SQL: Final = """
    INSERT OR IGNORE INTO steps (job_id, idx, record)
    SELECT ?1, ?2, ?3 FROM jobs
    WHERE id = ?1 AND status = 'running' AND epoch = ?4"""
_log = get_logger("durapod.stores.sqlite")
# the columns every job read selects, in the order _decode_job expects (the journal's length is counted:
# a journaled step writes its own row only)
_STEPS_SQL: Final = "(SELECT count(*) FROM steps WHERE steps.job_id = jobs.id)"
_JOB_COLUMNS: Final = f"id, record, owner, lease_until, epoch, version, {_STEPS_SQL}"
# metadata keys that can be put in a JSON path as they are; others are filtered in Python only
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_\-]+")


# The text of the ``job_status`` event a job's row gives its log while ``status_seq`` names it (the shape
# ``_codec._status_head`` makes): read from the row by ``read_events``, and copied into ``events`` as is
# before a write replaces the record, so that the log keeps it.
_ROW_STATUS_EVENT: Final = (
    """'{"type":"job_status","job_id":' || json_quote(id) || ',"seq":' || status_seq || ',"job":' || record || '}'"""
)
# ?2: the version the write expects (NULL: any)
_KEEP_STATUS_EVENT_SQL: Final = f"""
    INSERT OR IGNORE INTO events (job_id, seq, record)
    SELECT id, status_seq, {_ROW_STATUS_EVENT}
    FROM jobs WHERE id = ?1 AND status_seq IS NOT NULL AND (?2 IS NULL OR version = ?2)"""


def _write_claim(conn: sqlite3.Connection, job: Job) -> None:
    conn.execute(_KEEP_STATUS_EVENT_SQL, (job.id, None))
    conn.execute(
        "UPDATE jobs SET owner = ?, lease_until = ?, epoch = ?, version = ?, record = ?, status_seq = NULL"
        " WHERE id = ?",
        (job.owner, _optional_micros(job.lease_until), job.epoch, job.version, _job_json(job), job.id),
    )


# ``INSERT OR IGNORE`` of 1 to 8 events in one statement (a seq already logged keeps its first event:
# readers may have seen it); more go through executemany
_LOG_EVENTS_SQL: Final = tuple(
    "INSERT OR IGNORE INTO events (job_id, seq, record) VALUES " + ", ".join(["(?, ?, ?)"] * count)
    for count in range(1, 9)
)


def _log_events(conn: sqlite3.Connection, rows: list[tuple[str, int, str]]) -> None:
    """Append ``rows`` (job id, seq, JSON) to the event log: a write of a few events is one statement."""
    if not rows:
        return
    if len(rows) <= len(_LOG_EVENTS_SQL):
        conn.execute(_LOG_EVENTS_SQL[len(rows) - 1], [value for row in rows for value in row])
    else:
        conn.executemany(_LOG_EVENTS_SQL[0], rows)


def _op_create(conn: sqlite3.Connection, values: tuple[Any, ...]) -> Job | None:
    """Insert the job (its ``job_status`` event, if ``status_seq`` is set, is derived from the row).
    None if inserted; else the existing job."""
    inserted = conn.execute(
        "INSERT INTO jobs (id, agent, status, created_at, owner, lease_until, epoch, version, steps, record,"
        " status_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        values,
    ).rowcount
    if inserted:
        return None
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (values[0],)).fetchone()
    return _decode_job(row)


def _op_get(conn: sqlite3.Connection, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _decode_job(row)


def _op_save(
    conn: sqlite3.Connection, values: tuple[Any, ...], events: list[tuple[str, int, str]] | None
) -> tuple[int | None, int]:
    job_id, expected_version, version = values[0], values[1], values[7]
    if version == expected_version + 1:
        conn.execute(_KEEP_STATUS_EVENT_SQL, (job_id, expected_version))
        row = conn.execute(_SAVE_SQL, values).fetchone()
        if row is not None:
            if events:  # the job's log, written with it (a seq already logged keeps its first event)
                _log_events(conn, events)
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
    """The page's jobs and whether more follow. A record that cannot be decoded is skipped and logged,
    so that one bad record never hides the others."""
    where: list[str] = []
    params: list[Any] = []
    if statuses is not None:
        where.append(f"status IN ({', '.join('?' * len(statuses))})")
        params.extend(statuses)
    if agent is not None:
        where.append("agent = ?")
        params.append(agent)
    for key, value in (metadata or {}).items():
        # narrows the scan; ``matches`` below decides. An undecodable record passes so that it is reported.
        if isinstance(value, str) and _PLAIN_KEY.fullmatch(key):
            where.append("(NOT json_valid(record) OR json_extract(record, ?) = ?)")
            params.extend((f'$.metadata."{key}"', value))
    fetch = None if limit is None or metadata else limit + 1
    found: list[Job] = []
    while True:
        sql = f"SELECT {_JOB_COLUMNS}, created_at FROM jobs"
        clauses = where if after is None else [*where, "(created_at, id) < (?, ?)"]
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at DESC, id DESC"
        if fetch is not None:
            sql += f" LIMIT {fetch}"
        fetched = 0
        for row in conn.execute(sql, params if after is None else [*params, *after]):
            fetched += 1
            after = (row[-1], row[0])
            job = _listed_job(row[:-1], metadata, _log)
            if job is None:
                continue
            found.append(job)
            if limit is not None and len(found) > limit:
                return found[:limit], True
        if fetch is None or fetched < fetch:
            return found, False
        # the page is short by the records skipped: read on after the last row


def _op_delete(conn: sqlite3.Connection, job_id: str) -> bool:
    for table in ("steps", "events", "controls"):
        conn.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
    return conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0


def _op_append_step(
    conn: sqlite3.Connection,
    job_id: str,
    index: int,
    epoch: int,
    record: str,
    events: list[tuple[str, int, str]] | None = None,
) -> None:
    if conn.execute(_APPEND_STEP_SQL, (job_id, index, record, epoch)).rowcount:
        if events:  # the events streamed before the step, logged with it
            _log_events(conn, events)
        return
    found = conn.execute("SELECT status, epoch FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if found is None:
        raise JobNotFound(job_id)
    status, current_epoch = found
    if status != JobStatus.RUNNING:
        raise StaleOwnerError(job_id, epoch, current_epoch, f"job is {status}")
    if current_epoch != epoch:
        raise StaleOwnerError(job_id, epoch, current_epoch, "another worker claimed it")
    raise StaleOwnerError(job_id, epoch, current_epoch, f"step #{index} is journaled")


def _decode_step(job_id: str, index: int, record: str) -> StepRecord:
    try:
        return StepRecord.model_validate_json(record)
    except (ValueError, TypeError) as exc:
        raise CorruptRecord(f"{job_id}/steps/{index}", _reason(exc)) from None


def _op_read_steps(conn: sqlite3.Connection, job_id: str) -> list[StepRecord]:
    rows = conn.execute("SELECT idx, record FROM steps WHERE job_id = ? ORDER BY idx", (job_id,))
    return [_decode_step(job_id, index, record) for index, record in rows]


def _op_append_events(
    conn: sqlite3.Connection, rows: list[tuple[str, int, str]], job_id: str, epoch: int | None
) -> None:
    if epoch is not None:  # fenced: only the job's current owner adds to its log
        row = conn.execute("SELECT epoch FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] != epoch:
            raise StaleOwnerError(job_id, epoch, row[0] if row is not None else None, "event log")
    _log_events(conn, rows)


# the logged events after a seq (kind 0), the job's latest ``job_status`` event derived from its row (kind
# 1, idx -1) and the steps whose records give the log an event (``event_seq``, kind 1, idx >= 0): an
# appended event first where several have one seq. A step record that is not JSON is read last, to be
# reported.
_READ_EVENTS_SQL: Final = f"""
    SELECT seq, record, idx FROM (
        SELECT seq, record, NULL AS idx, 0 AS kind FROM events WHERE job_id = ?1 AND seq > ?2
        UNION ALL
        SELECT status_seq, {_ROW_STATUS_EVENT}, -1, 1 FROM jobs WHERE id = ?1 AND status_seq > ?2
        UNION ALL
        SELECT seq, record, idx, 1 FROM (
            SELECT CASE WHEN json_valid(record) THEN json_extract(record, '$.event_seq') END AS seq, record, idx
            FROM steps WHERE job_id = ?1
        ) WHERE seq > ?2 OR NOT json_valid(record)
    ) ORDER BY seq IS NULL, seq, kind, idx"""


def _op_read_events(conn: sqlite3.Connection, job_id: str, after: int) -> list[dict[str, JsonValue]]:
    events: list[dict[str, JsonValue]] = []
    last = None
    for seq, record, index in conn.execute(_READ_EVENTS_SQL, (job_id, after)):
        if index is None:
            events.append(_decode_event(job_id, seq, record))
        elif seq is None or seq != last:  # (None: not JSON, reported by decoding it)
            if index < 0 and seq is not None:  # the job's row: its latest status change (a bad record is the job's)
                try:
                    events.append(_decode_event(job_id, seq, record))
                except CorruptRecord:
                    raise CorruptRecord(job_id, "its record is not JSON") from None
            else:
                events.append(_decode_step(job_id, index, record).step_event())
        last = seq
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
    claimed = claimed_job(_decode_job(row), owner, lease_until, _moment(now))
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
            claimed.append(job := claimed_job(job, owner, lease_until, _moment(now)))
            _write_claim(conn, job)
    return claimed


def _op_renew_leases(conn: sqlite3.Connection, owner: str, job_ids: str, lease_until: int) -> set[str]:
    rows = conn.execute(
        f"UPDATE jobs SET lease_until = ? WHERE owner = ? AND status IN ({_CLAIMABLE_STATUSES})"
        " AND id IN (SELECT value FROM json_each(?)) RETURNING id",
        (lease_until, owner, job_ids),
    ).fetchall()
    return {job_id for (job_id,) in rows}


def _op_next_wake(conn: sqlite3.Connection, agent: str | None, now: int) -> int | None:
    row = conn.execute(
        f"SELECT min(lease_until) FROM jobs WHERE status IN ({_CLAIMABLE_STATUSES}) AND owner IS NULL"
        " AND lease_until >= :now AND (:agent IS NULL OR agent = :agent)",
        {"now": now, "agent": agent},
    ).fetchone()
    return None if row is None else row[0]


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


def _op_has_controls(conn: sqlite3.Connection, job_ids: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM controls WHERE job_id IN (SELECT value FROM json_each(?)) LIMIT 1", (job_ids,)
    ).fetchone()
    return row is not None


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
        try:
            taken.append(ControlRequest(job_id, kind, _moment(requested_at), decoded))
        except ValueError as exc:  # garbage in the table: dropped, and said so
            _log.warning("control request ignored", job_id=job_id, kind=kind, error=str(exc))
    if rows:
        conn.execute(
            "DELETE FROM controls WHERE id IN (SELECT value FROM json_each(?))", (json.dumps([row[0] for row in rows]),)
        )
    return taken


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


def _op_register_worker(
    conn: sqlite3.Connection, worker_id: str, token: str, info: str, lease_until: int, now: int, replace: str | None
) -> str | None:
    row = conn.execute("SELECT token, info, lease_until FROM workers WHERE id = ?", (worker_id,)).fetchone()
    if row is not None and row[0] != token and row[2] >= now and row[0] != replace:
        return str(row[1])
    conn.execute(
        "INSERT INTO workers (id, token, info, lease_until) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE"
        " SET token = ?2, info = ?3, lease_until = ?4",
        (worker_id, token, info, lease_until),
    )
    forgotten = now - _WORKER_FORGOTTEN_AFTER // timedelta(microseconds=1)
    conn.execute("DELETE FROM workers WHERE lease_until < ?", (forgotten,))
    return None


def _op_renew_worker(conn: sqlite3.Connection, worker_id: str, token: str, lease_until: int) -> bool:
    updated = conn.execute(
        "UPDATE workers SET lease_until = ? WHERE id = ? AND token = ?", (lease_until, worker_id, token)
    ).rowcount
    return updated > 0


def _op_unregister_worker(conn: sqlite3.Connection, worker_id: str, token: str) -> None:
    conn.execute("DELETE FROM workers WHERE id = ? AND token = ?", (worker_id, token))


def _op_list_workers(conn: sqlite3.Connection, now: int) -> list[tuple[str, str, int]]:
    return conn.execute(
        "SELECT id, info, lease_until FROM workers WHERE lease_until >= ? ORDER BY id", (now,)
    ).fetchall()
