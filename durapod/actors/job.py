"""JobActor: runs one job's agent, journals its steps, and obeys pause, cancel and shutdown.

The job actor is the single writer of its job while it runs; every write is a compare-and-set on the
job's ``version``, and every journaled step is fenced by the job's ``epoch``. A write that loses (a
control request from another process, a worker that took the job over) makes the actor re-read the job
and stop its agent instead of overwriting anything.

An agent that raises crashes the actor; its supervisor's restart policy is the job's retry policy (the
``on_exit`` hook that :class:`~durapod.agent.DurableAgent` gives the supervisor records the failure or
the durable retry timer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import JsonValue

from durapod._retry import retry_unavailable
from durapod.actors.eventlog import EventLog
from durapod.context import JobContext, Suspend
from durapod.errors import JobNotFound, NonRetryableError, StaleOwnerError, VersionConflict
from durapod.lowlevel.actor import Actor, ControlMessage
from durapod.lowlevel.clock import Clock
from durapod.models import Job, JobStatus, StepRecord, check_json
from durapod.stores.base import Store

__all__ = ["Cancel", "JobActor", "JobRuntime", "JobSlot", "LeaseLost", "Pause", "RecoveryLimitExceeded", "Shutdown"]


class RecoveryLimitExceeded(Exception):
    """A job was taken over after its owner died more than ``max_recoveries`` times (a poison job)."""


class JobRuntime(Protocol):
    """What a job actor needs from the worker that runs it (implemented by ``DurableAgent``)."""

    store: Store
    clock: Clock
    worker_id: str
    pause_timeout: float
    lease_ttl: float
    max_recoveries: int

    def invoke(self, job: Job, ctx: JobContext) -> Awaitable[JsonValue]:
        """Call the agent for ``job``."""
        ...

    @property
    def takes_context(self) -> bool:
        """True when the agent accepts a ``ctx``: it can be paused at a step boundary."""
        ...

    def publish(self, job: Job) -> None:
        """Tell local waiters that ``job`` was written."""
        ...

    def forget(self, slot: JobSlot) -> None:
        """The job's actor stopped for good."""
        ...

    def publish_event(self, job_id: str, event: dict[str, JsonValue]) -> None:
        """Hand a new event to the job's live subscribers."""
        ...

    def log(self, job: Job) -> Any:
        """A logger bound to the job."""
        ...

    @property
    def concurrency(self) -> asyncio.Semaphore | None:
        """The worker's concurrency limit (None: unlimited)."""
        ...


@dataclass(slots=True)
class JobSlot:
    """The latest known state of a job and its event log, shared by the actors a supervisor restarts."""

    job: Job
    events: EventLog
    #: the epoch this worker holds the job under: its event log is fenced by it (``job`` may hold a newer
    #: epoch, read back after another worker took the job over)
    owned_epoch: int = 0


class Pause(ControlMessage):
    """Pause the job: at the next step boundary, or after ``pause_timeout`` by cancelling the step."""

    __slots__ = ()


class Cancel(ControlMessage):
    """Cancel the job at once; cancelled is terminal."""

    __slots__ = ()


class Shutdown(ControlMessage):
    """The worker is stopping: interrupt the agent and hand the job back (pending) for any worker."""

    __slots__ = ()


class LeaseLost(ControlMessage):
    """Another worker owns the job now: stop the agent and write nothing."""

    __slots__ = ()


@dataclass(slots=True)
class _AgentDone(ControlMessage):
    task: asyncio.Task[JsonValue]


class _Go(ControlMessage):
    __slots__ = ()


class _PauseTimeout(ControlMessage):
    __slots__ = ()


_GO = _Go()


class JobActor(Actor[ControlMessage]):
    """Runs one job. Made by ``DurableAgent``; users never build one."""

    mailbox_capacity = 64

    def __init__(self, runtime: JobRuntime, slot: JobSlot) -> None:
        self.runtime = runtime
        self.slot = slot
        self.job = slot.job
        self.log = runtime.log(slot.job)
        self._journal: list[StepRecord] = []
        self._agent: asyncio.Task[JsonValue] | None = None
        self._gate: asyncio.Task[None] | None = None
        self._pause_timer: asyncio.Task[None] | None = None
        self._pause_requested = False
        self._stop_reason: str | None = None
        self._holds_slot = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        job = self.job
        if job.status.is_settled:
            self.ref.stop()
            return
        if job.steps:
            self._journal = await self.runtime.store.read_steps(job.id)
        await self.slot.events.load()
        delay = self._seconds_until(job.next_attempt_at)
        if delay > 0 or self.runtime.concurrency is not None:
            self._gate = asyncio.create_task(self._wait_to_start(delay))
        else:
            self.ref.tell(_GO)

    async def on_stop(self, error: BaseException | None) -> None:
        self._cancel_timers()
        agent = self._agent
        finished = agent is not None and agent.done()
        if agent is not None and not finished:
            agent.cancel()
            await asyncio.wait([agent])
        if error is None and self._stop_reason is None and not self.job.status.is_settled:
            # Stopped by the worker's shutdown: keep a result that is in, hand back what is not.
            if agent is not None and finished and not agent.cancelled() and agent.exception() is None:
                with contextlib.suppress(Exception):
                    await self._complete(agent.result())
            else:
                await self._abandon()
        self._release_slot()
        if error is None:
            self.runtime.forget(self.slot)

    # -- messages --------------------------------------------------------------------------------

    async def receive(self, message: ControlMessage) -> Any:
        if type(message) is _AgentDone:
            await self._agent_done(message.task)
        elif type(message) is _Go:
            await self._go()
        elif type(message) is Pause:
            await self._pause()
        elif type(message) is Cancel:
            await self._cancel()
        elif type(message) is _PauseTimeout:
            if self._agent is not None and not self._agent.done():
                self.log.info("pause timeout: cancelling the step in flight")
                self._agent.cancel()
        elif type(message) is LeaseLost:
            self._stop_reason = "lease lost"
            self.slot.events.discard()
            self._stop_agent_and_actor()
        elif type(message) is Shutdown:
            self.ref.stop()
        return self.job

    async def _go(self) -> None:
        job = self.job
        if job.status is JobStatus.PENDING:
            # A resumed job continues its execution; a new or retried one starts another attempt.
            attempts = job.attempts if job.resuming else job.attempts + 1
            if not await self._write(status=JobStatus.RUNNING, attempts=attempts, next_attempt_at=None, resuming=False):
                return
        elif job.status is not JobStatus.RUNNING:
            self.ref.stop()
            return
        if self.job.recoveries > self.runtime.max_recoveries:
            self._stop_reason = "recovery limit"
            await self._write(
                status=JobStatus.FAILED,
                error=f"job was recovered {self.job.recoveries} times (max_recoveries={self.runtime.max_recoveries})",
                error_type=RecoveryLimitExceeded.__name__,
                completed_at=self.runtime.clock.utcnow(),
            )
            self.ref.stop()
            return
        self.slot.owned_epoch = self.job.epoch
        self.log = self.log.bind(attempt=self.job.attempts)
        self.log.debug("agent starting", recoveries=self.job.recoveries)
        self.status_event()
        ctx = JobContext._create(self, self._journal)
        agent = self._agent = asyncio.create_task(self._execute(ctx))
        agent.add_done_callback(self._on_agent_done)

    async def _execute(self, ctx: JobContext) -> JsonValue:
        return await self.runtime.invoke(self.job, ctx)

    def _on_agent_done(self, task: asyncio.Task[JsonValue]) -> None:
        self.ref.tell(_AgentDone(task))

    async def _agent_done(self, task: asyncio.Task[JsonValue]) -> None:
        self._cancel_timers()
        if self._stop_reason is not None:  # cancelled, taken over, changed elsewhere: nothing to write
            self.ref.stop()
            return
        if task.cancelled():
            if self._pause_requested:
                await self._write_paused(None)
            else:
                # Cancelled by something other than us (e.g. the agent cancelled itself): a failure.
                raise asyncio.CancelledError("the agent task was cancelled")
            return
        error = task.exception()
        if error is None:
            await self._complete(task.result())
        elif isinstance(error, Suspend):
            await self._write_paused(error.waiting_for)
        elif isinstance(error, StaleOwnerError):
            await self._reconcile()
        elif self._pause_requested and isinstance(error, Exception) and not isinstance(error, NonRetryableError):
            # A pause was asked for while the attempt failed: pause with the error rather than retry.
            self._stop_reason = "paused"
            if await self._write(
                status=JobStatus.PAUSED, error=str(error), error_type=type(error).__name__, paused_running=False
            ):
                await self._settled_event()
            self.ref.stop()
        else:
            raise error

    async def _complete(self, result: JsonValue) -> None:
        check_json(result, "result", self.job.id)
        self._stop_reason = "completed"
        if await self._write(
            status=JobStatus.COMPLETED,
            result=result,
            error=None,
            error_type=None,
            completed_at=self.runtime.clock.utcnow(),
            waiting_for=None,
        ):
            self.slot.events.append({"type": "done", "content": result})
            await self._settled_event()
        self.ref.stop()

    async def _write_paused(self, waiting_for: str | None) -> None:
        self._stop_reason = "paused"
        if await self._write(status=JobStatus.PAUSED, waiting_for=waiting_for, paused_running=True):
            self.log.info("job paused", waiting_for=waiting_for)
            if waiting_for is not None:
                self.slot.events.append({"type": "interrupt", "prompt": waiting_for})
            await self._settled_event()
        self.ref.stop()

    async def _pause(self) -> None:
        status = self.job.status
        if status is JobStatus.PENDING:
            self._stop_reason = "paused"
            self._cancel_timers()
            if await self._write(status=JobStatus.PAUSED, paused_running=False):
                await self._settled_event()
            self.ref.stop()
        elif status is JobStatus.RUNNING and not self._pause_requested:
            self._pause_requested = True
            agent = self._agent
            if agent is None or agent.done():
                return
            if not self.runtime.takes_context:
                agent.cancel()
            else:
                self._pause_timer = asyncio.create_task(self._pause_after(self.runtime.pause_timeout))

    async def _cancel(self) -> None:
        if self.job.status.is_settled:
            return
        self._stop_reason = "cancel"
        self._cancel_timers()
        agent = self._agent
        if agent is not None and not agent.done():
            agent.cancel()
        if await self._write(status=JobStatus.CANCELLED, completed_at=self.runtime.clock.utcnow(), waiting_for=None):
            await self._settled_event()
        self.log.info("job cancelled")
        if agent is None or agent.done():
            self.ref.stop()

    async def _abandon(self) -> None:
        """Hand an unfinished job back as pending (the worker is stopping), not counting the attempt."""
        job = self.job
        attempts = (
            job.attempts - 1
            if job.status is JobStatus.RUNNING and job.attempts > job.run_attempts_base
            else job.attempts
        )
        with contextlib.suppress(StaleOwnerError, VersionConflict, JobNotFound):
            if await self._write(status=JobStatus.PENDING, attempts=attempts, next_attempt_at=None):
                self.status_event()
                await self.slot.events.flush()
            await self.runtime.store.release(job.id, self.runtime.worker_id)

    # -- what JobContext calls -------------------------------------------------------------------

    def check_suspend(self) -> None:
        """Raise :class:`Suspend` at a step boundary if a pause was asked for."""
        if self._pause_requested:
            raise Suspend(None)

    async def record_step(self, index: int, name: str, result: JsonValue) -> StepRecord:
        """Journal one step, fenced by the job's epoch."""
        job = self.job
        record = StepRecord.model_construct(
            job_id=job.id,
            index=index,
            name=name,
            result=result,
            attempt=job.attempts,
            epoch=job.epoch,
            recorded_at=self.runtime.clock.utcnow(),
        )
        store = self.runtime.store
        await retry_unavailable(
            lambda: store.append_step(record), self.runtime.clock, self.log, what=f"journal step {name!r}"
        )
        self.slot.events.append({"type": "step", "name": name, "index": index, "result": result})
        return record

    async def emit(self, data: dict[str, JsonValue]) -> None:
        """Log one agent event (numbered, published live, persisted in a batch)."""
        if self.slot.events.append(data):
            await self.slot.events.flush()

    def status_event(self) -> None:
        """Log a ``job_status`` event with the job as it is now."""
        self.slot.events.append({"type": "job_status", "job": self.job.model_dump(mode="json")})

    async def _settled_event(self) -> None:
        self.status_event()
        try:
            await self.slot.events.flush()
        except Exception as exc:  # the job's state is written; its log catches up on the next flush
            self.log.warning("event log flush failed", error=repr(exc))

    # -- internals -------------------------------------------------------------------------------

    async def _write(self, **changes: Any) -> bool:
        """Compare-and-set the job with ``changes``; on a lost race, re-read it and stop the agent."""
        job = self.job
        new = job.evolve(**changes)
        store = self.runtime.store
        try:
            # A store that blinks does not fail the job: the result waits here until it can be written.
            self.job = await retry_unavailable(
                lambda: store.save(new, expected_version=job.version),
                self.runtime.clock,
                self.log,
                what=f"write {new.status}",
            )
        except VersionConflict:
            await self._reconcile()
            return False
        self.slot.job = self.job
        self.runtime.publish(self.job)
        return True

    async def _reconcile(self) -> None:
        fresh = await self.runtime.store.get(self.job.id)
        if fresh is None:
            self.log.warning("job vanished from the store")
            self._stop_reason = "deleted"
        else:
            self.job = self.slot.job = fresh
            self.log.info("job changed elsewhere; stopping", status=fresh.status, owner=fresh.owner, epoch=fresh.epoch)
            self._stop_reason = "changed elsewhere"
            self.slot.events.discard()
            self.runtime.publish(fresh)
        self._stop_agent_and_actor()

    def _stop_agent_and_actor(self) -> None:
        self._cancel_timers()
        agent = self._agent
        if agent is not None and not agent.done():
            agent.cancel()
        else:
            self.ref.stop()

    def _cancel_timers(self) -> None:
        for task in (self._gate, self._pause_timer):
            if task is not None and not task.done():
                task.cancel()
        self._gate = self._pause_timer = None

    def _release_slot(self) -> None:
        semaphore = self.runtime.concurrency
        if self._holds_slot and semaphore is not None:
            self._holds_slot = False
            semaphore.release()

    def _seconds_until(self, moment: datetime | None) -> float:
        if moment is None:
            return 0.0
        return (moment - self.runtime.clock.utcnow()) / timedelta(seconds=1)

    async def _wait_to_start(self, delay: float) -> None:
        if delay > 0:
            await self.runtime.clock.sleep(delay)
        semaphore = self.runtime.concurrency
        if semaphore is not None:
            await semaphore.acquire()
            self._holds_slot = True
        self.ref.tell(_GO)

    async def _pause_after(self, delay: float) -> None:
        await self.runtime.clock.sleep(delay)
        self.ref.tell(_PauseTimeout())


def job_actor_factory(runtime: JobRuntime, slot: JobSlot) -> Callable[[], JobActor]:
    """The factory a supervisor calls for each (re)start of the job's actor."""

    def build() -> JobActor:
        return JobActor(runtime, slot)

    return build
