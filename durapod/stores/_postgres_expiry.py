"""PostgresStore's expiry: with ``ttl_seconds`` a job that becomes completed, failed or cancelled is deleted
with its journal, events and controls that many seconds later, by a delete that the store runs at most
every ``ttl_seconds / 10`` seconds (and at least every minute) as it writes.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
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
        self._purge_every = 60.0 if ttl_seconds is None else min(60.0, max(ttl_seconds / 10, 0.001))
        #: the monotonic time from which the next write of an ending job runs the delete
        self.next_purge = 0.0
        self._sql = schema.sql

    def finished_at(self, job: Job) -> int | None:
        """The job's ``finished_at`` column: when it ended, if it is to expire."""
        return _micros(job.updated_at) if self.ttl_seconds is not None and job.status in _EXPIRING_STATUSES else None

    async def purge_if_due(self, connection: asyncpg.pool.PoolConnectionProxy[Any]) -> None:
        """Delete the jobs that ended more than ``ttl_seconds`` ago, if the last delete is old enough."""
        if self.ttl_seconds is None:
            return
        clock = time.monotonic()
        if clock < self.next_purge:
            return
        self.next_purge = clock + self._purge_every
        cutoff = _micros(datetime.now().astimezone()) - round(self.ttl_seconds * 1_000_000)
        await connection.execute(
            self._sql(
                """WITH gone AS (DELETE FROM {s}.jobs WHERE finished_at < $1 RETURNING id),
                    s AS (DELETE FROM {s}.steps WHERE job_id IN (SELECT id FROM gone)),
                    e AS (DELETE FROM {s}.events WHERE job_id IN (SELECT id FROM gone))
                DELETE FROM {s}.controls WHERE job_id IN (SELECT id FROM gone)"""
            ),
            cutoff,
        )
