"""Worker: runs the jobs of one agent. Job actors and their supervision, leases, takeover, serve(), drain.

The worker is the job actors' supervisor. Each job it runs is a :class:`~durapod.actors.job.JobActor`
in one task of its own, which the worker starts, tracks and stops. An actor writes how its job ended;
when that is a retry, the worker restarts the actor once the job's durable retry timer
(``next_attempt_at``) is due (a job waiting for it has a timer here, no task and no actor); when the actor
itself could not write (the store failed), the worker restarts it after a short backoff, reading the job
from the store again. Beside the actors, a root :class:`~durapod.lowlevel.Supervisor` runs the worker's
permanent services: the :class:`~durapod.actors.lease.LeaseKeeper` (and the scheduler, when started).
Its one wake-up timer for the sleeping jobs of its agent is a :class:`~durapod._worker_wakeups.WakeUps`.

A worker registers its id in the store while it runs (see :mod:`durapod._worker_id`): a second live
worker with the same id is refused with :class:`~durapod.WorkerIdInUse`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import JsonValue

from durapod._control import apply_control
from durapod._invoke import AgentInvoker
from durapod._log import get_logger
from durapod._worker_id import Registration, default_worker_id
from durapod._worker_wakeups import WakeUps
from durapod.actors.eventlog import Flusher
from durapod.actors.job import Cancel, Drain, Exit, JobActor, JobRuntime, LeaseLost, Pause
from durapod.actors.lease import LeaseKeeper
from durapod.children import ChildRuntime
from durapod.errors import JobStateError, StoreError
from durapod.lowlevel.actor import ActorRef, spawn
from durapod.lowlevel.clock import Clock, Timer
from durapod.lowlevel.policy import Backoff, ChildSpec, RestartType
from durapod.lowlevel.supervisor import Supervisor
from durapod.models import Job, JobStatus, error_text
from durapod.retry import RetryPolicy
from durapod.stores.base import ControlRequest, Store

__all__ = ["Worker", "default_worker_id"]

#: Restarts of an actor that could not write its job's outcome: quick at first, then every few seconds.
_CRASH_BACKOFF = Backoff(initial_delay=0.1, max_delay=5.0, multiplier=2.0, jitter=0.1)
#: Extra seconds a draining worker waits for its actors beyond their grace (their last writes).
_DRAIN_MARGIN = 5.0
_IDLE_DELAY = 0.005


def _exit_of(actor: JobActor) -> Exit | None:
    """How the actor's task ended (None: not ended, cancelled, or raised)."""
    task = actor.task
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


class Worker:
    """Runs the jobs of one agent in job actors, with leases, takeover of orphans and a graceful drain.

    Made by :class:`~durapod.DurableAgent`, which passes its settings through.
    """

    def __init__(
        self,
        invoker: AgentInvoker,
        store: Store,
        *,
        name: str,
        worker_id: str,
        retry: RetryPolicy,
        pause_timeout: float,
        lease_ttl: float,
        max_recoveries: int,
        max_concurrency: int | None,
        shutdown_grace: float,
        clock: Clock,
        poll_interval: float,
        written: Callable[[Job], None],
        let_go: Callable[[str], None],
        publish_event: Callable[[str, dict[str, JsonValue]], None],
        listening: Callable[[str], bool] | None = None,
        redact_errors: Callable[[BaseException], str] | None = None,
        children: ChildRuntime | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.worker_id = worker_id
        self.lease_ttl = lease_ttl
        self.clock = clock
        self.max_concurrency = max_concurrency
        self.shutdown_grace = shutdown_grace
        self.poll_interval = poll_interval
        self.log = get_logger("durapod.worker", worker_id=worker_id)
        self._registration = Registration(store, worker_id, lease_ttl=lease_ttl, clock=clock, log=self.log)
        self._written = written
        self._let_go = let_go
        self._runtime = JobRuntime(
            store=store,
            clock=clock,
            worker_id=worker_id,
            invoker=invoker,
            retry=retry,
            pause_timeout=pause_timeout,
            max_recoveries=max_recoveries,
            concurrency=asyncio.Semaphore(max_concurrency) if max_concurrency else None,
            log=self.log,
            written=written,
            publish_event=publish_event,
            listening=listening,
            flusher=Flusher(),
            describe_error=functools.partial(error_text, redact=redact_errors),
            children=children,
            exited=self._exited,
        )
        # the done callbacks of job tasks run in this one context (a callback added without one would
        # copy the current context for every job)
        self._callback_context = contextvars.copy_context()
        self._actors: dict[str, JobActor] = {}
        #: jobs held here without an actor: waiting for their retry timer, or to restart a crashed actor
        self._waiting: dict[str, tuple[Job, Timer]] = {}
        #: the wake-up timer of the sleeping jobs of this agent, and the task that claims them as they wake
        self._wakeups = WakeUps(self)
        self._crashes: dict[str, int] = {}
        self._root_ref: ActorRef[Any] | None = None
        self._root: Supervisor | None = None
        self._accepting = False

    def __repr__(self) -> str:
        return f"Worker(name={self.name!r}, worker_id={self.worker_id!r})"

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True between a successful ``open()`` and ``aclose()``."""
        return self._accepting

    @property
    def root(self) -> Supervisor:
        """The root supervisor of the worker's services (the lease keeper, the scheduler)."""
        if self._root is None or not self._accepting:
            raise RuntimeError(f"{self!r} is not running")
        return self._root

    async def open(self) -> None:
        """Register the worker's id, start its services and continue its orphaned jobs.

        Raises:
            WorkerIdInUse: a live worker holds this worker id.
            StoreError: the store failed; nothing is left running.
        """
        if self._accepting:
            return
        await self._registration.register()
        try:
            root = self._root = Supervisor(f"{self.name}:root", max_restarts=3, within=5.0, clock=self.clock)
            self._root_ref = await spawn(root, name=root.name)
            await root.start_child(ChildSpec("lease-keeper", lambda: LeaseKeeper(self), RestartType.PERMANENT))
            self._accepting = True
            self.log.info("worker started", agent=self.name)
            await self.claim_orphans(reclaim_own=True)
            await self.watch_wakeups()
        except BaseException:
            await self._stop_services()
            raise

    async def aclose(self, grace: float | None = None) -> None:
        """Stop: steps in flight get ``grace`` seconds (default ``shutdown_grace``) to finish and be
        journaled, then every unfinished job is handed back (pending) for the next worker. Idempotent."""
        if not self._accepting and self._root_ref is None:
            return
        self._accepting = False
        grace = self.shutdown_grace if grace is None else grace
        actors = list(self._actors.values())
        for actor in actors:
            actor.tell(Drain(grace))
        tasks = [actor.task for actor in actors if actor.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace + _DRAIN_MARGIN)
            for task in late:  # stuck on a store that does not answer: their leases will expire
                task.cancel()
            if late:
                await asyncio.wait(late)
        # jobs waiting for a timer here, and those whose actor began to wait for a retry while draining (a
        # job that fell asleep is in the store already, held by no one)
        retrying = [actor.job.id for actor in actors if _exit_of(actor) is Exit.RETRY]
        for job_id in dict.fromkeys([*self._waiting, *retrying]):
            self._take_waiting(job_id)
            try:
                await self.store.release(job_id, self.worker_id)
            except StoreError as exc:
                self.log.warning("cannot release a waiting job; its lease will expire", job_id=job_id, error=repr(exc))
        await self._wakeups.close()
        await self._runtime.flusher.close()
        await self._stop_services()
        self.log.info("worker stopped")

    async def _stop_services(self) -> None:
        self._accepting = False
        ref, self._root_ref = self._root_ref, None
        if ref is not None:
            ref.stop()
            await ref.join()
        self._root = None
        await self._registration.unregister()

    # -- the worker's id -------------------------------------------------------------------------

    async def renew_registration(self) -> None:
        """Extend the worker's claim on its id (the lease keeper calls this)."""
        await self._registration.renew()

    # -- running jobs ----------------------------------------------------------------------------

    async def take_slot(self) -> bool:
        """Take a ``max_concurrency`` slot for a job about to start here, if one is free now: True (always
        without a limit). The job's actor, spawned with ``started=True``, gives it back; a caller that
        spawns none gives it back with :meth:`give_slot`."""
        semaphore = self._runtime.concurrency
        if semaphore is None:
            return True
        if semaphore.locked():
            return False
        await semaphore.acquire()  # free: taken without waiting
        return True

    def give_slot(self) -> None:
        """Give back a slot :meth:`take_slot` took for a job that did not start here."""
        if self._runtime.concurrency is not None:
            self._runtime.concurrency.release()

    def spawn(self, job: Job, *, fresh: bool = False, reload: bool = False, started: bool = False) -> None:
        """Run ``job`` here now (in a new actor), or arm its retry timer if that is not due yet.

        ``started``: the job was created running by this worker, which took a slot for it (see
        :meth:`take_slot`). The caller made sure no actor of this job runs here (see :meth:`start`).
        """
        if not self._accepting:
            raise RuntimeError(f"{self!r} is not running")
        moment = job.next_attempt_at
        # a sleeping job is claimed only once due; one claimed early (a sleep that an earlier durapod wrote
        # keeping its owner) runs at once: its agent replays to the sleep and releases it until then
        if moment is not None and job.status is JobStatus.PENDING and not reload and job.sleeping_until is None:
            delay = (moment - self.clock.utcnow()).total_seconds()
            if delay > 0:
                self._wait(job, delay, reload=False)
                return
        actor = JobActor(self._runtime, job, fresh=fresh, reload=reload, started=started)
        task = actor.task = asyncio.get_running_loop().create_task(actor.run(), name=job.id)
        self._actors[job.id] = actor
        task.add_done_callback(actor.task_done, context=self._callback_context)

    async def start(self, job: Job, *, fresh: bool = False) -> None:
        """Run ``job`` here, once any local actor of it that is still stopping has finished."""
        old = self._actors.get(job.id)
        while old is not None and old.task is not None:
            await asyncio.wait([old.task])
            old = self._actors.get(job.id)
        self._take_waiting(job.id)
        self.spawn(job, fresh=fresh)

    def _wait(self, job: Job, delay: float, *, reload: bool) -> None:
        def due() -> None:
            entry = self._waiting.pop(job.id, None)
            if entry is None:
                return
            if self._accepting:
                self.spawn(entry[0], reload=reload)
            else:
                self._let_go(job.id)

        self._waiting[job.id] = (job, self.clock.call_later(delay, due))

    async def watch_wakeups(self) -> None:
        """Arm the wake-up timer on the next sleeping job of this agent in the store (any worker's)."""
        await self._wakeups.watch()

    def _take_waiting(self, job_id: str) -> Job | None:
        entry = self._waiting.pop(job_id, None)
        if entry is None:
            return None
        entry[1].cancel()
        self._let_go(job_id)
        return entry[0]

    def _exited(self, actor: JobActor, task: asyncio.Task[Exit]) -> None:
        if self._actors.get(actor.job.id) is actor:
            del self._actors[actor.job.id]
        try:
            self._restart_if_due(actor, task)
        finally:
            if not self.holds(actor.job.id):
                self._let_go(actor.job.id)  # local waiters of a job no longer run here read the store
            self._wakeups.slot_freed()

    def _restart_if_due(self, actor: JobActor, task: asyncio.Task[Exit]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:  # pragma: no cover - JobActor.run catches everything but cancellation
            self.log.error("job actor failed", job_id=actor.job.id, error=repr(error))
            return
        outcome = task.result()
        job = actor.job
        if outcome is Exit.CRASHED:
            crashes = self._crashes.get(job.id, 0) + 1
            self._crashes[job.id] = crashes
            if self._accepting:
                self._wait(job, _CRASH_BACKOFF.delay(crashes, 0.5), reload=True)
                # local waiters read the store again: a store that cannot even read the job gives them
                # its error, rather than a wait that lasts as long as the fault
                self._let_go(job.id)
            return
        self._crashes.pop(job.id, None)
        if outcome is Exit.RETRY and self._accepting:
            self.spawn(job)  # arms the retry timer: the actor restarts when it is due
        elif outcome is Exit.ASLEEP and job.lease_until is not None:
            self._wakeups.expect(job.lease_until)

    # -- what the control core and the lease keeper call -----------------------------------------

    def actor(self, job_id: str) -> JobActor | None:
        """The live actor of the job here, if any."""
        return self._actors.get(job_id)

    def holds(self, job_id: str) -> bool:
        """True if the job runs here or waits here for its retry timer (a sleeping job is held nowhere)."""
        return job_id in self._actors or job_id in self._waiting

    def held_jobs(self) -> list[str]:
        """Every job held here: running actors and jobs waiting for a timer."""
        return [*self._actors, *self._waiting]

    def has_live_actors(self) -> bool:
        """True while any job actor runs here."""
        return bool(self._actors)

    def take_waiting(self, job_id: str) -> Job | None:
        """Stop holding a job that waits for its timer here (a pause or cancel takes it); returns it."""
        return self._take_waiting(job_id)

    async def control(self, request: ControlRequest) -> None:
        """Act on a pause or cancel that another process left in the store for a job held here."""
        if request.kind not in ("pause", "cancel"):
            self.log.warning("unknown control request ignored", job_id=request.job_id, kind=str(request.kind))
            return
        actor = self._actors.get(request.job_id)
        if actor is not None:
            actor.tell(Pause() if request.kind == "pause" else Cancel())
            return
        job = self._take_waiting(request.job_id)
        if job is None:
            return
        with contextlib.suppress(JobStateError):  # settled meanwhile
            await apply_control(self.store, request.job_id, request.kind, self.clock, self._written)

    def lost(self, job_ids: list[str]) -> None:
        """Stop the actors of jobs this worker no longer holds, without writing."""
        for job_id in job_ids:
            actor = self._actors.get(job_id)
            if actor is not None:
                actor.tell(LeaseLost())
            self._take_waiting(job_id)

    def capacity(self, batch_size: int = 64) -> int:
        """How many more jobs this worker may take now (``batch_size`` when unlimited)."""
        if self.max_concurrency is None:
            return batch_size
        # a sleeping job (ctx.sleep) is not held here: no slot; one waiting to retry keeps its slot
        return max(self.max_concurrency - len(self._actors) - len(self._waiting), 0)

    async def claim_orphans(self, *, reclaim_own: bool = False) -> int:
        """Claim this agent's orphaned jobs (their owner's lease expired; with ``reclaim_own`` also the
        jobs this worker id held before a restart) up to the free capacity, and run them."""
        if not self._accepting:
            return 0
        limit = self.capacity()
        if limit <= 0:
            return 0
        now = self.clock.utcnow()
        claimed = await self.store.claim_orphans(
            self.name,
            self.worker_id,
            lease_until=now + timedelta(seconds=self.lease_ttl),
            now=now,
            limit=limit,
            reclaim_own=reclaim_own,
        )
        for job in claimed:
            self.log.info("recovering job", job_id=job.id, status=str(job.status), recoveries=job.recoveries)
            await self.start(job)
        return len(claimed)

    async def serve(self, *, batch_size: int = 64) -> None:
        """Run queued and orphaned jobs until cancelled (see :meth:`DurableAgent.serve`)."""
        idle_delay = _IDLE_DELAY
        while True:
            capacity = self.capacity(batch_size)
            try:
                claimed = await self._claim_work(capacity) if capacity > 0 and self._accepting else 0
            except StoreError as exc:
                self.log.warning("cannot claim work; retrying", error=repr(exc))
                claimed = 0
            if claimed:
                idle_delay = _IDLE_DELAY
                continue
            await self._wait_for_work(idle_delay)
            idle_delay = min(idle_delay * 2, self.poll_interval)

    async def _claim_work(self, capacity: int) -> int:
        now = self.clock.utcnow()
        until = now + timedelta(seconds=self.lease_ttl)
        claimed = await self.store.claim_orphans(self.name, self.worker_id, lease_until=until, now=now, limit=capacity)
        if len(claimed) < capacity:
            claimed += await self.store.claim_orphans(
                "", self.worker_id, lease_until=until, now=now, limit=capacity - len(claimed)
            )
        for job in claimed:
            await self.start(job)
        return len(claimed)

    async def _wait_for_work(self, delay: float) -> None:
        await self.store.wait_for_work(self.name, delay)
