"""The worker half of DurableAgent: claiming jobs, running each in a supervised job actor, recording
failures and retry timers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from durapod._retry import retry_unavailable
from durapod.actors.eventlog import EventLog
from durapod.actors.job import JobActor, JobRuntime, JobSlot
from durapod.errors import InvalidInput, NonRetryableError, StepMismatch, StoreError, VersionConflict
from durapod.lowlevel.actor import ActorRef
from durapod.lowlevel.clock import Clock
from durapod.lowlevel.policy import Backoff, ChildSpec, RestartDecision, RestartType
from durapod.lowlevel.supervisor import Supervisor
from durapod.models import Job, JobStatus
from durapod.stores.base import Store

__all__ = ["RunningMixin"]

#: Errors that no retry can fix: the job fails at once.
_NEVER_RETRY: tuple[type[BaseException], ...] = (NonRetryableError, InvalidInput, StepMismatch)


class RunningMixin:
    """How a :class:`~durapod.DurableAgent` runs jobs (see its documentation)."""

    # provided by DurableAgent
    name: str
    worker_id: str
    store: Store
    clock: Clock
    lease_ttl: float
    pause_timeout: float
    max_retries: int
    max_concurrency: int | None
    retry_policy: Backoff
    retry_on: Callable[[BaseException], bool] | None
    poll_interval: float
    _log: Any
    _jobs: Supervisor | None
    _opened: bool
    _slots: dict[str, JobSlot]

    def _require_jobs(self) -> Supervisor:
        raise NotImplementedError

    def publish(self, job: Job) -> None:
        raise NotImplementedError

    def publish_event(self, job_id: str, event: Any) -> None:
        raise NotImplementedError

    def forget(self, slot: JobSlot) -> None:
        raise NotImplementedError

    @property
    def is_running(self) -> bool:
        raise NotImplementedError

    async def open(self) -> None:
        raise NotImplementedError

    async def recover(self) -> list[Job]:
        """Claim and continue this agent's orphaned and queued jobs, up to ``max_concurrency``. Returns them.

        When the worker opens, this also takes back the jobs its own ``worker_id`` held (a restarted
        worker), without waiting for their leases to expire.
        """
        supervisor = self._require_jobs()
        now = self.clock.utcnow()
        # never more than this worker may run at once: the rest stays claimable by other workers
        limit = 1 << 30
        if self.max_concurrency is not None:
            limit = max(self.max_concurrency - len(supervisor.which_children()), 0)
        claimed = await self.store.claim_orphans(
            self.name,
            self.worker_id,
            lease_until=now + timedelta(seconds=self.lease_ttl),
            now=now,
            limit=limit,
            reclaim_own=not self._opened,
        )
        self._opened = True
        for job in claimed:
            self._log.info("recovering job", job_id=job.id, status=job.status, recoveries=job.recoveries)
            await self._adopt(job)
        return claimed

    async def _adopt(self, job: Job) -> None:
        """Run a job this worker just claimed, after any stale local actor of it is gone."""
        supervisor = self._require_jobs()
        ref = supervisor.child(job.id)
        if ref is not None:
            await ref.join()  # an actor that is stopping (it paused the job a moment ago)
            await supervisor.settle(job.id)  # and the supervisor has handled its exit
        if supervisor.has_child(job.id):
            await supervisor.terminate_child(job.id)  # a restart that the claim has made stale
        await self._spawn(job)

    async def serve(self, *, batch_size: int = 64) -> None:
        """Run queued and orphaned jobs until cancelled: the loop of a dedicated worker process.

        Takes jobs that ``submit()`` (or a ``Client``) queued for this agent's ``name`` or for any agent,
        jobs resumed by a ``Client``, and jobs whose owner's lease expired, up to ``max_concurrency`` at
        a time (``batch_size`` per claim when unlimited). Waits on the store between claims: stores that
        can signal new work (Redis) wake it at once; others are polled, at most every ``poll_interval``.
        Opens the worker if it is not running; cancel the task (or SIGTERM the CLI) to stop.
        """
        if not self.is_running:
            await self.open()
        supervisor = self._require_jobs()
        idle_delay = 0.005
        while True:
            capacity = batch_size
            if self.max_concurrency is not None:
                capacity = self.max_concurrency - len(supervisor.which_children())
            try:
                claimed = await self._claim_work(capacity) if capacity > 0 else 0
            except StoreError as exc:
                self._log.warning("cannot claim work; retrying", error=repr(exc))
                claimed = 0
            if claimed:
                idle_delay = 0.005
                continue
            await self._wait_for_work(idle_delay)
            idle_delay = min(idle_delay * 2, self.poll_interval)

    async def _claim_work(self, capacity: int) -> int:
        self._require_jobs()
        now = self.clock.utcnow()
        until = now + timedelta(seconds=self.lease_ttl)
        claimed = await self.store.claim_orphans(self.name, self.worker_id, lease_until=until, now=now, limit=capacity)
        if len(claimed) < capacity:
            claimed += await self.store.claim_orphans(
                "", self.worker_id, lease_until=until, now=now, limit=capacity - len(claimed)
            )
        for job in claimed:
            await self._adopt(job)
        return len(claimed)

    async def _wait_for_work(self, delay: float) -> None:
        wait_for_work = getattr(self.store, "wait_for_work", None)
        if wait_for_work is not None:
            await wait_for_work(self.name, delay)
        else:
            await asyncio.sleep(delay)

    def _live_jobs(self) -> dict[str, ActorRef[Any] | None]:
        """The jobs this worker holds: running actors, and jobs waiting out a retry delay (None)."""
        jobs = self._jobs
        if jobs is None:
            return {}
        return {info.name: info.ref for info in jobs.which_children()}

    async def _spawn(self, job: Job, *, fresh: bool = False) -> None:
        supervisor = self._require_jobs()
        # the log is fenced by the epoch this worker holds (a worker that lost the job cannot add to it)
        slot = JobSlot(
            job,
            EventLog(job.id, self.store, self.publish_event, fresh=fresh, epoch=lambda: slot.owned_epoch),
            owned_epoch=job.epoch,
        )
        self._slots[job.id] = slot
        # Restarts used so far: every execution of this run that failed (the current one has not).
        starts_new_attempt = job.status is JobStatus.PENDING and not job.resuming
        used = job.run_attempts if starts_new_attempt else max(job.run_attempts - 1, 0)

        async def on_exit(error: BaseException | None, decision: RestartDecision) -> None:
            if error is not None:
                await self._job_failed(slot, error, decision)

        spec = ChildSpec(
            job.id,
            lambda: JobActor(cast(JobRuntime, self), slot),
            RestartType.TRANSIENT,
            backoff=self.retry_policy,
            max_restarts=self.max_retries,
            restarts=used,
            should_restart=self._should_retry,
            on_exit=on_exit,
            shutdown_timeout=max(self.pause_timeout, 5.0),
        )
        try:
            await supervisor.start_child(spec)
        except ValueError:
            if not supervisor.has_child(job.id):
                raise
            # Another call started it a moment ago: one execution only.
        except BaseException:
            self._slots.pop(job.id, None)
            raise

    def _should_retry(self, error: BaseException) -> bool:
        if isinstance(error, _NEVER_RETRY):
            return False
        if not isinstance(error, Exception) and not isinstance(error, asyncio.CancelledError):
            return False
        return self.retry_on(error) if self.retry_on is not None else True

    async def _job_failed(self, slot: JobSlot, error: BaseException, decision: RestartDecision) -> None:
        """Record a crashed execution: a durable retry timer, or the final failure."""
        job = slot.job
        message = str(error) or type(error).__name__
        error_type = getattr(error, "error_type", None) or type(error).__name__
        log = self._log.bind(job_id=job.id, attempt=job.attempts)
        for _ in range(8):
            if job.status not in (JobStatus.RUNNING, JobStatus.PENDING) or job.owner != self.worker_id:
                return
            now = self.clock.utcnow()
            if decision.restart:
                new = job.evolve(
                    status=JobStatus.PENDING,
                    error=message,
                    error_type=error_type,
                    next_attempt_at=now + timedelta(seconds=decision.delay),
                    updated_at=now,
                )
            else:
                new = job.evolve(
                    status=JobStatus.FAILED,
                    error=message,
                    error_type=error_type,
                    completed_at=now,
                    updated_at=now,
                )
            try:
                slot.job = await retry_unavailable(
                    lambda: self.store.save(new, expected_version=job.version),  # noqa: B023 - awaited at once
                    self.clock,
                    log,
                    what=f"record failure of {job.id}",
                )
            except VersionConflict:
                fresh = await self.store.get(job.id)
                if fresh is None:
                    return
                slot.job = job = fresh
                continue
            if decision.restart:
                log.warning("attempt failed; retrying", error=message, delay=round(decision.delay, 3))
            else:
                log.error("job failed", error=message, error_type=error_type, reason=decision.reason)
            events = slot.events
            events.append({"type": "error", "error": message, "error_type": error_type, "will_retry": decision.restart})
            events.append({"type": "job_status", "job": slot.job.model_dump(mode="json")})
            try:
                await events.flush()
            except Exception as exc:
                log.warning("event log flush failed", error=repr(exc))
            self.publish(slot.job)
            if not decision.restart:
                self.forget(slot)
            return
