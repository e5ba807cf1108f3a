"""PostgresStore's grouped writes: the creates, saves and step appends of different jobs in one batch are
written by one statement per kind (``unnest`` of arrays; the statements are in
:mod:`durapod.stores._postgres_sql`), and each write gets its own outcome (see
:mod:`durapod.stores._postgres_writer`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from durapod.errors import CorruptRecord, JobNotFound, VersionConflict
from durapod.models import Job, StepRecord
from durapod.stores._codec import (
    _create_columns,
    _decode_job,
    _encode_events,
    _job_json,
    _save_columns,
    _status_head,
)
from durapod.stores._postgres_expiry import _EXPIRING_STATUSES
from durapod.stores._postgres_sql import (
    _APPEND_STEPS_SQL,
    _CLAIMABLE,
    _CREATE_ALL_SQL,
    _JOB_COLUMNS,
    _SAVE_ALL_SQL,
)
from durapod.stores._postgres_writer import _Outcome

if TYPE_CHECKING:
    import asyncpg

    from durapod.stores._postgres_expiry import _Expiry
    from durapod.stores._postgres_schema import _Schema

    _Connection = asyncpg.pool.PoolConnectionProxy[Any]


class _GroupedWrites:
    """The grouped writes of the store whose tables are in ``schema``; ``expiry`` says which jobs expire.

    Each is a ``_Grouped.run``: it writes every item in its first statement and returns one outcome per item.
    """

    def __init__(self, schema: _Schema, expiry: _Expiry) -> None:
        self._sql = schema.sql
        self._wake_channel = schema.wake_channel
        self._finished_at = expiry.finished_at
        self._purge_if_due = expiry.purge_if_due

    async def create_all(self, connection: _Connection, items: list[tuple[Job, int | None]]) -> list[_Outcome]:
        """Insert the jobs whose ids are free, each created with a ``status_seq`` logging its ``job_status``
        event. Each outcome is the stored job and whether it was created, None (the job that had its id was
        deleted meanwhile), or the CorruptRecord of the existing job."""
        jobs = [job for job, _ in items]
        rows = [
            (
                *_create_columns(job),
                self._finished_at(job),
                _job_json(job),
                status_seq,
                None if status_seq is None else _status_head(job.id, status_seq),
            )
            for job, status_seq in items
        ]
        inserted = {
            row[0]
            for row in await connection.fetch(
                self._sql(_CREATE_ALL_SQL), *_columns(rows, 12), _CLAIMABLE, self._wake_channel
            )
        }
        existing: dict[str, Any] = {}
        if len(inserted) < len(jobs):
            found = await connection.fetch(
                self._sql(f"SELECT {_JOB_COLUMNS} FROM {{s}}.jobs WHERE id = ANY($1::text[])"),
                [job.id for job in jobs if job.id not in inserted],
            )
            existing = {row[0]: tuple(row) for row in found}
        outcomes: list[_Outcome] = []
        for job in jobs:
            if job.id in inserted:
                outcomes.append((True, (job.model_copy(update={"steps": 0}) if job.steps else job, True)))
                continue
            row = existing.get(job.id)
            try:
                outcomes.append((True, None if row is None else (_decode_job(row), False)))
            except CorruptRecord as exc:
                outcomes.append((False, exc))
        return outcomes

    async def save_all(
        self,
        connection: _Connection,
        items: list[tuple[Job, int, list[int], list[str], int | None]],
    ) -> list[_Outcome]:
        """Compare-and-set writes of the jobs, each with its events and ``job_status`` event's ``seq`` (or
        None). Each outcome is the stored ``lease_until`` and step count, or the JobNotFound or
        VersionConflict it refused with."""
        rows: list[tuple[Any, ...]] = []
        event_rows: list[tuple[str, int, str]] = []
        for job, expected_version, seqs, records, status_seq in sorted(items, key=lambda item: item[0].id):
            if job.version != expected_version + 1:
                continue
            head = None if status_seq is None else _status_head(job.id, status_seq)
            rows.append((*_save_columns(job, expected_version), self._finished_at(job), status_seq, head))
            event_rows.extend((job.id, seq, record) for seq, record in zip(seqs, records, strict=True))
        saved: dict[str, tuple[Any, ...]] = {}
        if rows:
            found = await connection.fetch(
                self._sql(_SAVE_ALL_SQL),
                *_columns(rows, 14),
                *_columns(event_rows, 3),
                _CLAIMABLE,
                self._wake_channel,
            )
            saved = {row[0]: (row[1], row[2]) for row in found}
        versions: dict[str, int] = {}
        if len(saved) < len(items):
            found = await connection.fetch(
                self._sql("SELECT id, version FROM {s}.jobs WHERE id = ANY($1::text[])"),
                [job.id for job, *_ in items if job.id not in saved],
            )
            versions = {row[0]: row[1] for row in found}
        outcomes: list[_Outcome] = []
        ended: list[Job] = []
        for job, expected_version, *_ in items:
            row = saved.get(job.id)
            if row is None:
                if job.id not in versions:
                    outcomes.append((False, JobNotFound(job.id)))
                else:
                    outcomes.append((False, VersionConflict(job.id, expected_version, versions[job.id])))
                continue
            if job.status in _EXPIRING_STATUSES:
                ended.append(job)
            outcomes.append((True, row))
        if ended:
            await self._purge_if_due(connection, ended)
        return outcomes

    async def append_steps(
        self,
        connection: _Connection,
        items: list[tuple[StepRecord, list[int], list[str]]],
    ) -> list[_Outcome]:
        """Journal the steps (of different jobs). Each outcome is None (journaled), False (no such job) or
        the job's status and epoch (refused)."""
        rows: list[tuple[Any, ...]] = []
        event_rows: list[tuple[str, int, str]] = []
        for record, seqs, records in sorted(items, key=lambda item: item[0].job_id):
            rows.append((record.job_id, record.index, record.model_dump_json(), record.epoch))
            event_rows.extend((record.job_id, seq, text) for seq, text in zip(seqs, records, strict=True))
        found = await connection.fetch(self._sql(_APPEND_STEPS_SQL), *_columns(rows, 4), *_columns(event_rows, 3))
        added = {row[0] for row in found}
        current: dict[str, tuple[Any, ...]] = {}
        if len(added) < len(items):
            found = await connection.fetch(
                self._sql("SELECT id, status, epoch FROM {s}.jobs WHERE id = ANY($1::text[])"),
                [record.job_id for record, _, _ in items if record.job_id not in added],
            )
            current = {row[0]: (row[1], row[2]) for row in found}
        return [(True, None if record.job_id in added else current.get(record.job_id, False)) for record, _, _ in items]


def _event_columns(job_id: str, events: Sequence[Mapping[str, JsonValue]]) -> tuple[list[int], list[str]]:
    encoded = _encode_events(job_id, events)
    return [seq for seq, _ in encoded], [text for _, text in encoded]


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """``rows`` as ``width`` columns, one array parameter each (for ``unnest``)."""
    return [[row[column] for row in rows] for column in range(width)]
