"""Client: query and control jobs from a process that runs none (API servers, the CLI)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Iterable, Mapping
from types import TracebackType
from typing import Literal, Self

from pydantic import JsonValue

from durapod._control import apply_control, get_job, resumed
from durapod._stream import EventSource, Subscribers, follow
from durapod._waiting import Waiters, parse_statuses
from durapod.errors import JobConflictError, JobStateError, VersionConflict
from durapod.events import Event
from durapod.lowlevel.clock import SYSTEM_CLOCK, Clock
from durapod.models import Job, JobStatus, StepRecord, check_json, validate_job_id
from durapod.schedules import ScheduleState
from durapod.stores.base import Page, Store

__all__ = ["Client"]


class Client:
    """Submit, query, wait for and control jobs on a store, without running any.

    Pause and cancel reach a job's live owner through the store (a control request its lease keeper
    picks up); a job nobody runs is changed in the store directly. ``resume`` queues the job for any
    worker, and ``submit`` queues a new one: a worker's ``serve()`` runs them.

    Args:
        store: the store the workers use.
        poll_interval: the longest gap between two reads while waiting for a job to settle.
        clock: time source.

    Example:
        >>> client = Client(MemoryStore())                               # doctest: +SKIP
        >>> async with client:                                           # doctest: +SKIP
        ...     await client.submit("job_7", "Process invoice", agent="invoices")
        ...     job = await client.wait("job_7")
    """

    def __init__(self, store: Store, *, poll_interval: float = 0.25, clock: Clock | None = None) -> None:
        if not isinstance(store, Store):
            raise TypeError(f"store must be a durapod store, got {store!r}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        self.store = store
        self.poll_interval = poll_interval
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._waiters = Waiters()

    def __repr__(self) -> str:
        return f"Client(store={self.store!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the store."""
        await self.store.close()

    async def submit(
        self,
        job_id: str,
        input: JsonValue = None,
        *,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
    ) -> Job:
        """Queue a job for a worker of ``agent`` (None: any worker on the store). Returns the stored job.

        Submitting an existing id with the same input returns the existing job (nothing runs twice).

        Raises:
            InvalidJobId, InvalidInput: bad id or non-JSON input/metadata.
            JobConflictError: the id exists with a different input or agent.
        """
        validate_job_id(job_id)
        check_json(input, "input", job_id)
        meta = dict(metadata or {})
        check_json(meta, "metadata", job_id)
        now = self.clock.utcnow()
        job = Job(
            id=job_id,
            agent=agent or "",
            input=input,
            metadata=meta,
            created_at=now,
            updated_at=now,
            version=1,
        )
        stored, created = await self.store.create(job)
        if not created:
            if agent is not None and stored.agent != agent:
                raise JobConflictError(job_id, f"another agent ({stored.agent!r})")
            if stored.input != input:
                raise JobConflictError(job_id)
        return stored

    async def status(self, job_id: str) -> Job | None:
        """The job as stored, or None."""
        return await self.store.get(validate_job_id(job_id))

    async def steps(self, job_id: str) -> builtins.list[StepRecord]:
        """The job's step journal, in order (its timeline)."""
        return await self.store.read_steps(validate_job_id(job_id))

    async def list(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        *,
        limit: int | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        agent: str | None = None,
    ) -> builtins.list[Job]:
        """Jobs newest first, filtered by status (one or several), metadata and agent (None: every agent).

        Raises:
            ValueError: an unknown status, or a negative limit.
        """
        return (await self.page(status, limit=limit, metadata=metadata, agent=agent)).jobs

    async def page(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        *,
        limit: int | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        agent: str | None = None,
        cursor: str | None = None,
    ) -> Page:
        """One page of :meth:`list`: ``limit`` jobs and the ``next_cursor`` to pass for the next page."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
        return await self.store.list(
            status=parse_statuses(status), agent=agent, metadata=metadata, limit=limit, cursor=cursor
        )

    async def stream(self, job_id: str, *, after: int = -1) -> AsyncGenerator[Event, None]:
        """Yield the job's logged events after ``after``, then new ones as workers log them, until the
        job settles. A consumer that stops reading never affects the job.

        Raises:
            JobNotFound: no such job.
        """
        validate_job_id(job_id)
        source = EventSource(self.store, Subscribers(), lambda _job_id, _after: [], self.poll_interval)
        async for event in follow(source, job_id, after):
            yield event

    async def schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules in the store (of ``agent``, or of every agent), with their next fire times."""
        return await self.store.list_schedules(agent)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job settles (completed, failed, cancelled or paused).

        Raises:
            JobNotFound: no such job.
            TimeoutError: ``timeout`` seconds passed first.
        """
        validate_job_id(job_id)
        return await self._waiters.wait(self.store, job_id, timeout, self.poll_interval, False)

    async def pause(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Pause a pending or running job and wait until it is paused (or settled otherwise)."""
        return await self._control(job_id, "pause", timeout)

    async def cancel(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Cancel a pending, running or paused job and wait until it is cancelled (or settled)."""
        return await self._control(job_id, "cancel", timeout)

    async def resume(self, job_id: str, new_input: JsonValue = None) -> Job:
        """Queue a paused job to continue (pending) for any worker of its agent; returns at once.

        Raises:
            JobStateError: the job is not paused.
        """
        validate_job_id(job_id)
        check_json(new_input, "resume input", job_id)
        while True:
            job = await get_job(self.store, job_id)
            if job.status is not JobStatus.PAUSED:
                raise JobStateError(job_id, job.status, "resume")
            try:
                return await self.store.save(
                    resumed(job, new_input, self.clock, owner=None, lease_ttl=0.0), expected_version=job.version
                )
            except VersionConflict:
                continue

    async def _control(self, job_id: str, request: Literal["pause", "cancel"], timeout: float | None) -> Job:
        validate_job_id(job_id)
        while True:
            applied = await apply_control(self.store, job_id, request, self.clock, self._waiters.publish)
            if applied is not None:
                return applied
            job = await get_job(self.store, job_id)
            lease_left = 1.0
            if job.lease_until is not None:
                lease_left = max((job.lease_until - self.clock.utcnow()).total_seconds(), 0.0) + 0.1
            wait_for = lease_left if timeout is None else min(lease_left, timeout)
            try:
                return await self.wait(job_id, timeout=wait_for)
            except TimeoutError:
                if timeout is not None:
                    raise
                # the owner died before acting on the request: its lease has lapsed, try again
