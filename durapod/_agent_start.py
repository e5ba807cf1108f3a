"""How a DurableAgent starts jobs in its worker: the new job's record, and what an existing id does.

A new job is created owned by this worker and run at once. An id that exists already is joined: a failed
job runs again (its ``attempts`` counting on), a pending or running job nobody here runs is taken over if
its owner's lease has lapsed, any other is returned as it is. Schedule fires and the children a job of
this agent starts are run here the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import JsonValue

from durapod._agent_settings import check_budget
from durapod._typed import AgentTypes
from durapod.budget import Budget
from durapod.errors import JobConflictError, VersionConflict
from durapod.lowlevel.clock import Clock
from durapod.models import Job, JobStatus, check_json, check_metadata, new_job, validate_job_id
from durapod.stores.base import Store
from durapod.worker import Worker

__all__ = ["JobStarter"]


class JobStarter:
    """Makes the agent's new jobs and starts (or joins) them in its worker. Owned by the DurableAgent.

    Args:
        store: the store as the facade's calls see it (riding out an outage).
        worker: the agent's worker, which runs the jobs (its agent's name, its id, lease and clock are the
            new jobs').
        types: the agent's input and result types.
        metadata: merged into every job's metadata (the facade's own dict).
        budget: what each job may use unless it is given its own.
    """

    def __init__(
        self, store: Store, worker: Worker, types: AgentTypes, metadata: dict[str, JsonValue], budget: Budget | None
    ) -> None:
        self.store = store
        self.worker = worker
        self.types = types
        self.metadata = metadata
        self.budget = budget
        self.name = worker.name
        self.worker_id = worker.worker_id
        self.lease_ttl = worker.lease_ttl
        self.clock: Clock = worker.clock

    def new_job(
        self,
        job_id: str,
        input: Any,
        metadata: Mapping[str, JsonValue] | None,
        *,
        owned: bool,
        budget: Budget | None = None,
    ) -> Job:
        """The new job's record; ``job_id`` was validated by the caller (``keyed_job_id``, say)."""
        input = self.types.dump_input(input, job_id)
        budget = check_budget(budget or self.budget)
        # a fresh copy for every job: a record never shares a container with the caller or another job
        extra = metadata if isinstance(metadata, Mapping) else check_metadata(metadata, "metadata", job_id)
        merged = check_json({**self.metadata, **extra}, "metadata", job_id)
        now = self.clock.utcnow()
        return new_job(
            id=job_id,
            agent=self.name,
            input=input,
            status=JobStatus.PENDING,
            metadata=merged,
            created_at=now,
            updated_at=now,
            version=1,
            owner=self.worker_id if owned else None,
            lease_until=now + timedelta(seconds=self.lease_ttl) if owned else None,
            epoch=1 if owned else 0,
            budget=None if budget is None else budget.model_dump(mode="json"),
        )

    async def create_and_run(self, job: Job) -> tuple[Job, bool]:
        """Create the new job ``job`` (owned by this worker, pending) if its id is free, and run it here.

        Returns ``job`` and True when it was created; the stored job and False when the id exists.

        When the worker can run it at once (a ``max_concurrency`` slot is free), the job is created
        already running: its first attempt counted and its ``job_status`` event logged by that one
        write, instead of a pending write and then a running one. What is returned is ``job`` as it was
        made (pending, version 1); the store holds its next version.
        """
        worker = self.worker
        if not await worker.take_slot():
            stored, created = await self.store.create(job)
            if created:
                worker.spawn(stored, fresh=True)
            return stored, created
        # the table's create (new -> pending) and claim (pending -> running, by this worker), written as one
        running = job.evolve(status=JobStatus.RUNNING, attempts=1, updated_at=job.updated_at)
        try:
            stored, created = await self.store.create(running, status_seq=0)
            if created:
                worker.spawn(stored, fresh=True, started=True)  # its actor holds the slot from here
                return job, True
        except BaseException:
            worker.give_slot()
            raise
        worker.give_slot()
        return stored, False

    async def start_fired(self, job_id: str, input: JsonValue, metadata: dict[str, JsonValue]) -> bool:
        """Create a schedule fire's job if absent and run it here (the scheduler calls this)."""
        job = self.new_job(validate_job_id(job_id), input, metadata, owned=True)
        _, created = await self.create_and_run(job)
        return created

    async def adopt_child(self, job: Job) -> None:
        """Run a child job of this agent, just queued by one of its jobs, here at once."""
        if not self.worker.is_running:
            return
        now = self.clock.utcnow()
        claimed = await self.store.claim(
            job.id, self.worker_id, lease_until=now + timedelta(seconds=self.lease_ttl), now=now
        )
        if claimed is not None:
            await self.worker.start(claimed, fresh=True)

    def _check_same(self, stored: Job, input: JsonValue) -> None:
        if stored.agent != self.name:
            raise JobConflictError(stored.id, f"another agent ({stored.agent!r})")
        if stored.input != input:
            raise JobConflictError(stored.id)

    async def start_existing(self, stored: Job, input: JsonValue) -> Job:
        """Join the job ``stored`` that a start found under its id (see the module's docstring)."""
        self._check_same(stored, input)
        worker = self.worker
        job_id = stored.id
        while stored.status is JobStatus.FAILED:
            now = self.clock.utcnow()
            rerun = stored.evolve(
                status=JobStatus.PENDING,
                run_attempts_base=stored.attempts,
                owner=self.worker_id,
                epoch=stored.epoch + 1,
                lease_until=now + timedelta(seconds=self.lease_ttl),
                next_attempt_at=None,
                completed_at=None,
                updated_at=now,
            )
            try:
                stored = await self.store.save(rerun, expected_version=stored.version)
            except VersionConflict:
                fresh = await self.store.get(job_id)
                if fresh is None:
                    raise
                stored = fresh
                continue
            self.worker.log.info("job runs again", job_id=job_id, attempts=stored.attempts)
            await worker.start(stored)
            return stored
        if stored.status in (JobStatus.PENDING, JobStatus.RUNNING) and not worker.holds(job_id):
            # Nobody here runs it: take it over if its owner's lease has lapsed (or it is ours).
            now = self.clock.utcnow()
            claimed = await self.store.claim(
                job_id, self.worker_id, lease_until=now + timedelta(seconds=self.lease_ttl), now=now, reclaim_own=True
            )
            if claimed is not None:
                await worker.start(claimed)
                return claimed
        return stored
