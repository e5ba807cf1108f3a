"""JobActor: one job, one task. The agent runs inside the actor's own task.

The actor's control messages (:class:`Pause`, :class:`Cancel`, :class:`LeaseLost`, :class:`Drain`), its
mailbox and when a message interrupts its task are in :mod:`durapod.actors._job_control` (the actor owns
a :class:`~durapod.actors._job_control.JobControl`); the messages are importable from here.

The actor is the single writer of its job while it runs: every write is a compare-and-set on ``version``
and every journaled step is fenced by ``epoch``. It writes its own end: the result, the pause, the
cancellation, or, when the agent raises, the error and what the :class:`~durapod.retry.RetryPolicy`
decides (the durable retry timer ``next_attempt_at``, or the final failure). The worker's job supervisor
then restarts the actor when that timer is due: the retry *is* the supervisor's restart. Those last
writes, one function per way a run ends, are in :mod:`durapod.actors._job_endings`; the writes
themselves (:meth:`JobActor.write`, :meth:`JobActor.record_step`) are here.

What the worker gives the actor and gets back (:class:`JobRuntime`, :class:`Exit`) is in
:mod:`durapod.actors._job_runtime`, and importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import JsonValue

from durapod._log import Logger
from durapod._outage import retry_unavailable
from durapod.actors import _job_endings as endings
from durapod.actors._job_control import Cancel, Drain, JobControl, LeaseLost, Pause
from durapod.actors._job_runtime import Exit, JobRuntime
from durapod.actors.eventlog import EventLog
from durapod.children import ChildRuntime
from durapod.context import JobContext, Suspend
from durapod.errors import StaleOwnerError, StoreError, StoreUnavailable, VersionConflict
from durapod.lowlevel.actor import ControlMessage
from durapod.models import SETTLED, Job, JobStatus, StepRecord, check_json, new_step_record, status_event

__all__ = ["Cancel", "Drain", "Exit", "JobActor", "JobRuntime", "LeaseLost", "Pause", "RecoveryLimitExceeded"]


class RecoveryLimitExceeded(Exception):
    """A job was taken over after its owner died more than ``max_recoveries`` times (a poison job)."""


T = TypeVar("T")


class JobActor:
    """Runs one job in one task. Made and supervised by the worker; users never build one."""

    __slots__ = (
        "_child_waits",
        "_holds_slot",
        "_reload",
        "_slot_lent",
        "_started",
        "agent_called",
        "attempt_counted",
        "control",
        "events",
        "job",
        "journal",
        "runtime",
        "store_failure",
        "usage",
    )

    def __init__(
        self, runtime: JobRuntime, job: Job, *, fresh: bool = False, reload: bool = False, started: bool = False
    ) -> None:
        self.job = job
        self.runtime = runtime  # what the worker gives this actor
        #: the mailbox and the interrupts (the job's JobContext calls it at step boundaries)
        self.control = JobControl(job.id, runtime)
        #: the job's event log: numbered, buffered, written in batches
        self.events = EventLog(
            job.id, runtime.store, runtime.publish_event, runtime.flusher, fresh=fresh, listening=runtime.listening
        )
        self.journal: dict[int, StepRecord] | None = {} if fresh else None  # None: not read yet
        # started: the job was created running, its attempt counted, its max_concurrency slot taken for
        # this actor and its job_status event logged (seq 0) by that one write (see JobStarter)
        self._started = started
        if started:
            self.events.next_seq = 1
        self.attempt_counted = started  # this actor counted a new attempt when it started the job
        self.agent_called = False  # a job paused before this had not begun its attempt
        self._holds_slot = started and runtime.concurrency is not None
        self._child_waits = 0  # awaits of child jobs in progress: the job gives its slot up meanwhile
        self._slot_lent = False  # it gave its slot up for them: it takes it again once they all end
        self._reload = reload
        #: a store error (not "unavailable") met while the agent ran: the store's failure, not the agent's
        self.store_failure: StoreError | None = None
        self.usage: dict[str, int] | None = None  # what the agent reported (JobContext counts it)

    def __repr__(self) -> str:
        return f"<JobActor {self.job.id} {self.job.status}>"

    def task_done(self, task: asyncio.Task[Exit]) -> None:
        """The task's done callback (a bound method: smaller than a partial per job)."""
        self.runtime.exited(self, task)

    @property
    def task(self) -> asyncio.Task[Exit] | None:
        """The actor's task, once the worker started it."""
        return self.control.task

    @task.setter
    def task(self, task: asyncio.Task[Exit] | None) -> None:
        self.control.task = task

    def tell(self, message: ControlMessage) -> None:
        """Queue a control message; never blocks. Interrupts the task where the message cannot wait."""
        self.control.tell(message)

    # -- the task --------------------------------------------------------------------------------

    async def run(self) -> Exit:
        """The actor's task: start the job, run its agent, write how it ended."""
        runtime = self.runtime
        control = self.control
        try:
            ctx = await self._prepare()
            if isinstance(ctx, Exit):
                return ctx
            job = self.job
            control.running_agent = control.interruptible = self.agent_called = True
            try:
                invoker = runtime.invoker
                result = invoker.dump(await invoker.call(job, ctx), job.id)
                check_json(result, "result", job.id)
            except Suspend as suspend:
                control.stop_interrupts()
                if suspend.wake_at is not None and control.reason is None:
                    return await endings.asleep(self, suspend.wake_at)
                return await endings.suspended(self, suspend.waiting_for, suspend.answer_type)
            except asyncio.CancelledError:
                if not control.acknowledge_cancel():
                    raise
                control.stop_interrupts()
                return await endings.interrupted(self, None)
            except StaleOwnerError:
                control.stop_interrupts()
                return await self.changed_elsewhere()
            except Exception as error:
                control.stop_interrupts()
                if self.store_failure is not None:
                    return await endings.store_failed(self)
                if control.reason is not None:
                    return await endings.interrupted(self, error)
                return await endings.failed(self, error)
            control.stop_interrupts()
            if self.store_failure is not None:  # the agent caught the store's error and went on
                return await endings.store_failed(self)
            if control.reason in ("cancel", "lease lost") or (control.reason == "pause" and control.was_cancelled):
                return await endings.interrupted(self, None)  # the agent swallowed our cancellation and returned
            return await endings.completed(self, result)
        except asyncio.CancelledError:
            if not control.acknowledge_cancel():
                raise  # cancelled from outside (the event loop is closing): write nothing more
            return await endings.interrupted(self, None)
        except (StoreError, VersionConflict) as exc:
            self.logger().warning(
                "the store failed; the supervisor restarts the job's actor from the store", error=repr(exc)
            )
            return Exit.CRASHED
        except Exception:
            runtime.log.exception("job actor failed", job_id=self.job.id)
            return Exit.CRASHED
        finally:
            control.cancel_timer()
            self._release_slot()
            await self.events.close()

    async def _prepare(self) -> JobContext | Exit:
        """Everything before the agent runs (its own coroutine, done before the agent starts: a parked
        job's task holds one frame less): the job's context, or how the actor ends already."""
        runtime = self.runtime
        control = self.control
        if self._reload and not await self._reload_job():
            return Exit.DONE
        if runtime.concurrency is not None and not self._holds_slot:
            control.interruptible = True
            try:
                await runtime.concurrency.acquire()
            finally:
                control.interruptible = False
            self._holds_slot = True
        if control.reason is not None:
            return await endings.interrupted(self, None)
        job = self.job
        status_logged = self._started
        if job.status is JobStatus.PENDING:
            # A resumed job continues its execution; a new or retried one starts another attempt.
            attempts = job.attempts if job.resuming else job.attempts + 1
            # a new job's log needs no reading: its first event goes with this write (no flush of its own)
            status_logged = self.events.is_loaded
            if not await self.write(
                status=JobStatus.RUNNING,
                attempts=attempts,
                next_attempt_at=None,
                resuming=False,
                log_status=status_logged,
            ):
                return Exit.DONE
            self.attempt_counted = attempts > job.attempts
        elif job.status is not JobStatus.RUNNING:
            return Exit.DONE
        if control.reason is not None:
            return await endings.interrupted(self, None)
        job = self.job
        if job.recoveries > runtime.max_recoveries:
            await self.write(
                status=JobStatus.FAILED,
                error=f"job was recovered {job.recoveries} times (max_recoveries={runtime.max_recoveries})",
                error_type=RecoveryLimitExceeded.__name__,
                completed_at=runtime.clock.utcnow(),
            )
            return Exit.DONE
        if self.journal is None:
            steps = await self._patiently(functools.partial(runtime.store.read_steps, job.id), "read the journal")
            self.journal = {record.index: record for record in steps}
        await self._patiently(self.events.load, "read the event log")
        if control.reason is not None:  # told to stop while the store was read (the lease was lost, say)
            return await endings.interrupted(self, None)
        self.events.set_epoch(job.epoch)
        if not status_logged:
            self._status_event()
        self.events.restart_step(self.journal.keys())
        return JobContext._create(self, self.journal)

    async def _reload_job(self) -> bool:
        """Read the job anew (after this actor's predecessor crashed): True if it is still ours to run."""
        store = self.runtime.store
        fresh = await self._patiently(lambda: store.get(self.job.id), "read the job")
        if fresh is None or fresh.owner != self.runtime.worker_id or fresh.epoch != self.job.epoch:
            return False
        self.job = fresh
        self.journal = None
        return fresh.status in (JobStatus.PENDING, JobStatus.RUNNING)

    async def _patiently(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """A read the actor needs before it can run: an unreachable store is waited out, as for writes."""
        try:
            return await operation()
        except StoreUnavailable:
            return await retry_unavailable(operation, self.runtime.clock, self.logger, what=what)

    async def changed_elsewhere(self) -> Exit:
        """The job was written by someone else (a lost compare-and-set, a stale epoch): read it anew and
        stop, writing nothing more."""
        fresh = await self.runtime.store.get(self.job.id)
        self.events.discard()
        if fresh is None:
            self.logger().warning("job vanished from the store")
            return Exit.DONE
        self.job = fresh
        self.logger().info("job changed elsewhere; stopping", status=fresh.status, owner=fresh.owner, epoch=fresh.epoch)
        self.runtime.written(fresh)
        return Exit.DONE

    # -- what JobContext calls -------------------------------------------------------------------

    def utcnow(self) -> datetime:
        """The runtime clock's current time."""
        return self.runtime.clock.utcnow()

    def children(self) -> ChildRuntime:
        """What starts and awaits child jobs; RuntimeError where the worker offers none."""
        children = self.runtime.children
        if children is None:
            raise RuntimeError("child jobs need a DurableAgent worker")
        return children

    async def record_step(self, index: int, name: str, result: JsonValue) -> None:
        """Journal one step, fenced by the job's epoch."""
        job = self.job
        runtime = self.runtime
        store = runtime.store
        # the events streamed so far are logged with the step: once the step is kept, a replay skips it
        # and would never stream them again
        events = self.events.take_now()
        if events is None:  # a flush of them is being written: wait for it
            events = await self.events.take()
        # the step's own event is derived from its record by the store: numbered after those
        seq = self.events.number_step()
        record = new_step_record(
            job.id, index, name, result, job.attempts, job.epoch, runtime.clock.utcnow(), event_seq=seq
        )
        try:
            try:
                await store.append_step(record, events=events)
            except StoreUnavailable:  # the write may have landed before the store broke off
                # (a partial, not a lambda: a lambda here would make cells of these names on every step)
                again = functools.partial(self._append_step_again, record, events)
                await retry_unavailable(again, runtime.clock, self.logger, what=f"step {name!r}")
        except BaseException as exc:
            self.events.unnumber(seq)
            self.events.give_back(events, [])  # not logged: they go with the next write
            if isinstance(exc, StoreError) and not isinstance(exc, StaleOwnerError | VersionConflict):
                self.store_failure = exc
            raise
        self.events.publish(events)
        self.events.publish_derived(record.step_event)
        assert self.journal is not None
        self.journal[index] = record

    async def _append_step_again(self, record: StepRecord, events: list[dict[str, JsonValue]]) -> None:
        """Journal a step whose first write had an unknown outcome: if that write landed, it is done."""
        store = self.runtime.store
        try:
            await store.append_step(record, events=events)
        except StaleOwnerError:
            landed = [step for step in await store.read_steps(record.job_id) if step.index == record.index]
            if landed != [record]:
                raise

    async def emit(self, data: dict[str, JsonValue]) -> None:
        """Log one agent event (numbered, persisted in a batch, then published live)."""
        if self.events.append(data):
            try:
                await self.events.flush()
            except StoreUnavailable:
                return  # kept buffered: the flusher (or the job's next write) persists them
            except StoreError as exc:
                self.store_failure = exc
                raise

    # -- writing (also what ends a run: durapod.actors._job_endings) -------------------------------

    def _status_event(self) -> None:
        self.events.append({"type": "job_status", "job": self.job.model_dump(mode="json")})

    async def write(
        self, *, events: list[dict[str, JsonValue]] | None = None, log_status: bool = False, **changes: Any
    ) -> bool:
        """Compare-and-set the job with ``changes``; on a lost race, re-read it and write nothing more.

        When the job leaves ``running`` (it settles, or waits for a retry or another worker), or with
        ``log_status``, the write also logs what the event log holds, the given ``events`` and a
        ``job_status`` event (derived by the store from the job written), in the same store operation;
        live subscribers get the new events once it is committed.
        """
        job = self.job
        runtime = self.runtime
        status = changes.get("status", job.status)
        leaving = status is not JobStatus.RUNNING
        if leaving:
            if status in SETTLED:
                changes["lease_until"] = None  # the store clears it: say so in the status event too
            if self.journal is not None:
                changes["steps"] = len(self.journal)
            if self.usage is not None:
                changes["usage"] = dict(self.usage)
        if "updated_at" not in changes:
            changes["updated_at"] = runtime.clock.utcnow()
        new = job.evolve(**changes)
        batch: list[dict[str, JsonValue]] = []
        unwritten = events or []
        status_seq: int | None = None
        if leaving or log_status:
            for event in unwritten:
                self.events.append(event)
            taken = self.events.take_now()
            batch = taken if taken is not None else await self.events.take()
            status_seq = self.events.number_status(running=not leaving)
        store = runtime.store
        try:
            try:
                saved = await store.save(new, expected_version=job.version, events=batch, status_seq=status_seq)
            except StoreUnavailable:  # a store that blinks does not fail the job: the write waits here
                saved = await retry_unavailable(
                    functools.partial(self._save_again, new, job.version, batch, status_seq),
                    runtime.clock,
                    self.logger,
                    what=f"write {new.status}",
                )
        except VersionConflict:
            await self.changed_elsewhere()
            return False
        except BaseException:
            if status_seq is not None:
                self.events.unnumber(status_seq)
                self.events.give_back(batch, unwritten)
            raise
        self.job = saved
        runtime.written(saved)
        if batch:
            self.events.publish(batch)
        if status_seq is not None:
            self.events.publish_derived(functools.partial(_status_event, new, status_seq))
        return True

    async def _save_again(
        self, new: Job, expected_version: int, batch: list[dict[str, JsonValue]], status_seq: int | None
    ) -> Job:
        """Save ``new`` again after a try whose outcome is unknown: if that try landed, it is done."""
        store = self.runtime.store
        try:
            return await store.save(new, expected_version=expected_version, events=batch, status_seq=status_seq)
        except VersionConflict as conflict:
            if conflict.actual == new.version:
                stored = await store.get(new.id)
                # versions and timestamps identify a write: nobody else wrote this one
                if stored is not None and (stored.version, stored.updated_at) == (new.version, new.updated_at):
                    return stored
            raise

    @contextlib.asynccontextmanager
    async def child_wait(self) -> AsyncIterator[None]:
        """While the agent waits for child jobs, its ``max_concurrency`` slot is free for them (a child
        of the same agent would otherwise wait for the slot its parent holds)."""
        self._child_waits += 1
        if self._child_waits == 1 and self._holds_slot:
            self._release_slot()
            self._slot_lent = True
        try:
            yield
        finally:
            self._child_waits -= 1
        # Taken again once the last wait ends, not the first: a parent that took its slot back while it
        # still waits for another child would hold the slot that child needs (with max_concurrency=1,
        # forever). Taken again only to go on: a job stopped while it waits needs no slot to say so.
        semaphore = self.runtime.concurrency
        if self._child_waits == 0 and self._slot_lent and semaphore is not None:
            self._slot_lent = False
            await semaphore.acquire()
            self._holds_slot = True

    def _release_slot(self) -> None:
        semaphore = self.runtime.concurrency
        if self._holds_slot and semaphore is not None:
            self._holds_slot = False
            semaphore.release()

    def logger(self) -> Logger:
        """The worker's logger, bound to this job and attempt."""
        return self.runtime.log.bind(job_id=self.job.id, attempt=self.job.attempts)


def _status_event(job: Job, seq: int) -> dict[str, JsonValue]:
    """The ``job_status`` event a write of ``job`` logged at ``seq``, for live subscribers (a function of
    its own, not a lambda in ``write``: that would make cells of the frame's variables on every write)."""
    return status_event(job.id, seq, job.model_dump(mode="json"))
