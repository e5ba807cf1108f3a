"""PostgresStore's expiry: with ``ttl_seconds`` a job that becomes completed, failed or cancelled is deleted
with its journal, events and controls that many seconds later, by a delete that the store runs at most
every ``ttl_seconds / 10`` seconds (and at least every minute) as it writes.

Time is the jobs' own: a job ends at its ``updated_at``, stamped by the clock its runtime was given, and
"now" for a delete is the latest end among the jobs whose write runs it. So a runtime on a
:class:`~durapod.clock.FakeClock` sees its jobs expire as its clock moves, and the database's or the
machine's wall clock never enters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from durapod.models import Job, JobStatus
from durapod.stores._codec import _micros
from durapod.stores._postgres_sql import _EXPIRING

if TYPE_CHECKING:
    import asyncpg

    from durapod.stores._postgres_schema import _Schema

_EXPIRING_STATUSES: Final = frozenset(JobStatus(status) for status in _EXPIRING)


class _Expiry:
    """When the jobs of ``schema`` that ended are deleted: ``ttl_seconds`` after they ended (None: never).

    Raises:
        ValueError: ``ttl_seconds`` is not None or seconds >= 0.001 (naming it).
    """

    def __init__(self, ttl_seconds: float | None, schema: _Schema) -> None:
        if ttl_seconds is not None and (
            isinstance(ttl_seconds, bool)
            or not isinstance(ttl_seconds, int | float)
            or not math.isfinite(ttl_seconds)
            or ttl_seconds < 0.001
        ):
            raise ValueError(f"invalid ttl_seconds {ttl_seconds!r}: expected None or seconds >= 0.001")
        self.ttl_seconds = ttl_seconds
        purge_every = 60.0 if ttl_seconds is None else min(60.0, max(ttl_seconds / 10, 0.001))
        self._ttl_micros = 0 if ttl_seconds is None else round(ttl_seconds * 1_000_000)
        self._purge_every_micros = round(purge_every * 1_000_000)
        #: the jobs' time (epoch microseconds) from which the next write of an ending job runs the delete
        self.next_purge: int | None = None
        self._sql = schema.sql

    def finished_at(self, job: Job) -> int | None:
        """The job's ``finished_at`` column: when it ended, if it is to expire."""
        return _micros(job.updated_at) if self.ttl_seconds is not None and job.status in _EXPIRING_STATUSES else None

    async def purge_if_due(self, connection: asyncpg.pool.PoolConnectionProxy[Any], ended: Iterable[Job]) -> None:
        """Delete the jobs that ended more than ``ttl_seconds`` before the latest of ``ended`` (the jobs
        this write ends: at least one), if the last delete is ``ttl_seconds / 10`` older than that (at most
        a minute)."""
        if self.ttl_seconds is None:
            return
        now = max(_micros(job.updated_at) for job in ended)
        if self.next_purge is not None and now < self.next_purge:
            return
        self.next_purge = now + self._purge_every_micros
        cutoff = now - self._ttl_micros
        await connection.execute(
            self._sql(
                """WITH gone AS (DELETE FROM {s}.jobs WHERE finished_at < $1 RETURNING id),
                    s AS (DELETE FROM {s}.steps WHERE job_id IN (SELECT id FROM gone)),
                    e AS (DELETE FROM {s}.events WHERE job_id IN (SELECT id FROM gone))
                DELETE FROM {s}.controls WHERE job_id IN (SELECT id FROM gone)"""
            ),
            cutoff,
        )
