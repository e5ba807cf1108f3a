"""The SQL of PostgresStore's coordination tables, through which its processes reach each other besides the
jobs: control requests, worker ids and schedules (each write made here as the op the store's writer runs,
see :mod:`durapod.stores._postgres_writer`), and the decoding of the control requests taken.

``sql`` is the store's :meth:`_Schema.sql <durapod.stores._postgres_schema._Schema.sql>`: it fills in the
schema's name for ``{s}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from durapod._log import get_logger
from durapod.errors import JobNotFound, VersionConflict
from durapod.models import ControlKind
from durapod.schedules import ScheduleState
from durapod.stores._codec import _WORKER_FORGOTTEN_AFTER, _micros, _moment, _reason
from durapod.stores.base import ControlRequest

if TYPE_CHECKING:
    import asyncpg

    from durapod.stores._postgres_writer import _Op

    _Connection = asyncpg.pool.PoolConnectionProxy[Any]

_log = get_logger("durapod.stores.postgres")
_GET_SCHEDULE_SQL: Final = "SELECT record FROM {s}.schedules WHERE agent = $1 AND name = $2"
_LIST_WORKERS_SQL: Final = "SELECT id, info, lease_until FROM {s}.workers WHERE lease_until >= $1 ORDER BY id"
_LIST_SCHEDULES_SQL: Final = (
    "SELECT agent, name, record FROM {s}.schedules WHERE $1::text IS NULL OR agent = $1 ORDER BY agent, name"
)


def _op_request_control(
    sql: Callable[[str], str], control_channel: str, request: ControlRequest, kind: ControlKind, payload: str
) -> _Op:
    """The write of :meth:`PostgresStore.request_control` (``payload``: the request's, encoded); it refuses
    with JobNotFound if no job has the request's job id."""

    async def op(connection: _Connection) -> Any:
        inserted = await connection.fetchval(
            sql(
                "INSERT INTO {s}.controls (job_id, kind, payload, requested_at)"
                " SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM {s}.jobs WHERE id = $1) RETURNING true"
            ),
            request.job_id,
            str(kind.value),
            payload,
            _micros(request.requested_at),
        )
        if not inserted:
            raise JobNotFound(request.job_id)
        await connection.execute("SELECT pg_notify($1, $2)", control_channel, request.job_id)

    return op


def _op_take_controls(sql: Callable[[str], str], job_ids: Collection[str]) -> _Op:
    """The write of :meth:`PostgresStore.take_controls`: its value is the rows it deleted (see
    :func:`_decode_controls`)."""

    async def op(connection: _Connection) -> Any:
        rows = await connection.fetch(
            sql(
                "DELETE FROM {s}.controls WHERE job_id = ANY($1::text[])"
                " RETURNING id, job_id, kind, payload, requested_at"
            ),
            list(job_ids),
        )
        return [tuple(row) for row in rows]

    return op


def _decode_controls(rows: list[tuple[Any, ...]]) -> list[ControlRequest]:
    """The control requests of the rows :func:`_op_take_controls` took, oldest first; a row that cannot be
    decoded is dropped and logged as a warning."""
    taken: list[tuple[int, int, ControlRequest]] = []
    for control_id, job_id, kind, payload, requested_at in rows:
        try:
            decoded = json.loads(payload)
        except (ValueError, TypeError) as exc:
            _log.warning("control request ignored", job_id=job_id, kind=kind, error=_reason(exc))
            continue
        try:
            taken.append((requested_at, control_id, ControlRequest(job_id, kind, _moment(requested_at), decoded)))
        except ValueError as exc:  # garbage in the table: dropped, and said so
            _log.warning("control request ignored", job_id=job_id, kind=kind, error=str(exc))
    taken.sort(key=lambda item: (item[0], item[1]))
    return [request for _, _, request in taken]


def _op_register_worker(
    sql: Callable[[str], str],
    worker_id: str,
    token: str,
    info: str,
    lease_until: datetime,
    now: datetime,
    replace: str | None,
) -> _Op:
    """The write of :meth:`PostgresStore.register_worker`: its value is the live holder's info when refused,
    else None."""

    async def op(connection: _Connection) -> Any:
        taken = await connection.fetchval(
            sql(
                "INSERT INTO {s}.workers (id, token, info, lease_until) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (id) DO UPDATE SET token = $2, info = $3, lease_until = $4"
                " WHERE workers.token = $2 OR workers.lease_until < $5"
                " OR workers.token IS NOT DISTINCT FROM $6::text RETURNING true"
            ),
            worker_id,
            token,
            info,
            _micros(lease_until),
            _micros(now),
            replace,
        )
        if taken:
            forgotten = _micros(now - _WORKER_FORGOTTEN_AFTER)
            await connection.execute(sql("DELETE FROM {s}.workers WHERE lease_until < $1"), forgotten)
            return None
        holder = await connection.fetchval(sql("SELECT info FROM {s}.workers WHERE id = $1"), worker_id)
        return "" if holder is None else str(holder)

    return op


def _op_renew_worker(sql: Callable[[str], str], worker_id: str, token: str, lease_until: datetime) -> _Op:
    """The write of :meth:`PostgresStore.renew_worker`: its value is true if ``token`` still holds the id."""

    async def op(connection: _Connection) -> Any:
        return await connection.fetchval(
            sql("UPDATE {s}.workers SET lease_until = $3 WHERE id = $1 AND token = $2 RETURNING true"),
            worker_id,
            token,
            _micros(lease_until),
        )

    return op


def _op_unregister_worker(sql: Callable[[str], str], worker_id: str, token: str) -> _Op:
    """The write of :meth:`PostgresStore.unregister_worker`."""

    async def op(connection: _Connection) -> Any:
        await connection.execute(sql("DELETE FROM {s}.workers WHERE id = $1 AND token = $2"), worker_id, token)

    return op


def _op_save_schedule(
    sql: Callable[[str], str], state: ScheduleState, record: str, expected_version: int | None
) -> _Op:
    """The write of :meth:`PostgresStore.save_schedule` (``record``: the state's JSON): its value is
    ``state``; it refuses with VersionConflict if the compare-and-set does not hold."""

    async def op(connection: _Connection) -> Any:
        if expected_version is None:
            written = await connection.fetchval(
                sql(
                    "INSERT INTO {s}.schedules (agent, name, version, record) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT DO NOTHING RETURNING true"
                ),
                state.agent,
                state.name,
                state.version,
                record,
            )
        elif state.version == expected_version + 1:
            written = await connection.fetchval(
                sql(
                    "UPDATE {s}.schedules SET version = $3, record = $4 WHERE agent = $1 AND name = $2"
                    " AND version = $5 RETURNING true"
                ),
                state.agent,
                state.name,
                state.version,
                record,
                expected_version,
            )
        else:
            written = None
        if written:
            return state
        found = await connection.fetchval(
            sql("SELECT version FROM {s}.schedules WHERE agent = $1 AND name = $2"), state.agent, state.name
        )
        raise VersionConflict(
            f"schedule {state.agent}/{state.name}", 0 if expected_version is None else expected_version, found
        )

    return op


def _op_delete_schedule(sql: Callable[[str], str], agent: str, name: str) -> _Op:
    """The write of :meth:`PostgresStore.delete_schedule`: its value is true if the schedule existed."""

    async def op(connection: _Connection) -> Any:
        return await connection.fetchval(
            sql("DELETE FROM {s}.schedules WHERE agent = $1 AND name = $2 RETURNING true"), agent, name
        )

    return op
