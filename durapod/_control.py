"""Control of jobs this process does not run: the store is the only channel.

Used by ``DurableAgent`` (for jobs no local actor runs) and by ``Client`` (which runs nothing).
A job whose owner holds a live lease gets a control request, which its owner's lease keeper delivers;
any other job is changed in the store directly, with a compare-and-set and a new epoch that fences off
a dead owner's late writes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from pydantic import JsonValue

from durapod.errors import JobNotFound, JobStateError, VersionConflict
from durapod.lowlevel.clock import Clock
from durapod.models import Job, JobStatus
from durapod.stores.base import ControlRequest, Store

__all__ = ["ALLOWED", "apply_control", "resumed"]

#: The statuses from which each request is legal (the transition table, read from the caller's side).
ALLOWED: dict[str, tuple[JobStatus, ...]] = {
    "pause": (JobStatus.PENDING, JobStatus.RUNNING),
    "cancel": (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PAUSED),
    "resume": (JobStatus.PAUSED,),
}


async def get_job(store: Store, job_id: str) -> Job:
    """The stored job, or :class:`JobNotFound`."""
    job = await store.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


async def apply_control(
    store: Store,
    job_id: str,
    request: Literal["pause", "cancel"],
    clock: Clock,
    publish: Callable[[Job], None] | None = None,
) -> Job | None:
    """Pause or cancel a job that no actor of this process runs.

    Returns the job as written when the store was changed directly, or None when a control request was
    left for the job's live owner (the caller then waits for the job to settle).

    Raises:
        JobNotFound: no such job.
        JobStateError: the request is illegal in the job's status.
    """
    while True:
        job = await get_job(store, job_id)
        if job.status not in ALLOWED[request]:
            raise JobStateError(job_id, job.status, request)
        now = clock.utcnow()
        if job.status is JobStatus.RUNNING and job.lease_until is not None and job.lease_until >= now:
            await store.request_control(ControlRequest(job_id, request, now))
            return None
        target = JobStatus.PAUSED if request == "pause" else JobStatus.CANCELLED
        changed = job.evolve(
            status=target,
            epoch=job.epoch + 1,
            completed_at=now if target is JobStatus.CANCELLED else job.completed_at,
            waiting_for=None if target is JobStatus.CANCELLED else job.waiting_for,
            paused_running=job.status is JobStatus.RUNNING if target is JobStatus.PAUSED else job.paused_running,
            updated_at=now,
        )
        try:
            stored = await store.save(changed, expected_version=job.version)
        except VersionConflict:
            continue
        if publish is not None:
            publish(stored)
        return stored


def resumed(job: Job, new_input: JsonValue, clock: Clock, *, owner: str | None, lease_ttl: float) -> Job:
    """The next version of a paused job that resumes with ``new_input``.

    With an ``owner`` a job paused mid-execution goes straight to running under that owner (the worker
    resumes it in place); without one it goes to pending, for any worker to take. A job paused before
    its execution started goes to pending either way, and starts a new attempt when it runs.
    """
    now = clock.utcnow()
    # Paused mid-execution: the worker continues it (in place, or a client queues it to be continued).
    # Paused before an execution started (pending): it goes back to pending and starts a new attempt.
    continues = job.paused_running
    return job.evolve(
        status=JobStatus.RUNNING if owner is not None and continues else JobStatus.PENDING,
        owner=owner,
        epoch=job.epoch + 1,
        lease_until=now + timedelta(seconds=lease_ttl) if owner is not None else None,
        inputs=[*job.inputs, new_input] if new_input is not None else job.inputs,
        answers=[*job.answers, new_input] if job.waiting_for is not None else job.answers,
        waiting_for=None,
        next_attempt_at=None,
        resuming=owner is None and continues,
        paused_running=False,
        updated_at=now,
    )
