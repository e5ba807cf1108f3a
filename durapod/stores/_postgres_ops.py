"""The SQL of PostgresStore's job operations other than the grouped writes: claims and leases, release,
delete, the fenced event append (each write made here as the op the store's writer runs, see
:mod:`durapod.stores._postgres_writer`), and the query and decoding of its listings and journal reads.

``sql`` is the store's :meth:`_Schema.sql <durapod.stores._postgres_schema._Schema.sql>`: it fills in the
schema's name for ``{s}``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Callable, Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from pydantic import JsonValue

from durapod._log import get_logger
from durapod.errors import CorruptRecord, StaleOwnerError
from durapod.models import Job, StepRecord
from durapod.stores._codec import (
    _decode_event,
    _decode_job,
    _job_json,
    _listed_job,
    _micros,
    _optional_micros,
    _reason,
    _with_step_events,
)
from durapod.stores._postgres_sql import (
    _CLAIMABLE,
    _CLAIMABLE_SQL,
    _INSERT_EVENTS_SQL,
    _JOB_COLUMNS,
    _WRITE_CLAIM_SQL,
)
from durapod.stores.base import Page, claimed_job, encode_cursor

if TYPE_CHECKING:
    import asyncpg

    from durapod.stores._postgres_writer import _Op

    _Connection = asyncpg.pool.PoolConnectionProxy[Any]

_log = get_logger("durapod.stores.postgres")
_PLAIN_TEXT: Final = re.compile(r"[A-Za-z0-9_\-.:@ ]+")  # written as it is in a JSON record
_READ_STEPS_SQL: Final = "SELECT idx, record FROM {s}.steps WHERE job_id = $1 ORDER BY idx"
# The event log above $2: the appended events (idx NULL) and the steps whose record's event_seq is above it,
# by seq (a step at the seq of an appended event is dropped in Python). OFFSET 0 keeps the subquery whole,
# so that each record's JSON is read once. A step record that is not JSON (or whose event_seq is not an
# integer) fails the statement with a DataError: then _READ_LOG_ALL_STEPS_SQL reads every step, to decode
# in Python.
_READ_LOG_SQL: Final = """
    SELECT seq, record, NULL::integer AS idx FROM {s}.events WHERE job_id = $1 AND seq > $2
    UNION ALL
    SELECT seq, record, idx FROM (
        SELECT (record::json ->> 'event_seq')::bigint AS seq, record, idx FROM {s}.steps WHERE job_id = $1 OFFSET 0
    ) AS derived WHERE seq > $2
    ORDER BY seq, idx NULLS FIRST"""
_READ_LOG_ALL_STEPS_SQL: Final = """
    SELECT seq, record, NULL::integer AS idx FROM {s}.events WHERE job_id = $1 AND seq > $2
    UNION ALL
    SELECT NULL, record, idx FROM {s}.steps WHERE job_id = $1
    ORDER BY seq, idx"""
# $1: the claimable statuses, $2: now, $3: the agent (NULL: any)
_NEXT_WAKE_SQL: Final = (
    "SELECT min(lease_until) FROM {s}.jobs WHERE status = ANY($1::text[]) AND owner IS NULL"
    " AND lease_until >= $2 AND ($3::text IS NULL OR agent = $3)"
)


def _claim_row(job: Job) -> tuple[Any, ...]:
    return (job.id, job.owner, _optional_micros(job.lease_until), job.epoch, job.version, _job_json(job))


def _op_claim(
    sql: Callable[[str], str], job_id: str, owner: str, lease_until: datetime, now: datetime, reclaim_own: bool
) -> _Op:
    """The write of :meth:`PostgresStore.claim`: its value is the claimed job, or None."""

    async def op(connection: _Connection) -> Any:
        row = await connection.fetchrow(
            sql(f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs WHERE id = $1 AND {_CLAIMABLE_SQL} FOR UPDATE"),
            job_id,
            _CLAIMABLE,
            _micros(now),
            reclaim_own,
            owner,
        )
        if row is None:
            return None
        claimed = claimed_job(_decode_job(tuple(row)), owner, lease_until, now)
        await connection.execute(sql(_WRITE_CLAIM_SQL), *_claim_row(claimed))
        return claimed

    return op


def _op_claim_orphans(
    sql: Callable[[str], str],
    agent: str | None,
    owner: str,
    lease_until: datetime,
    now: datetime,
    limit: int,
    reclaim_own: bool,
) -> _Op:
    """The write of :meth:`PostgresStore.claim_orphans`: its value is the list of the jobs claimed."""

    async def op(connection: _Connection) -> Any:
        claimed: list[Job] = []
        rows = await connection.fetch(
            sql(
                f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs WHERE {_CLAIMABLE_SQL}"
                " AND ($1::text IS NULL OR agent = $1) ORDER BY created_at, id LIMIT $6 FOR UPDATE SKIP LOCKED"
            ),
            agent,
            _CLAIMABLE,
            _micros(now),
            reclaim_own,
            owner,
            limit,
        )
        for row in rows:
            try:
                job = _decode_job(tuple(row))
            except CorruptRecord as exc:  # one undecodable job must not stop every worker
                _log.warning("corrupt job skipped by claim", job_id=row[0], error=str(exc))
                continue
            claimed.append(claimed_job(job, owner, lease_until, now))
        if claimed:
            await connection.executemany(sql(_WRITE_CLAIM_SQL), [_claim_row(job) for job in claimed])
        return claimed

    return op


def _op_renew_leases(sql: Callable[[str], str], owner: str, job_ids: Collection[str], lease_until: datetime) -> _Op:
    """The write of :meth:`PostgresStore.renew_leases`: its value is the list of the ids ``owner`` holds."""

    async def op(connection: _Connection) -> Any:
        rows = await connection.fetch(
            sql(
                "UPDATE {s}.jobs SET lease_until = $1 WHERE owner = $2 AND status = ANY($3::text[])"
                " AND id = ANY($4::text[]) RETURNING id"
            ),
            _micros(lease_until),
            owner,
            _CLAIMABLE,
            list(job_ids),
        )
        return [row[0] for row in rows]

    return op


def _op_release(sql: Callable[[str], str], wake_channel: str, job_id: str, owner: str) -> _Op:
    """The write of :meth:`PostgresStore.release`: its value is False if ``owner`` is not the job's owner."""

    async def op(connection: _Connection) -> Any:
        agent = await connection.fetchval(
            sql("UPDATE {s}.jobs SET lease_until = NULL WHERE id = $1 AND owner = $2 RETURNING agent"),
            job_id,
            owner,
        )
        if agent is None:
            return False
        await connection.execute("SELECT pg_notify($1, $2)", wake_channel, agent)
        return True

    return op


def _op_delete(sql: Callable[[str], str], job_id: str) -> _Op:
    """The write of :meth:`PostgresStore.delete`: its value is true if the job existed."""

    async def op(connection: _Connection) -> Any:
        for table in ("steps", "events", "controls"):
            await connection.execute(sql(f"DELETE FROM {{s}}.{table} WHERE job_id = $1"), job_id)
        return await connection.fetchval(sql("DELETE FROM {s}.jobs WHERE id = $1 RETURNING true"), job_id)

    return op


def _op_append_events(
    sql: Callable[[str], str], job_id: str, seqs: list[int], records: list[str], epoch: int | None
) -> _Op:
    """The write of :meth:`PostgresStore.append_events` (encoded as ``seqs`` and ``records``)."""

    async def op(connection: _Connection) -> Any:
        if epoch is not None:  # fenced: only the job's current owner adds to its log
            current = await connection.fetchval(sql("SELECT epoch FROM {s}.jobs WHERE id = $1 FOR SHARE"), job_id)
            if current != epoch:
                raise StaleOwnerError(job_id, epoch, current, "event log")
        await connection.execute(sql(_INSERT_EVENTS_SQL), job_id, seqs, records)

    return op


def _list_query(
    statuses: list[str] | None,
    agent: str | None,
    start: tuple[datetime, str] | None,
    metadata: Mapping[str, JsonValue] | None,
) -> tuple[str, list[Any]] | None:
    """The statement (``{s}`` not filled in) and parameters of :meth:`PostgresStore.list`'s rows, newest
    first, from ``list_arguments``; None if no job can match."""
    where: list[str] = []
    params: list[Any] = []
    if statuses is not None:
        if not statuses:
            return None
        params.append(statuses)
        where.append(f"status = ANY(${len(params)}::text[])")
    if agent is not None:
        params.append(agent)
        where.append(f"agent = ${len(params)}")
    if start is not None:
        params.extend((_micros(start[0]), start[1]))
        where.append(f"(created_at, id) < (${len(params) - 1}, ${len(params)})")
    for value in (metadata or {}).values():
        # narrows the scan to records holding the value's text; ``matches`` in _page decides
        if isinstance(value, str) and _PLAIN_TEXT.fullmatch(value):
            params.append(value)
            where.append(f"strpos(record, ${len(params)}) > 0")
    sql = f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC"
    return sql, params


async def _page(rows: AsyncIterable[Any], limit: int | None, metadata: Mapping[str, JsonValue] | None) -> Page:
    """The page of :meth:`PostgresStore.list` from the rows of its :func:`_list_query`: ``limit`` jobs (None:
    all) whose metadata matches. A record that cannot be decoded is skipped and logged as a warning."""
    found: list[Job] = []
    async for row in rows:
        job = _listed_job(tuple(row), metadata, _log)
        if job is None:
            continue
        found.append(job)
        if limit is not None and len(found) > limit:
            page = found[:limit]
            return Page(page, encode_cursor(page[-1]) if page else None)
    return Page(found, None)


def _decode_step(job_id: str, index: int, record: str) -> StepRecord:
    """The step of ``job_id`` at ``index`` from its record.

    Raises:
        CorruptRecord: it cannot be decoded (``.key`` is ``"<job id>/steps/<index>"``).
    """
    try:
        return StepRecord.model_validate_json(record)
    except (ValueError, TypeError) as exc:
        raise CorruptRecord(f"{job_id}/steps/{index}", _reason(exc)) from None


def _decode_steps(job_id: str, rows: list[Any]) -> list[StepRecord]:
    """The journal of ``job_id`` from its ``idx, record`` rows.

    Raises:
        CorruptRecord: a step cannot be decoded (``.key`` is ``"<job id>/steps/<index>"``).
    """
    return [_decode_step(job_id, index, record) for index, record in rows]


def _merge_log(job_id: str, after: int, rows: list[Any]) -> list[dict[str, JsonValue]]:
    """The event log of ``job_id`` above ``after``, in ``seq`` order, from the ``seq, record, idx`` rows of
    :data:`_READ_LOG_SQL` or :data:`_READ_LOG_ALL_STEPS_SQL`: the appended events (``idx`` NULL), and the
    ``step`` events of the steps (see :func:`_with_step_events`).

    Raises:
        CorruptRecord: an event (``.key`` is ``"<job id>/events/<seq>"``) or a step (``.key`` is
            ``"<job id>/steps/<index>"``) cannot be decoded.
    """
    logged = [(seq, _decode_event(job_id, seq, record)) for seq, record, index in rows if index is None]
    if len(logged) == len(rows):
        return [event for _, event in logged]
    steps = [_decode_step(job_id, index, record) for _, record, index in rows if index is not None]
    return _with_step_events(logged, steps, after)
