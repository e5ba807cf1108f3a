"""DurableAgent: the facade users hold. A thin layer over a Worker, a Scheduler and the control core.

- the :class:`~durapod.worker.Worker` runs jobs (job actors, leases, takeover, ``serve()``, drain);
- the :class:`~durapod.scheduling.Scheduler` owns the agent's schedules;
- the :class:`~durapod.Client` core answers queries and control requests, the same way for both.

``run`` and ``start`` are the facade's own: they create (or join) a job and run it in the worker, through
its :class:`~durapod._agent_start.JobStarter` (the new job's record, and what an existing id does).
"""

from __future__ import annotations

import builtins
import random as _random
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from pydantic import JsonValue

from durapod._agent_settings import check_budget, check_lease_ttl, count, jobs_metadata, name_of
from durapod._agent_start import JobStarter
from durapod._agent_types import resume_answer, typed_result
from durapod._invoke import AgentInvoker
from durapod._stream import Subscribers, follow
from durapod._util import seconds
from durapod._waiting import Waiters
from durapod.budget import Budget
from durapod.children import ChildRuntime
from durapod.client import Client
from durapod.events import Event
from durapod.idempotency import keyed_job_id, with_key
from durapod.integrations import adapt
from durapod.lowlevel.clock import SYSTEM_CLOCK, Clock
from durapod.models import Job, JobStatus, StepRecord, check_metadata, validate_job_id
from durapod.retry import RetryPolicy
from durapod.schedules import CatchUp, CronSchedule, Overlap, ScheduleState, parse_timezone
from durapod.scheduling import Scheduler, ScheduleRequest
from durapod.stores.base import Page, Store
from durapod.worker import Worker, default_worker_id

__all__ = ["DurableAgent"]


class DurableAgent:
    """Makes an async agent durable: checkpointed steps, pause/resume/cancel, retries with backoff.

    A ``DurableAgent`` is a worker: inside ``async with durable:`` it runs the jobs it starts, continues
    the orphaned jobs of its agent (their owner's lease expired) and, with ``serve()``, takes queued ones.

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
        shutdown_grace: seconds that steps in flight get to finish and be journaled when the worker stops
            (``aclose()``, the end of ``async with``, SIGTERM in the CLI) before their jobs are handed back.
        worker_id: this worker's id (default: one unique to this process). A restarted worker given the
            id of a dead one reclaims its jobs at once; an id a live worker holds raises ``WorkerIdInUse``.
        name: the agent's name on its jobs (default: the agent's qualified name).
        metadata: merged into every job's metadata.
        schedule: a cron expression for the schedule named ``default``.
        on_schedule: makes each scheduled run's input.
        timezone: the default timezone of schedules.
        clock: time source (a ``durapod.testing.FakeClock`` in tests).
        random: jitter source, uniform in [0, 1).
        poll_interval: the longest gap between two store reads while waiting on another process's job.
        store_timeout: how long public calls wait out an unreachable store before raising
            ``StoreUnavailable`` (running jobs wait for it indefinitely: no job fails because the store
            blinked).
        budget: what each job may use (tokens, model requests, steps) unless ``start`` gives it its own.
        redact_errors: maps a failed attempt's exception to the text stored in ``job.error`` and in the
            job's ``error`` event (and logged). By default the exception's message is stored verbatim, so
            a secret in a message (a token in a URL, a customer's data) ends up in the store; pass e.g.
            ``lambda exc: type(exc).__name__`` to keep messages out. If it raises or returns a non-str,
            only the class name is stored.
        version: the version of the agent's code (a release, a git hash), recorded in the metadata of
            every job this agent creates (``Job.code_version``), so ``list(version=...)`` and
            ``durapod ls --version`` find the jobs an old version started. See ``ctx.patched``.

    Raises:
        TypeError: ``agent`` or ``store`` is not one.
        ValueError: a bad setting, named.

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
        shutdown_grace: float = 10.0,
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
        redact_errors: Callable[[BaseException], str] | None = None,
        budget: Budget | None = None,
        version: str | None = None,
    ) -> None:
        agent = adapt(agent)  # a pydantic-ai agent gets its adapter (never imported unless it is one)
        invoker = AgentInvoker(agent)
        if redact_errors is not None and not callable(redact_errors):
            raise TypeError(f"redact_errors must be callable or None, got {redact_errors!r}")
        if not isinstance(store, Store):
            raise TypeError(f"store must be a durapod store (MemoryStore, SQLiteStore, RedisStore), got {store!r}")
        retry = RetryPolicy(
            max_retries=max_retries,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
            backoff=backoff,
            jitter=jitter,
            retry_on=retry_on,
            random=random or _random.random,
        )
        if max_concurrency is not None:
            count("max_concurrency", max_concurrency, 1)
        self.agent = agent
        self.store = store
        self._types = invoker.types
        budget = check_budget(budget)
        self.retry_policy = retry
        self.lease_ttl = check_lease_ttl(lease_ttl)
        self.name = name_of(agent, name)
        self.worker_id = validate_job_id(worker_id) if worker_id is not None else default_worker_id()
        self.metadata = jobs_metadata(metadata, version)
        self.version = version
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.poll_interval = seconds("poll_interval", poll_interval, allow_zero=False)
        parse_timezone(timezone)
        self._waiters = Waiters()
        self._subscribers = Subscribers()
        children = ChildRuntime(store, self.clock, self._waiters, self.poll_interval, self._holds)
        self._worker = Worker(
            invoker,
            store,
            name=self.name,
            worker_id=self.worker_id,
            retry=retry,
            pause_timeout=seconds("pause_timeout", pause_timeout),
            lease_ttl=self.lease_ttl,
            max_recoveries=count("max_recoveries", max_recoveries, 0),
            max_concurrency=max_concurrency,
            shutdown_grace=seconds("shutdown_grace", shutdown_grace),
            clock=self.clock,
            poll_interval=self.poll_interval,
            written=self._waiters.publish,
            let_go=self._waiters.nudge,
            publish_event=self._subscribers.publish,
            listening=self._subscribers.listening,
            redact_errors=redact_errors,
            children=children,
        )
        self._client = Client._for_worker(
            self._worker,
            waiters=self._waiters,
            subscribers=self._subscribers,
            poll_interval=self.poll_interval,
            store_timeout=seconds("store_timeout", store_timeout, allow_zero=False),
        )
        self._patient = self._client._patient
        self._jobs = JobStarter(self._patient, self._worker, self._types, self.metadata, budget)
        children.store, children.agent, children.adopt = self._patient, self.name, self._jobs.adopt_child
        children.dump_input, children.typed = self._types.dump_input, self._typed
        self._scheduler = Scheduler(
            self._patient,
            self._worker,
            name=self.name,
            timezone=timezone,
            clock=self.clock,
            start_fired=self._jobs.start_fired,
        )
        if schedule is not None:
            CronSchedule(schedule, timezone)  # ValueError naming a bad expression, now
            self._scheduler.register(
                "default", ScheduleRequest(schedule, on_schedule, timezone, "skip", "none", 86_400.0)
            )
        elif on_schedule is not None:
            raise ValueError("on_schedule needs a schedule= cron expression")

    def __repr__(self) -> str:
        return f"DurableAgent(name={self.name!r}, worker_id={self.worker_id!r}, store={self.store!r})"

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def budget(self) -> Budget | None:
        """What each job may use unless ``start`` gives it its own (None: no limit). An assignment applies
        to the jobs started from then on."""
        return self._jobs.budget

    @budget.setter
    def budget(self, budget: Budget | None) -> None:
        self._jobs.budget = check_budget(budget)

    @property
    def is_running(self) -> bool:
        """True between ``open()`` (or ``async with``) and ``aclose()``."""
        return self._worker.is_running

    async def open(self) -> None:
        """Start the worker: register its id, start its services, continue this agent's orphaned jobs.

        Idempotent. If it fails, nothing is left running.

        Raises:
            WorkerIdInUse: a live worker holds this ``worker_id``.
            StoreError: the store failed.
        """
        if self.is_running:
            return
        await self._worker.open()
        try:
            await self._scheduler.save_pending()
        except BaseException:
            await self._worker.aclose()
            raise

    async def aclose(self) -> None:
        """Stop the worker gracefully. Idempotent.

        Steps in flight get ``shutdown_grace`` seconds to finish and be journaled; then every unfinished
        job is handed back (pending) for the next worker, which continues it after its journaled steps.
        """
        await self._scheduler.stop()
        await self._worker.aclose()

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
        await self._worker.serve(batch_size=batch_size)

    async def recover(self) -> int:
        """Claim and continue this agent's orphaned jobs now, up to ``max_concurrency``. Returns how many.

        A running worker does this by itself every ``lease_ttl / 3`` seconds.
        """
        self._require_running()
        return await self._worker.claim_orphans()

    # -- running jobs ----------------------------------------------------------------------------

    async def run(
        self,
        job_id: str | None,
        input: Any = None,
        *,
        metadata: Mapping[str, JsonValue] | None = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Start (or join) a job and wait until it settles: completed, failed, cancelled or paused.

        On an existing id: completed and cancelled jobs are returned unchanged; a pending or running job is
        waited for (never run twice); a paused job is returned as it is; a failed job runs again, its
        ``attempts`` continuing to count.

        An agent annotated ``async def f(order: Order, ctx) -> Receipt`` takes an ``Order`` (or its JSON
        form, validated here) and the job comes back with ``result`` as a ``Receipt``; the store holds JSON.

        Raises:
            InvalidJobId: the id is empty, too long, or holds whitespace or control characters.
            InvalidInput: the input or metadata is not JSON (or not of the agent's input type); nothing
                is written.
            JobConflictError: the id exists with a different input (or another agent).
        """
        job = await self.start(job_id, input, metadata=metadata, budget=budget, idempotency_key=idempotency_key)
        # no await between start() and registering the waiter: the job cannot settle unseen in between
        waiting = self._waiters.wait(self._patient, job.id, None, self.poll_interval, self._worker.holds, job)
        del job  # the job as started is not kept alive while it runs (one object less per job in flight)
        return self._typed(await waiting)

    async def start(
        self,
        job_id: str | None,
        input: Any = None,
        *,
        metadata: Mapping[str, JsonValue] | None = None,
        budget: Budget | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Create a job and run it in this worker; returns at once (with the job as created).

        Same rules as :meth:`run` for existing ids, without waiting. The input and metadata must be JSON
        nested at most ``MAX_JSON_DEPTH`` (64) deep; anything else is refused with :class:`InvalidInput`
        naming it, before anything is written. ``budget`` replaces the agent's for this job. A caller that
        cannot choose ids passes ``None`` and an ``idempotency_key`` (see :meth:`Client.submit`): a key
        seen before returns its job.

        A new job comes back as created: pending, version 1. When a ``max_concurrency`` slot is free the
        worker writes it running with that same write, so the store holds its next version already.
        """
        job_id = keyed_job_id(job_id, idempotency_key)
        job = self._jobs.new_job(job_id, input, with_key(metadata, idempotency_key), owned=True, budget=budget)
        self._require_running()
        stored, created = await self._jobs.create_and_run(job)
        if created:
            return stored
        return await self._jobs.start_existing(stored, job.input)

    async def run_stream(
        self, job_id: str, input: Any = None, *, metadata: Mapping[str, JsonValue] | None = None
    ) -> AsyncGenerator[Event, None]:
        """Start (or join) a job like :meth:`run` and yield its events until it settles.

        Yields ``job_status`` events (at the start, the end, and around each failed attempt), the agent's
        ``token``, ``tool_call``, ``tool_result``, ``step``, ``interrupt`` and custom events,
        ``step_restarted`` when a step's partial output is void (see :meth:`stream`), and ``done``.
        """
        source = self._client._event_source()
        with source.subscribe(job_id) as subscription:
            await self.start(job_id, input, metadata=metadata)
            async for event in follow(source, job_id, -1, subscription):
                yield event

    # -- queries and control: the Client core, scoped to this agent --------------------------------

    async def submit(
        self,
        job_id: str | None,
        input: JsonValue = None,
        *,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a job without running it here (see :meth:`Client.submit`); ``agent`` defaults to this one.

        Metadata given to the constructor is merged in.
        """
        job_id = keyed_job_id(job_id, idempotency_key)
        data = self._types.dump_input(input, job_id)
        merged = {**self.metadata, **check_metadata(with_key(metadata, idempotency_key), "metadata", job_id)}
        return await self._client.submit(job_id, data, agent=agent, metadata=merged)

    async def status(self, job_id: str) -> Job | None:
        """The job with that id as stored, or None (see :meth:`Client.status`); ``result`` typed like
        :meth:`run`'s."""
        job = await self._client.status(job_id)
        return None if job is None else self._typed(job)

    async def steps(self, job_id: str) -> builtins.list[StepRecord]:
        """The job's step journal, in order (see :meth:`Client.steps`)."""
        return await self._client.steps(job_id)

    async def list(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        *,
        limit: int | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        agent: str | None = None,
        version: str | None = None,
    ) -> builtins.list[Job]:
        """Jobs newest first (see :meth:`Client.list`); ``agent`` defaults to this agent, ``"*"``: all."""
        return await self._client.list(status, limit=limit, metadata=metadata, agent=agent, version=version)

    async def page(
        self,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        *,
        limit: int | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        agent: str | None = None,
        cursor: str | None = None,
        version: str | None = None,
    ) -> Page:
        """One page of :meth:`list` and the cursor of the next (see :meth:`Client.page`)."""
        return await self._client.page(
            status, limit=limit, metadata=metadata, agent=agent, cursor=cursor, version=version
        )

    async def fork(self, job_id: str, new_id: str, *, from_step: int, input: JsonValue = None) -> Job:
        """Create job ``new_id`` with ``job_id``'s steps before ``from_step`` journaled, and run it here
        from ``from_step`` on (queued for any worker of the agent if this one is not running; see
        :meth:`Client.fork`). Returns the new job, pending."""
        return await self._client.fork(job_id, new_id, from_step=from_step, input=input)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job settles and return it (see :meth:`Client.wait`); ``result`` typed like
        :meth:`run`'s."""
        return self._typed(await self._client.wait(job_id, timeout))

    async def stream(self, job_id: str, *, after: int = -1) -> AsyncGenerator[Event, None]:
        """Yield the job's events after ``after`` until it settles (see :meth:`Client.stream`).

        Every event has a ``seq`` one above the one before; resume a stream with ``after=`` the last seq
        seen, for no gap and no duplicate. Live events arrive once written (in batches), so no seq seen is
        ever reused, even after a crash. A :class:`~durapod.StepRestartedEvent` means the output streamed
        from its ``from_seq`` on is void (the step runs again after a crash, a retried attempt, a pause or a
        drain): drop the agent events held from that seq on. Event types durapod does not define arrive
        as :class:`~durapod.CustomEvent`.
        """
        async for event in self._client.stream(job_id, after=after):
            yield event

    async def pause(self, job_id: str, *, wait: bool = True, timeout: float | None = None) -> Job:
        """Pause a pending or running job (see :meth:`Client.pause`)."""
        return await self._client.pause(job_id, wait=wait, timeout=timeout)

    async def cancel(self, job_id: str, *, wait: bool = True, timeout: float | None = None) -> Job:
        """Cancel a pending, running or paused job at once; cancelled is terminal (see :meth:`Client.cancel`)."""
        return await self._client.cancel(job_id, wait=wait, timeout=timeout)

    async def resume(
        self, job_id: str, new_input: JsonValue = None, *, wait: bool = True, timeout: float | None = None
    ) -> Job:
        """Continue a paused job from its checkpoint, in this worker (see :meth:`Client.resume`).

        A job waiting in ``ctx.interrupt(prompt, answer=Approval)`` takes an ``Approval`` (or its JSON
        form), checked here: a value that is not one raises ``InvalidInput`` and the job stays paused.
        """
        self._require_running()
        new_input = resume_answer(await self._client.status(job_id), new_input, job_id)
        return self._typed(await self._client.resume(job_id, new_input, wait=wait, timeout=timeout))

    # -- schedules: the Scheduler service --------------------------------------------------------

    async def schedule(
        self,
        name: str,
        cron: str,
        on_schedule: Callable[..., Any] | None = None,
        *,
        timezone: str | None = None,
        overlap: Overlap = "skip",
        catch_up: CatchUp = "none",
        catch_up_window: float = 86_400.0,
    ) -> ScheduleState:
        """Add (or change) a named schedule of this agent; it is kept in the store for every replica.

        Args:
            name: unique per agent; job ids of its fires are ``<name>:<UTC fire time>``.
            cron: 5 fields, 6 with a leading seconds field, or an alias such as ``@hourly``.
            on_schedule: makes each run's input (sync or async; given the fire time if it takes an
                argument). None: the input is None.
            timezone: IANA name (default: the agent's ``timezone``).
            overlap: ``skip`` (default), ``allow`` or ``queue``.
            catch_up: ``none`` (default), ``latest`` or ``all`` (within ``catch_up_window`` seconds).

        Raises:
            ValueError: an invalid name, expression, timezone or policy, naming it.
        """
        return await self._scheduler.schedule(
            name,
            cron,
            on_schedule,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
            catch_up_window=catch_up_window,
        )

    async def schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules as stored (this agent's by default, ``"*"``: all), with their next fires."""
        return await self._client.schedules(agent)

    async def pause_schedule(self, name: str) -> ScheduleState:
        """Stop a schedule from firing until :meth:`resume_schedule`. Raises ``KeyError`` if unknown."""
        return await self._scheduler.pause_schedule(name)

    async def resume_schedule(self, name: str) -> ScheduleState:
        """Let a paused schedule fire again (from its next tick). Raises ``KeyError`` if unknown."""
        return await self._scheduler.resume_schedule(name)

    async def remove_schedule(self, name: str) -> bool:
        """Delete a schedule. True if it existed."""
        return await self._scheduler.remove_schedule(name)

    def start_scheduler(self) -> None:
        """Start firing this agent's schedules (idempotent). The worker must be running."""
        self._scheduler.start()

    async def stop_scheduler(self) -> None:
        """Stop firing at once (no new fire starts; jobs already created run on). Idempotent."""
        await self._scheduler.stop()

    @property
    def is_scheduling(self) -> bool:
        """True while the scheduler runs."""
        return self._scheduler.is_running

    # -- internals -------------------------------------------------------------------------------

    def _holds(self, job_id: str) -> bool:
        return self._worker.holds(job_id)

    def _require_running(self) -> None:
        if not self._worker.is_running:
            raise RuntimeError(f"{self!r} is not running: use `async with durable:` (or await durable.open())")

    def _typed(self, job: Job) -> Job:
        """The job with its result as the agent's return type (the store holds its JSON form)."""
        return typed_result(job, self._types, self.name)
