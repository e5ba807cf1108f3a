"""Fork: a new job whose journal holds another job's steps before a position (DBOS's ``fork``).

The new job is created pending and owned (leased) by the caller, set running just long enough to journal
the copied steps under its own epoch (the store's fencing rules apply as to any journal), then set pending
again: the caller runs it (a worker of its agent) or lets go of its lease so any worker of the agent takes
it. On replay the copied steps return their recorded results; the agent runs from ``from_step`` on. A
caller that dies half-way leaves a job whose lease expires and that runs with the steps copied so far.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import JsonValue

from durapod.errors import JobConflictError, JobNotFound
from durapod.lowlevel.clock import Clock
from durapod.models import Job, JobStatus, check_json, new_job, new_step_record, validate_job_id
from durapod.stores.base import Store

__all__ = ["fork_job"]


async def fork_job(
    store: Store,
    clock: Clock,
    job_id: str,
    new_id: str,
    *,
    from_step: int,
    input: JsonValue,
    owner: str,
    lease_ttl: float,
) -> Job:
    """Create ``new_id`` from ``job_id``'s steps before ``from_step``; return it pending, leased to ``owner``.

    Raises:
        JobNotFound: no job ``job_id``.
        JobConflictError: ``new_id`` exists already.
        InvalidJobId, InvalidInput: a bad id or input.
        TypeError, ValueError: ``from_step`` is not an int >= 0.
    """
    validate_job_id(job_id)
    validate_job_id(new_id)
    if isinstance(from_step, bool) or not isinstance(from_step, int):
        raise TypeError(f"from_step must be an int (a step position), got {from_step!r}")
    if from_step < 0:
        raise ValueError(f"from_step must be >= 0, got {from_step!r}")
    source = await store.get(job_id)
    if source is None:
        raise JobNotFound(job_id)
    input = source.input if input is None else check_json(input, "input", new_id)
    copied = [record for record in await store.read_steps(job_id) if record.index < from_step]
    now = clock.utcnow()
    job = new_job(
        id=new_id,
        agent=source.agent,
        input=input,
        metadata={**source.metadata, "durapod.forked_from": job_id},
        created_at=now,
        updated_at=now,
        version=1,
        owner=owner,
        lease_until=now + timedelta(seconds=lease_ttl),
        epoch=1,
    )
    stored, created = await store.create(job)
    if not created:
        raise JobConflictError(new_id, "an existing job: a fork needs a new id")
    if copied:
        running = await store.save(
            stored.evolve(status=JobStatus.RUNNING, updated_at=clock.utcnow()), expected_version=stored.version
        )
        for record in copied:
            await store.append_step(
                new_step_record(new_id, record.index, record.name, record.result, 0, running.epoch, clock.utcnow())
            )
        stored = await store.save(
            running.evolve(status=JobStatus.PENDING, steps=len(copied), updated_at=clock.utcnow()),
            expected_version=running.version,
        )
    return stored
