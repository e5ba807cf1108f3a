"""How a job actor's run ends: the job's last write for this run, and the :class:`Exit` its supervisor gets.

One function per way a run ends: the agent returned (:func:`completed`), stopped at a step boundary or an
interrupt (:func:`suspended`), went to sleep (:func:`asleep`), failed (:func:`failed`), was interrupted
by a message (:func:`interrupted`: cancel, pause, drain, lease lost), or a store write of the run failed
(:func:`store_failed`); and a drained job is given back (:func:`handed_back`). Each takes the actor and
writes through it (:meth:`~durapod.actors.job.JobActor.write`, a compare-and-set on the job's version);
the actor calls them once its agent has stopped.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from durapod.actors._job_runtime import Exit
from durapod.children import cancel_children, child_ids
from durapod.errors import JobNotFound, StaleOwnerError, StoreError, VersionConflict
from durapod.models import JobStatus
from durapod.sleeping import sleep_lease_end

if TYPE_CHECKING:
    from durapod.actors.job import JobActor

__all__ = ["asleep", "completed", "failed", "handed_back", "interrupted", "store_failed", "suspended"]


async def store_failed(actor: JobActor) -> Exit:
    """A step or an event could not be written: whether it landed is unknown, so this execution
    cannot go on. A stop asked for meanwhile (cancel, pause, drain, lease lost) is carried out;
    otherwise the supervisor restarts the actor, which reads the job and its journal anew: a
    journaled step is replayed, one that never landed runs again, and no attempt is counted."""
    actor.control.at_boundary_quietly()
    if actor.control.reason is not None:
        return await interrupted(actor, None)
    actor.logger().warning(
        "the store failed while the job ran; restarting it from the store", error=repr(actor.store_failure)
    )
    return Exit.CRASHED


async def completed(actor: JobActor, result: JsonValue) -> Exit:
    """The agent returned ``result``: the job completes."""
    now = actor.runtime.clock.utcnow()
    if (
        await actor.write(
            status=JobStatus.COMPLETED,
            result=result,
            error=None,
            error_type=None,
            completed_at=now,
            updated_at=now,
            waiting_for=None,
            events=[{"type": "done", "content": result}],
        )
        and actor.runtime.log.is_enabled_for(logging.DEBUG)  # binding the job's logger costs
    ):
        actor.logger().debug("job completed")
    return Exit.DONE


async def suspended(actor: JobActor, waiting_for: str | None, answer_type: str | None = None) -> Exit:
    """The agent stopped at a step boundary (a pause, a drain) or at ``ctx.interrupt`` (``waiting_for``):
    the job pauses, or is handed back when the worker drains."""
    if waiting_for is None and actor.control.reason == "drain":
        return await handed_back(actor)
    events: list[dict[str, JsonValue]] = []
    if waiting_for is not None:
        events.append({"type": "interrupt", "prompt": waiting_for})
    # Paused before its execution started (a new attempt not begun): resume starts a new attempt.
    changes: dict[str, Any] = {"paused_running": actor.job.status is JobStatus.RUNNING}
    if actor.attempt_counted and not actor.agent_called:
        changes = {"paused_running": False, "attempts": actor.job.attempts - 1}
    changes["answer_type"] = answer_type
    if await actor.write(status=JobStatus.PAUSED, waiting_for=waiting_for, events=events, **changes):
        actor.logger().info("job paused", waiting_for=waiting_for)
    return Exit.DONE


async def asleep(actor: JobActor, wake_at: datetime) -> Exit:
    """The agent sleeps (``ctx.sleep``): the job goes back to the store pending, with no owner and a
    lease that ends at ``wake_at``, so that no worker holds it meanwhile and any may claim it then."""
    if await actor.write(
        status=JobStatus.PENDING,
        next_attempt_at=wake_at,
        resuming=True,
        owner=None,
        lease_until=sleep_lease_end(wake_at),
    ):
        actor.logger().info("job sleeps", until=wake_at.isoformat())
        return Exit.ASLEEP
    return Exit.DONE


async def interrupted(actor: JobActor, error: BaseException | None) -> Exit:
    """The task was interrupted (or the agent failed while we were stopping it): act on the reason."""
    actor.control.at_boundary_quietly()
    reason = actor.control.reason
    if reason == "lease lost":
        actor.events.discard()
        actor.logger().warning("lease lost; stopping without writing")
        return Exit.DONE
    if reason == "cancel":
        await _cancel_children(actor)  # first: once the job reads cancelled, so do its children
        if await actor.write(status=JobStatus.CANCELLED, completed_at=actor.runtime.clock.utcnow(), waiting_for=None):
            actor.logger().info("job cancelled")
        return Exit.DONE
    if reason == "drain":
        return await handed_back(actor)
    if reason == "pause":
        if isinstance(error, Exception) and actor.runtime.retry.is_retryable(error):
            # A pause was asked for while the attempt failed: pause with the error rather than retry.
            text = actor.runtime.describe_error(error)
            if await actor.write(
                status=JobStatus.PAUSED, error=text, error_type=type(error).__name__, paused_running=False
            ):
                actor.logger().info("job paused after a failed attempt", error=text)
            return Exit.DONE
        if error is None:
            return await suspended(actor, None)
    if error is not None:
        return await failed(actor, error)
    return Exit.CRASHED  # pragma: no cover - an interruption always has a reason


async def _cancel_children(actor: JobActor) -> None:
    """The job was cancelled: cancel the children it started that have not finished."""
    journal = actor.journal
    if not journal or not child_ids(journal):
        return
    try:
        await cancel_children(actor.runtime.store, actor.job.id, actor.runtime.clock, journal)
    except StoreError as exc:
        actor.logger().warning("cannot cancel the job's children", error=repr(exc))


async def failed(actor: JobActor, error: BaseException) -> Exit:
    """The attempt failed with ``error``: the job waits for its retry, or fails, as the retry policy decides."""
    job = actor.job
    runtime = actor.runtime
    message = runtime.describe_error(error)
    error_type = getattr(error, "error_type", None) or type(error).__name__
    decision = runtime.retry.decide(error, failed_executions=max(job.run_attempts, 1))
    now = runtime.clock.utcnow()
    events: list[dict[str, JsonValue]] = [
        {"type": "error", "error": message, "error_type": error_type, "will_retry": decision.retry}
    ]
    log = actor.logger()
    if decision.retry:
        written = await actor.write(
            status=JobStatus.PENDING,
            error=message,
            error_type=error_type,
            next_attempt_at=now + timedelta(seconds=decision.delay),
            events=events,
        )
        if written:
            log.warning("attempt failed; retrying", error=message, delay=round(decision.delay, 3))
            return Exit.RETRY
        return Exit.DONE
    if await actor.write(
        status=JobStatus.FAILED, error=message, error_type=error_type, completed_at=now, events=events
    ):
        log.error("job failed", error=message, error_type=error_type, reason=decision.reason)
    return Exit.DONE


async def handed_back(actor: JobActor) -> Exit:
    """Give the unfinished job back as pending (the worker is stopping), not counting the attempt."""
    job = actor.job
    runtime = actor.runtime
    attempts = job.attempts
    if job.status is JobStatus.RUNNING and job.attempts > job.run_attempts_base and not job.resuming:
        attempts -= 1
    try:
        if await actor.write(status=JobStatus.PENDING, attempts=attempts, next_attempt_at=None):
            await runtime.store.release(job.id, runtime.worker_id)
    except (StaleOwnerError, VersionConflict, JobNotFound):
        pass
    return Exit.HANDED_BACK
