"""DurableAgent: the facade users hold. It turns calls into job records and actor messages.

A ``DurableAgent`` is a worker: inside ``async with durable:`` it runs a supervision tree (a root
supervisor over a lease keeper and a supervisor of job actors), continues the orphaned jobs of its agent,
and runs every job it starts in a job actor.
"""

from __future__ import annotations

import asyncio
import builtins
import math
import random as _random
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, Self, cast

from pydantic import JsonValue

from durapod._control import ALLOWED, apply_control, get_job, resumed
from durapod._invoke import AgentInvoker, agent_name
from durapod._log import get_logger
from durapod._retry import PatientStore
from durapod._running import RunningMixin
from durapod._scheduling import ScheduleRequest, SchedulingMixin
from durapod._stream import EventSource, Subscribers, follow
from durapod._waiting import Waiters, parse_statuses
from durapod.actors.job import Cancel, JobSlot, Pause
from durapod.actors.lease import LeaseKeeper
from durapod.actors.scheduler import SchedulerActor
from durapod.context import JobContext
from durapod.errors import (
    JobConflictError,
    JobStateError,
    VersionConflict,
)
from durapod.events import Event
from durapod.lowlevel.actor import ActorRef, spawn
from durapod.lowlevel.clock import SYSTEM_CLOCK, Clock
from durapod.lowlevel.policy import Backoff, ChildSpec, RestartType
from durapod.lowlevel.supervisor import Supervisor
from durapod.models import Job, JobStatus, check_json, validate_job_id
from durapod.schedules import CronSchedule, parse_timezone
from durapod.stores.base import Store

__all__ = ["DurableAgent", "parse_statuses"]

_log = get_logger("durapod")


def _positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


class DurableAgent(RunningMixin, SchedulingMixin):
    """Makes an async agent durable: checkpointed steps, pause/resume/cancel, retries with backoff.

    Args:
        agent: ``async def f(input)`` or ``async def f(input, ctx)``, an async generator of events, or an
            object with ``async def run(input[, ctx])``.
        store: where jobs live (:class:`MemoryStore`, :class:`SQLiteStore`, :class:`RedisStore`).
        max_retries: retries after the first execution fails (total executions <= max_retries + 1).
        retry_delay: seconds before the first retry.
        max_retry_delay: the cap on the delay between retries.
        backoff: the multiplier of the delay from one retry to the next.
        jitter: the delay is multiplied by ``1 + jitter * U(0, 1)``.
        retry_on: a predicate on the exception: False fails the job at once.
        pause_timeout: seconds a pause waits for the step in flight before cancelling it.
        lease_ttl: seconds a job's lease lasts without renewal (renewed every third of it).
        max_recoveries: how many times a job is taken over after its worker died before it fails.
        max_concurrency: the most jobs this worker runs at once (None: no limit).
        worker_id: this worker's id (default: a fresh one). A restarted worker given the same id reclaims
            its jobs at once.
        name: the agent's name on its jobs (default: the agent's qualified name).
        metadata: merged into every job's metadata.
        clock: time source (a ``durapod.testing.FakeClock`` in tests).
        random: jitter source, uniform in [0, 1).
        poll_interval: the longest gap between two store reads while waiting on another process's job.
        store_timeout: how long public calls wait out an unreachable store before raising
            ``StoreUnavailable`` (running jobs wait for it indefinitely: no job fails because the store
            blinked).

    Example:
        >>> async def triage(ticket: str, ctx: JobContext) -> str:
        ...     facts = await ctx.step("lookup", lookup_ticket, ticket)
        ...     return await ctx.step("draft", llm_draft, facts)
        >>> durable = DurableAgent(triage, MemoryStore(), max_retries=3, retry_delay=2.0)
        >>> async with durable:                                      # doctest: +SKIP
        ...     job = await durable.run("job_123", "Handle ticket #456")
    """

    def __init__(
        self,
        agent: Any,
        store: Store,
        *,
        max_retries: int = 3,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
        backoff: float = 2.0,
        jitter: float = 0.1,
        retry_on: Callable[[BaseException], bool] | None = None,
        pause_timeout: float = 30.0,
        lease_ttl: float = 30.0,
        max_recoveries: int = 10,
        max_concurrency: int | None = None,
        worker_id: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        schedule: str | None = None,
        on_schedule: Callable[..., Any] | None = None,
        timezone: str = "UTC",
        clock: Clock | None = None,
        random: Callable[[], float] | None = None,
        poll_interval: float = 0.25,
        store_timeout: float = 10.0,
    ) -> None:
        self._invoker = AgentInvoker(agent)
        if not isinstance(store, Store):
            raise TypeError(f"store must be a durapod store (MemoryStore, SQLiteStore, RedisStore), got {store!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if isinstance(max_recoveries, bool) or not isinstance(max_recoveries, int) or max_recoveries < 0:
            raise ValueError(f"max_recoveries must be an int >= 0, got {max_recoveries!r}")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be an int >= 1 or None, got {max_concurrency!r}")
        self.agent = agent
        self.store = store
        self.max_retries = max_retries
        self.retry_policy = Backoff(
            initial_delay=_positive("retry_delay", retry_delay),
            max_delay=_positive("max_retry_delay", max_retry_delay),
            multiplier=backoff,
            jitter=_positive("jitter", jitter),
        )
        self.retry_on = retry_on
        self.pause_timeout = _positive("pause_timeout", pause_timeout)
        self.lease_ttl = _positive("lease_ttl", lease_ttl, allow_zero=False)
        self.max_recoveries = max_recoveries
        self.max_concurrency = max_concurrency
        self.worker_id = worker_id if worker_id is not None else f"worker-{uuid.uuid4().hex[:12]}"
        validate_job_id(self.worker_id)
        self.name = name if name is not None else agent_name(agent)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        self.metadata: dict[str, JsonValue] = dict(metadata or {})
        check_json(self.metadata, "metadata")
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._random = random or _random.random
        self.poll_interval = _positive("poll_interval", poll_interval, allow_zero=False)
        self.store_timeout = _positive("store_timeout", store_timeout, allow_zero=False)
        parse_timezone(timezone)
        self.timezone = timezone
        self._on_schedule: dict[str, Callable[..., Any] | None] = {}
        self._pending_schedules: dict[str, ScheduleRequest] = {}
        if schedule is not None:
            CronSchedule(schedule, timezone)  # ValueError naming a bad expression, now
            self._pending_schedules["default"] = ScheduleRequest(
                schedule, on_schedule, timezone, "skip", "none", 86_400.0
            )
            self._on_schedule["default"] = on_schedule
        elif on_schedule is not None:
            raise ValueError("on_schedule needs a schedule= cron expression")
        self._scheduler: SchedulerActor | None = None
        self._log = _log.bind(worker_id=self.worker_id, agent=self.name)
        self._patient: Store = cast(Store, PatientStore(store, self.clock, self.store_timeout, self._log))
        self._waiters = Waiters()
        self._subscribers = Subscribers()
        self._background: set[asyncio.Future[Any]] = set()
        self._slots: dict[str, JobSlot] = {}
        self._concurrency = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._root: Supervisor | None = None
        self._root_ref: ActorRef[Any] | None = None
        self._jobs: Supervisor | None = None
        self._closing = False
        self._opened = False

    def __repr__(self) -> str:
        return f"DurableAgent(name={self.name!r}, worker_id={self.worker_id!r}, store={self.store!r})"

    # -- JobRuntime (what job actors call) -------------------------------------------------------

    def invoke(self, job: Job, ctx: JobContext) -> Any:
        """Call the agent for ``job`` (used by job actors)."""
        return self._invoker(job, ctx)

    @property
    def takes_context(self) -> bool:
        """True when the agent accepts a ``ctx`` (it can be paused at a step boundary)."""
        return self._invoker.takes_context

    @property
    def concurrency(self) -> asyncio.Semaphore | None:
        """The semaphore that enforces ``max_concurrency`` (None: unlimited)."""
        return self._concurrency

    def publish(self, job: Job) -> None:
        """Wake the local callers waiting for ``job`` to settle (used by job actors)."""
        self._waiters.publish(job)

    def forget(self, slot: JobSlot) -> None:
        """The job's actor is gone for good (used by job actors): drop its slot."""
        if self._slots.get(slot.job.id) is slot:
            del self._slots[slot.job.id]

    def publish_event(self, job_id: str, event: dict[str, JsonValue]) -> None:
        """Hand a new event to the job's live subscribers (used by job actors)."""
        self._subscribers.publish(job_id, event)

    def log(self, job: Job) -> Any:
        """A logger bound to the job (used by job actors)."""
        return self._log.bind(job_id=job.id, attempt=job.attempts)

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def is_running(self) -> bool:
        """True between ``open()`` (or ``async with``) and ``aclose()``."""
        return self._root_ref is not None and self._root_ref.is_alive

    async def open(self) -> None:
        """Start the supervision tree and continue this agent's orphaned jobs. Idempotent."""
        if self.is_running:
            return
        self._closing = False
        self._opened = False
        root = self._root = Supervisor(f"{self.name}:root", max_restarts=3, within=5.0, clock=self.clock)
        self._root_ref = await spawn(root, name=root.name)

        def jobs_supervisor() -> Supervisor:
            self._jobs = Supervisor(
                f"{self.name}:jobs",
                max_restarts=None,
                clock=self.clock,
                random=self._random,
                ordered_shutdown=False,
            )
            return self._jobs

        await root.start_child(ChildSpec("jobs", jobs_supervisor, RestartType.PERMANENT, shutdown_timeout=60.0))
        await root.start_child(
            ChildSpec(
                "lease-keeper",
                lambda: LeaseKeeper(self.store, self.clock, self.worker_id, self.lease_ttl, self._live_jobs),
                RestartType.PERMANENT,
            )
        )
        self._log.info("worker started")
        for name, request in list(self._pending_schedules.items()):
            await self._save_schedule(name, request)
        await self.recover()

    async def aclose(self) -> None:
        """Stop the worker: running jobs are interrupted and handed back (pending) for the next worker.

        Their journals keep every finished step, so they continue where they stopped. Idempotent.
        """
        ref, self._root_ref = self._root_ref, None
        if ref is None:
            return
        self._closing = True
        ref.stop()
        await ref.join()
        self._log.info("worker stopped")

    # -- the public API --------------------------------------------------------------------------

    async def run(
        self, job_id: str, input: JsonValue = None, *, metadata: Mapping[str, JsonValue] | None = None
    ) -> Job:
        """Start (or join) a job and wait until it settles: completed, failed, cancelled or paused.

        On an existing id: completed and cancelled jobs are returned unchanged; a pending or running job is
        waited for (never run twice); a paused job is returned as it is; a failed job runs again, its
        ``attempts`` continuing to count.

        Raises:
            InvalidJobId: the id is empty, too long, or holds whitespace or control characters.
            InvalidInput: the input or metadata is not JSON.
            JobConflictError: the id exists with a different input (or another agent).
        """
        job = await self.start(job_id, input, metadata=metadata)
        # no await between start() and registering the waiter: the job cannot settle unseen in between
        is_local = self._jobs is not None and self._jobs.has_child(job_id)
        return await self._waiters.wait(self._patient, job_id, None, self.poll_interval, is_local, job)

    async def start(
        self, job_id: str, input: JsonValue = None, *, metadata: Mapping[str, JsonValue] | None = None
    ) -> Job:
        """Create a job and start it in its actor; returns at once (with the job as created).

        Same rules as :meth:`run` for existing ids, without waiting.
        """
        job = self._new_job(job_id, input, metadata, owned=True)
        supervisor = self._require_jobs()
        stored, created = await self._patient.create(job)
        if created:
            await self._spawn(stored, fresh=True)
            return stored
        return await self._start_existing(supervisor, stored, input)

    async def submit(
        self, job_id: str, input: JsonValue = None, *, metadata: Mapping[str, JsonValue] | None = None
    ) -> Job:
        """Queue a job without running it here: a worker's ``serve()`` takes it. Returns the stored job.

        Raises:
            JobConflictError: the id exists with a different input.
        """
        job = self._new_job(job_id, input, metadata, owned=False)
        stored, created = await self._patient.create(job)
        if not created:
            self._check_same(stored, input)
        return stored

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job settles (completed, failed, cancelled or paused) and return it.

        Raises:
            JobNotFound: no job has that id.
            TimeoutError: ``timeout`` seconds passed first.
        """
        validate_job_id(job_id)
        is_local = self._jobs is not None and self._jobs.has_child(job_id)
        return await self._waiters.wait(self._patient, job_id, timeout, self.poll_interval, is_local)

    async def stream(self, job_id: str, *, after: int = -1) -> AsyncGenerator[Event, None]:
        """Yield the job's events after ``after``: first those logged, then live ones, until it settles.

        Works from any coroutine, and from another process on a shared store (by reading the log). A
        consumer that stops reading never stops the job; one that falls behind resumes from the log.

        Raises:
            JobNotFound: no job has that id.
        """
        validate_job_id(job_id)
        async for event in follow(self._event_source(), job_id, after):
            yield event

    async def run_stream(
        self, job_id: str, input: JsonValue = None, *, metadata: Mapping[str, JsonValue] | None = None
    ) -> AsyncGenerator[Event, None]:
        """Start (or join) a job like :meth:`run` and yield its events until it settles.

        Yields ``job_status`` events (at the start, the end, and around each failed attempt), the agent's
        ``token``, ``tool_call``, ``tool_result``, ``step`` and ``interrupt`` events, and ``done``.
        """
        source = self._event_source()
        with source.subscribe(job_id) as subscription:
            await self.start(job_id, input, metadata=metadata)
            async for event in follow(source, job_id, -1, subscription):
                yield event

    def _event_source(self) -> EventSource:
        def unflushed(job_id: str, after: int) -> builtins.list[dict[str, JsonValue]]:
            slot = self._slots.get(job_id)
            return slot.events.unflushed(after) if slot is not None else []

        return EventSource(self.store, self._subscribers, unflushed, self.poll_interval)

    async def status(self, job_id: str) -> Job | None:
        """The job with that id as stored, or None."""
        return await self._patient.get(validate_job_id(job_id))

    async def list(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        *,
        limit: int | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
    ) -> builtins.list[Job]:
        """This agent's jobs, newest first, filtered by status (one or several) and metadata.

        Raises:
            ValueError: an unknown status, or a negative limit.
        """
        statuses = parse_statuses(status)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
        page = await self._patient.list(status=statuses, agent=self.name, metadata=metadata, limit=limit)
        return page.jobs

    async def pause(self, job_id: str) -> Job:
        """Pause a pending or running job; returns once it is durably paused (or settled otherwise).

        A running job stops at its next step boundary, or after ``pause_timeout`` seconds by cancelling the
        step in flight (which runs again on resume). A job that finishes first is returned as it ended.

        Raises:
            JobNotFound: no job has that id.
            JobStateError: the job is paused, completed, failed or cancelled already.
        """
        return await self._control(job_id, "pause")

    async def cancel(self, job_id: str) -> Job:
        """Cancel a pending, running or paused job at once; cancelled is terminal.

        The running agent gets ``CancelledError`` in whatever it awaits.

        Raises:
            JobNotFound: no job has that id.
            JobStateError: the job is completed, failed or cancelled already.
        """
        return await self._control(job_id, "cancel")

    async def resume(self, job_id: str, new_input: JsonValue = None) -> Job:
        """Continue a paused job from its checkpoint and wait until it settles again.

        ``new_input`` (if not None) is appended to ``job.inputs``; an agent waiting in
        ``ctx.interrupt(prompt)`` receives it as that call's value; a plain agent is called with it.

        Raises:
            JobNotFound: no job has that id.
            JobStateError: the job is not paused.
            InvalidInput: ``new_input`` is not JSON.
        """
        validate_job_id(job_id)
        check_json(new_input, "resume input", job_id)
        supervisor = self._require_jobs()
        while True:
            job = await get_job(self._patient, job_id)
            if job.status is not JobStatus.PAUSED:
                raise JobStateError(job_id, job.status, "resume")
            ref = supervisor.child(job_id)
            if ref is not None:
                # The actor that paused it is still stopping: let it finish, and its exit be handled.
                await ref.join()
                await supervisor.settle(job_id)
                continue
            if supervisor.has_child(job_id):
                await supervisor.terminate_child(job_id)  # a restart that would only find it paused
            try:
                stored = await self._patient.save(
                    resumed(job, new_input, self.clock, owner=self.worker_id, lease_ttl=self.lease_ttl),
                    expected_version=job.version,
                )
            except VersionConflict:
                continue
            break
        self._log.info("job resumed", job_id=job_id)
        await self._spawn(stored)
        return await self.wait(job_id)

    # -- internals -------------------------------------------------------------------------------

    def _require_jobs(self) -> Supervisor:
        if self._jobs is None or not self.is_running or self._closing:
            raise RuntimeError(f"{self!r} is not running: use `async with durable:` (or await durable.open())")
        return self._jobs

    def _new_job(self, job_id: str, input: JsonValue, metadata: Mapping[str, JsonValue] | None, *, owned: bool) -> Job:
        validate_job_id(job_id)
        check_json(input, "input", job_id)
        merged = {**self.metadata, **(metadata or {})}
        if metadata:
            check_json(merged, "metadata", job_id)
        now = self.clock.utcnow()
        return Job(
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
        )

    def _check_same(self, stored: Job, input: JsonValue) -> None:
        if stored.agent != self.name:
            raise JobConflictError(stored.id, f"another agent ({stored.agent!r})")
        if stored.input != input:
            raise JobConflictError(stored.id)

    async def _start_existing(self, supervisor: Supervisor, stored: Job, input: JsonValue) -> Job:
        self._check_same(stored, input)
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
                stored = await self._patient.save(rerun, expected_version=stored.version)
            except VersionConflict:
                stored = await get_job(self._patient, job_id)
                continue
            self._log.info("job runs again", job_id=job_id, attempts=stored.attempts)
            await self._spawn(stored)
            return stored
        if stored.status in (JobStatus.PENDING, JobStatus.RUNNING) and not supervisor.has_child(job_id):
            # Nobody here runs it: take it over if its owner's lease has lapsed (or it is ours).
            now = self.clock.utcnow()
            claimed = await self._patient.claim(
                job_id, self.worker_id, lease_until=now + timedelta(seconds=self.lease_ttl), now=now, reclaim_own=True
            )
            if claimed is not None:
                await self._spawn(claimed)
                return claimed
        return stored

    async def _control(self, job_id: str, request: Literal["pause", "cancel"]) -> Job:
        validate_job_id(job_id)
        supervisor = self._require_jobs()
        while True:
            job = await get_job(self._patient, job_id)
            if job.status not in ALLOWED[request]:
                raise JobStateError(job_id, job.status, request)
            # No await between looking at the child and acting on it: the child may stop at any await.
            ref = supervisor.child(job_id)
            if ref is not None and not ref.is_alive:
                await supervisor.settle(job_id)  # it stopped: let the supervisor record its exit first
                continue
            if ref is not None:
                if job.status.is_settled:
                    await ref.join()  # the actor that settled it is stopping: then the store is ours
                    continue
                ref.tell(Pause() if request == "pause" else Cancel())
                settled = await self.wait(job_id)
                if request == "cancel" and settled.status is JobStatus.PAUSED:
                    continue  # it paused itself before the cancel reached it: cancel the paused job
                return settled
            if supervisor.has_child(job_id):
                # Waiting out a retry delay: no actor runs it now, so the store is the only writer.
                await supervisor.terminate_child(job_id)
                continue  # read the job again: the retry timer was written meanwhile
            applied = await apply_control(self._patient, job_id, request, self.clock, self.publish)
            if applied is not None:
                self._log.info(f"job {applied.status}", job_id=job_id)
                return applied
            try:
                # A live owner elsewhere got a control request; if it dies first, try again.
                return await self.wait(job_id, timeout=self.lease_ttl)
            except TimeoutError:
                continue
