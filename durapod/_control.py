"""Control of jobs through the store: the rules every pause, cancel and resume follows.

Used by the query/control core (:mod:`durapod.client`) and by workers for the jobs they hold without an
actor. A job whose owner holds a live lease gets a control request, which its owner's lease keeper
delivers; any other job is changed in the store directly, with a compare-and-set and a new epoch that
fences off a dead owner's late writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Final

from pydantic import JsonValue

from durapod.errors import JobNotFound, JobStateError, VersionConflict
from durapod.lowlevel.clock import Clock
from durapod.models import ControlKind, Job, JobStatus, Request, allowed_from
from durapod.stores.base import ControlRequest, Store

__all__ = ["ALLOWED", "apply_control", "get_job", "resumed"]

#: The statuses from which each control request is legal, read from the lifecycle table.
ALLOWED: Final[Mapping[Request, frozenset[JobStatus]]] = {
    request: allowed_from(request) for request in ("pause", "cancel", "resume")
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
    kind: ControlKind | str,
    clock: Clock,
    publish: Callable[[Job], None] | None = None,
) -> Job | None:
    """Pause or cancel a job that no actor of this process runs.

    Returns the job as written when the store was changed directly, or None when a control request was
    left for the job's live owner (the caller then waits for the job to settle).

    Raises:
        JobNotFound: no such job.
        JobStateError: the request is illegal in the job's status.
        ValueError: ``kind`` is neither pause nor cancel.
    """
    kind = ControlKind(kind)
    if kind is ControlKind.RESUME:
        raise ValueError("apply_control pauses or cancels; resume with resumed()")
    request: Request = "pause" if kind is ControlKind.PAUSE else "cancel"
    while True:
        job = await get_job(store, job_id)
        if job.status not in ALLOWED[request]:
            raise JobStateError(job_id, job.status, request)
        now = clock.utcnow()
        if job.status is JobStatus.RUNNING and job.lease_until is not None and job.lease_until >= now:
            await store.request_control(ControlRequest(job_id, kind, now))
            return None
        target = JobStatus.PAUSED if kind is ControlKind.PAUSE else JobStatus.CANCELLED
        changed = job.evolve(
            status=target,
            epoch=job.epoch + 1,
            completed_at=now if target is JobStatus.CANCELLED else job.completed_at,
            waiting_for=None if target is JobStatus.CANCELLED else job.waiting_for,
            # a running job, or one sleeping (or resumed and queued) mid-execution, continues on resume
            paused_running=(job.status is JobStatus.RUNNING or job.resuming)
            if target is JobStatus.PAUSED
            else job.paused_running,
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
    continues = job.paused_running
    return job.evolve(
        status=JobStatus.RUNNING if owner is not None and continues else JobStatus.PENDING,
        owner=owner,
        epoch=job.epoch + 1,
        lease_until=now + timedelta(seconds=lease_ttl) if owner is not None else None,
        inputs=[*job.inputs, new_input] if new_input is not None else job.inputs,
        answers=[*job.answers, new_input] if job.waiting_for is not None else job.answers,
        waiting_for=None,
        answer_type=None,
        next_attempt_at=None,
        resuming=owner is None and continues,
        paused_running=False,
        updated_at=now,
    )
