"""Lifecycle properties of DurableAgent: a hypothesis state machine over the transition table.

Random sequences of start / pause / resume / cancel / agent success / agent failure / interrupt / retry
timers / runs again after failing drive a live ``DurableAgent``. A model of DESIGN.md section 2 predicts
every job's status, and after every step the machine checks that:

1. every job's stored status (and attempts, journal length, prompt, answers, result) is the model's;
2. completed and cancelled jobs never change again (status, result, version);
3. ``run_attempts <= max_retries + 1`` (attempts keep counting when a failed job runs again);
4. every journaled step ran exactly once, and no step ran that is not journaled;
5. ``list(status=s)`` agrees with ``status(id)`` for every job and status;
6. illegal requests raise ``JobStateError`` and change nothing (the version stays).

The agent parks at a *gate* before each step and before it returns, and waits there for a command from
the test (advance, fail, fatal, interrupt), so every running job is at a known place between rules. Time
is a ``FakeClock``: a failed attempt waits out its retry delay as a stable ``pending`` job until the
machine advances the clock, which lets it pause and cancel pending jobs too.

The whole machine of one example lives on one event loop made for it; each rule runs its coroutine to
completion on that loop. Stores come from ``STORE_FACTORIES``: add a kind there and the machine runs on it.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pydantic import JsonValue

from durapod import (
    DurableAgent,
    Job,
    JobConflictError,
    JobContext,
    JobNotFound,
    JobStateError,
    JobStatus,
    MemoryStore,
    NonRetryableError,
    Store,
)
from durapod.models import TRANSITIONS, Request, check_transition
from durapod.stores.redis import RedisStore
from durapod.stores.sqlite import SQLiteStore
from durapod.testing import FakeClock

T = TypeVar("T")

#: Real seconds any single wait may take before the machine gives up (never an assertion on timing).
WAIT: Final = 10.0
#: Steps of the agent; it parks at gates 0..STEPS (before each step, and before it returns).
STEPS: Final = 3
MAX_RETRIES: Final = 2
#: Fake seconds: distinct values, so that ``FakeClock.sleeps`` tells a retry timer from a pause timer.
RETRY_DELAY: Final = 1.0
PAUSE_TIMEOUT: Final = 0.005
#: At most this many jobs that are not completed or cancelled at once; new ones replace those that end.
MAX_LIVE_JOBS: Final = 3

#: Builds an empty store for one example, given a fresh directory of its own.
StoreFactory = Callable[[Path], Coroutine[Any, Any, Store]]


async def _memory_store(directory: Path) -> Store:
    return MemoryStore()


async def _sqlite_store(directory: Path) -> Store:
    return SQLiteStore(directory / "jobs.db")


#: Every kind of store the machine runs on: one entry (and its marks in STORE_MARKS) adds a kind.
STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": _memory_store,
    "sqlite": _sqlite_store,
}
STORE_MARKS: dict[str, list[pytest.MarkDecorator]] = {}

SETTINGS: Final = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
#: Stores that answer in microseconds afford more examples in the same time (about 10 s a store).
MAX_EXAMPLES: dict[str, int] = {"memory": 200}


class AgentFailure(Exception):
    """The retryable failure the agent raises on a ``fail`` command."""


# -- the agent and what the test sees of it ------------------------------------------------------


class Harness:
    """The agent's side: its gates, the commands the test sends, and a record of what ran."""

    def __init__(self) -> None:
        self.commands: defaultdict[str, asyncio.Queue[str]] = defaultdict(asyncio.Queue)
        self.arrived: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        #: The gate each parked agent waits at (absent while it is not parked).
        self.parked: dict[str, int] = {}
        #: How many times each (job, step index) step function ran.
        self.executions: Counter[tuple[str, int]] = Counter()
        #: The gate of every interrupt each job's agent raised, in order (replayed on later executions).
        self.interrupt_gates: defaultdict[str, list[int]] = defaultdict(list)
        #: (job, interrupt number, value the agent got back from ``ctx.interrupt``).
        self.answers: list[tuple[str, int, JsonValue]] = []
        #: ``ctx.attempt`` of every call of the agent, per job.
        self.invocations: defaultdict[str, list[int]] = defaultdict(list)

    def step(self, job_id: str, index: int) -> str:
        self.executions[(job_id, index)] += 1
        return step_result(job_id, index)

    async def park(self, job_id: str, gate: int) -> str:
        self.parked[job_id] = gate
        self.arrived[job_id].set()
        try:
            return await self.commands[job_id].get()
        finally:
            del self.parked[job_id]

    async def agent(self, text: str, ctx: JobContext) -> str:
        job_id = ctx.job_id
        self.invocations[job_id].append(ctx.attempt)
        interrupt_gates = self.interrupt_gates[job_id]
        interrupts = 0
        results: list[str] = []
        for gate in range(STEPS + 1):
            # Replay the interrupts answered earlier at this gate, in the same order as before.
            while interrupts < len(interrupt_gates) and interrupt_gates[interrupts] == gate:
                answer = await ctx.interrupt(prompt(gate))
                self.answers.append((job_id, interrupts, answer))
                interrupts += 1
            # A gate whose step is journaled was passed before: replay goes straight through it.
            command = "advance" if ctx.is_replaying else await self.park(job_id, gate)
            if command == "fail":
                raise AgentFailure(f"{job_id} failed at gate {gate}")
            if command == "fatal":
                raise NonRetryableError(f"{job_id} gave up at gate {gate}")
            if command == "interrupt":
                interrupt_gates.append(gate)
                await ctx.interrupt(prompt(gate))
                raise AssertionError("an unanswered interrupt returned")
            assert command == "advance", command
            if gate < STEPS:
                results.append(await ctx.step(f"s{gate}", self.step, job_id, gate))
        return final_result(text, results)


def step_result(job_id: str, index: int) -> str:
    return f"{job_id}:s{index}"


def final_result(text: str, results: Sequence[str]) -> str:
    return f"{text}|{','.join(results)}"


def prompt(gate: int) -> str:
    return f"approve gate {gate}?"


# -- the model -----------------------------------------------------------------------------------


@dataclass
class ModelJob:
    """What the transition table predicts for one job."""

    id: str
    input: str
    status: JobStatus = JobStatus.PENDING
    gate: int = 0  # steps journaled, which is also the gate a running agent parks at
    attempts: int = 1
    run_attempts_base: int = 0
    waiting_for: str | None = None
    answers: list[JsonValue] = field(default_factory=list)
    inputs: list[JsonValue] = field(default_factory=list)
    result: JsonValue = None
    error_type: str | None = None
    retry_at: float | None = None  # fake-clock time of a pending job's retry
    paused_while_pending: bool = False

    @property
    def run_attempts(self) -> int:
        return self.attempts - self.run_attempts_base

    def move(self, request: Request, target: JobStatus) -> None:
        """Apply ``request``; the model only makes the moves that the table in ``durapod.models`` allows."""
        check_transition(self.id, self.status, request, target)
        self.status = target


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            # The fake clock and the store have nothing to wait on: poll them.
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.001)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _until(durable: DurableAgent, job_id: str, check: Callable[[Job], bool], what: str) -> Job:
    found: list[Job] = []

    async def stored_job_passes() -> bool:
        job = await durable.status(job_id)
        if job is not None and check(job):
            found.append(job)
            return True
        return False

    await _eventually(stored_job_passes, what)
    return found[0]


async def _cancel_leftovers() -> None:
    """Cancel whatever a failed example left running on its loop, so that the loop closes clean."""
    leftovers = asyncio.all_tasks() - {asyncio.current_task()}
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


class LifecycleMachine(RuleBasedStateMachine):
    """Drives one DurableAgent and checks it against :class:`ModelJob` after every rule."""

    def __init__(self, store_factory: StoreFactory) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = tempfile.TemporaryDirectory(prefix="durapod-lifecycle-")
        self.harness = Harness()
        self.clock = FakeClock()
        self.jobs: dict[str, ModelJob] = {}
        self.terminal: dict[str, Job] = {}
        self.versions: dict[str, int] = {}
        self.background: list[asyncio.Task[Job]] = []
        self.answer_count = 0
        self.store = self.run(store_factory(Path(self.directory.name)))
        self.durable = DurableAgent(
            self.harness.agent,
            self.store,
            max_retries=MAX_RETRIES,
            retry_delay=RETRY_DELAY,
            max_retry_delay=RETRY_DELAY,
            backoff=1.0,
            jitter=0.0,
            pause_timeout=PAUSE_TIMEOUT,
            lease_ttl=3600.0,
            clock=self.clock,
            name="lifecycle",
        )
        self.run(self.durable.open())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 6 * WAIT))

    def teardown(self) -> None:
        try:
            for task in self.background:
                task.cancel()
            self.run(self._close())
        finally:
            try:
                self.loop.run_until_complete(_cancel_leftovers())
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()
                self.directory.cleanup()

    async def _close(self) -> None:
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.durable.aclose()
        await self.store.close()

    # -- choosing jobs ---------------------------------------------------------------------------

    def _with(self, *statuses: JobStatus) -> list[str]:
        return [job_id for job_id, job in self.jobs.items() if job.status in statuses]

    def _without(self, *statuses: JobStatus) -> list[str]:
        return [job_id for job_id, job in self.jobs.items() if job.status not in statuses]

    def _may_start(self) -> bool:
        return len(self._without(JobStatus.COMPLETED, JobStatus.CANCELLED)) < MAX_LIVE_JOBS

    # -- waiting for the agent -------------------------------------------------------------------

    def _send(self, job_id: str, command: str) -> None:
        model = self.jobs[job_id]
        assert model.status is JobStatus.RUNNING
        assert self.harness.parked.get(job_id) == model.gate, (job_id, self.harness.parked, model)
        self.harness.arrived[job_id].clear()
        self.harness.commands[job_id].put_nowait(command)

    async def _arrival(self, job_id: str, gate: int, also: asyncio.Task[Job] | None = None) -> None:
        """Wait until the agent parks at ``gate`` (failing at once if ``also`` ends in an error first)."""
        arrived = asyncio.ensure_future(self.harness.arrived[job_id].wait())
        waiting: set[asyncio.Future[Any]] = {arrived}
        if also is not None:
            waiting.add(also)
        try:
            done, _ = await asyncio.wait(waiting, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
        if also is not None and also in done and also.exception() is not None:
            raise AssertionError(f"{job_id}: the request failed") from also.exception()
        assert arrived in done, f"{job_id}: the agent never reached gate {gate}"
        assert self.harness.parked.get(job_id) == gate, (job_id, self.harness.parked, gate)

    async def _settled(self, job_id: str) -> Job:
        """The job once the agent's outcome is written; ``wait()`` returns the same when it settled."""
        job = await _until(self.durable, job_id, lambda job: job.status is not JobStatus.RUNNING, "the outcome")
        if job.status.is_settled:
            waited = await self.durable.wait(job_id, timeout=WAIT)
            assert (waited.status, waited.version) == (job.status, job.version), (job, waited)
        return job

    async def _retries_due(self) -> None:
        """Pending jobs whose retry time the clock has passed run again and park where they failed."""
        now = self.clock.monotonic()
        for job_id in self._with(JobStatus.PENDING):
            model = self.jobs[job_id]
            assert model.retry_at is not None
            if model.retry_at <= now:
                await self._arrival(job_id, model.gate)
                model.move("claim", JobStatus.RUNNING)
                model.attempts += 1
                model.retry_at = None

    # -- rules: requests -------------------------------------------------------------------------

    @precondition(lambda self: self._may_start())
    @rule()
    def start(self) -> None:
        self.run(self._start(f"job-{len(self.jobs)}"))

    async def _start(self, job_id: str) -> None:
        check_transition(job_id, None, "create", JobStatus.PENDING)
        model = ModelJob(job_id, f"input of {job_id}")
        job = await self.durable.start(job_id, model.input)
        assert job.status is JobStatus.PENDING and job.attempts == 0 and job.version == 1, job
        self.jobs[job_id] = model
        await self._arrival(job_id, 0)
        model.move("claim", JobStatus.RUNNING)

    @precondition(lambda self: self._with(JobStatus.PENDING, JobStatus.RUNNING))
    @rule(data=st.data())
    def pause(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._with(JobStatus.PENDING, JobStatus.RUNNING)), label="job")
        self.run(self._pause(job_id))

    async def _pause(self, job_id: str) -> None:
        model = self.jobs[job_id]
        if model.status is JobStatus.PENDING:
            # Waiting out its retry delay: no agent runs, the store is changed at once.
            job = await self.durable.pause(job_id)
            model.paused_while_pending = True
            model.retry_at = None
        else:
            # Parked at a gate, not in a step: the pause cancels the agent after pause_timeout.
            timers = self.clock.sleeps.count(PAUSE_TIMEOUT)
            task = asyncio.ensure_future(self.durable.pause(job_id))
            await _eventually(self._counted(PAUSE_TIMEOUT, timers, task), "the pause timer")
            if not task.done():
                await self.clock.advance(PAUSE_TIMEOUT)
            job = await asyncio.wait_for(task, WAIT)
        assert job.status is JobStatus.PAUSED, job
        model.move("pause", JobStatus.PAUSED)
        await self._retries_due()

    def _counted(
        self, delay: float, before: int, task: asyncio.Task[Job] | None = None
    ) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return (task is not None and task.done()) or self.clock.sleeps.count(delay) > before

        return check

    @precondition(lambda self: self._with(JobStatus.PAUSED))
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._with(JobStatus.PAUSED)), label="job")
        self.run(self._resume(job_id))

    async def _resume(self, job_id: str) -> None:
        model = self.jobs[job_id]
        self.answer_count += 1
        answer = f"answer {self.answer_count}"
        self.harness.arrived[job_id].clear()
        # resume() waits until the job settles again; the agent parks at its gate, so it runs aside.
        task = asyncio.ensure_future(self.durable.resume(job_id, answer))
        self.background.append(task)
        await self._arrival(job_id, model.gate, also=task)
        if model.paused_while_pending:
            # Paused before its next attempt began: resuming starts that attempt (after a failed one).
            model.move("resume", JobStatus.PENDING)
            model.move("claim", JobStatus.RUNNING)
            model.attempts += 1
            model.paused_while_pending = False
        else:
            # Paused in the middle of an attempt: resuming continues it.
            model.move("resume", JobStatus.RUNNING)
        model.inputs.append(answer)
        if model.waiting_for is not None:
            model.answers.append(answer)
            model.waiting_for = None

    @precondition(lambda self: self._with(JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PAUSED))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(
            st.sampled_from(self._with(JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PAUSED)), label="job"
        )
        self.run(self._cancel(job_id))

    async def _cancel(self, job_id: str) -> None:
        job = await self.durable.cancel(job_id)
        assert job.status is JobStatus.CANCELLED, job
        model = self.jobs[job_id]
        model.move("cancel", JobStatus.CANCELLED)
        model.waiting_for = None
        model.retry_at = None

    @precondition(lambda self: self._with(JobStatus.FAILED))
    @rule(data=st.data())
    def run_again(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._with(JobStatus.FAILED)), label="job")
        self.run(self._run_again(job_id))

    async def _run_again(self, job_id: str) -> None:
        model = self.jobs[job_id]
        self.harness.arrived[job_id].clear()
        job = await self.durable.start(job_id, model.input)
        assert job.status in (JobStatus.PENDING, JobStatus.RUNNING), job
        await self._arrival(job_id, model.gate)
        model.move("rerun", JobStatus.PENDING)
        model.move("claim", JobStatus.RUNNING)
        model.run_attempts_base = model.attempts
        model.attempts += 1
        model.error_type = None

    @precondition(lambda self: self._without(JobStatus.FAILED))
    @rule(data=st.data())
    def start_existing(self, data: st.DataObject) -> None:
        """start() of an existing job that has not failed changes nothing and runs nothing."""
        job_id = data.draw(st.sampled_from(self._without(JobStatus.FAILED)), label="job")
        self.run(self._start_existing(job_id))

    async def _start_existing(self, job_id: str) -> None:
        model = self.jobs[job_id]
        before = await self.durable.status(job_id)
        assert before is not None
        calls = len(self.harness.invocations[job_id])
        job = await self.durable.start(job_id, model.input)
        assert (job.status, job.version) == (before.status, before.version), (before, job)
        with pytest.raises(JobConflictError) as conflict:
            await self.durable.start(job_id, "another input")
        assert conflict.value.job_id == job_id
        if before.status.is_settled and before.status is not JobStatus.FAILED:
            ran = await self.durable.run(job_id, model.input)
            assert (ran.status, ran.version) == (before.status, before.version), (before, ran)
        after = await self.durable.status(job_id)
        assert after is not None and after.version == before.version, (before, after)
        assert len(self.harness.invocations[job_id]) == calls

    # -- rules: what the agent does --------------------------------------------------------------

    @precondition(lambda self: self._with(JobStatus.RUNNING))
    @rule(data=st.data(), gates=st.integers(1, STEPS + 1))
    def advance(self, data: st.DataObject, gates: int) -> None:
        """The agent runs its next steps, up to ``gates`` of them (and returns after the last)."""
        job_id = data.draw(st.sampled_from(self._with(JobStatus.RUNNING)), label="job")
        self.run(self._advance(job_id, gates))

    async def _advance(self, job_id: str, gates: int) -> None:
        model = self.jobs[job_id]
        for _ in range(gates):
            self._send(job_id, "advance")
            if model.gate == STEPS:
                break
            await self._arrival(job_id, model.gate + 1)
            model.gate += 1
        else:
            return
        job = await self._settled(job_id)
        assert job.status is JobStatus.COMPLETED, job
        model.move("complete", JobStatus.COMPLETED)
        model.result = final_result(model.input, [step_result(job_id, index) for index in range(STEPS)])

    @precondition(lambda self: self._with(JobStatus.RUNNING))
    @rule(data=st.data(), retryable=st.sampled_from([True, True, True, False]))
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        """The agent raises: a retryable error (retried until max_retries) or NonRetryableError."""
        job_id = data.draw(st.sampled_from(self._with(JobStatus.RUNNING)), label="job")
        self.run(self._fail(job_id, retryable))

    async def _fail(self, job_id: str, retryable: bool) -> None:
        model = self.jobs[job_id]
        timers = self.clock.sleeps.count(RETRY_DELAY)
        self._send(job_id, "fail" if retryable else "fatal")
        if retryable and model.run_attempts < MAX_RETRIES + 1:
            # The retry timer is armed once the supervisor sleeps on it; only then may time move on.
            await _eventually(self._counted(RETRY_DELAY, timers), "the retry timer")
            job = await self.durable.status(job_id)
            assert job is not None and job.status is JobStatus.PENDING, job
            assert job.error_type == AgentFailure.__name__, job
            model.move("retry", JobStatus.PENDING)
            model.retry_at = round(self.clock.monotonic() + RETRY_DELAY, 6)  # FakeClock keeps deadlines to the µs
            return
        job = await self._settled(job_id)
        assert job.status is JobStatus.FAILED, job
        model.move("fail", JobStatus.FAILED)
        model.error_type = AgentFailure.__name__ if retryable else NonRetryableError.__name__

    @precondition(lambda self: self._with(JobStatus.RUNNING))
    @rule(data=st.data())
    def interrupt(self, data: st.DataObject) -> None:
        """The agent calls ``ctx.interrupt``: the job pauses waiting for an answer."""
        job_id = data.draw(st.sampled_from(self._with(JobStatus.RUNNING)), label="job")
        self.run(self._interrupt(job_id))

    async def _interrupt(self, job_id: str) -> None:
        model = self.jobs[job_id]
        self._send(job_id, "interrupt")
        job = await self._settled(job_id)
        assert job.status is JobStatus.PAUSED, job
        model.move("pause", JobStatus.PAUSED)
        model.waiting_for = prompt(model.gate)

    @precondition(lambda self: self._with(JobStatus.PENDING))
    @rule()
    def retry_delay_passes(self) -> None:
        self.run(self._tick())

    async def _tick(self) -> None:
        await self.clock.advance(RETRY_DELAY)
        await self._retries_due()

    # -- rules: illegal requests -----------------------------------------------------------------

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def illegal_request(self, data: st.DataObject) -> None:
        """pause of a paused or finished job, resume of one not paused, cancel of a finished one."""
        job_id = data.draw(st.sampled_from(sorted(self.jobs)), label="job")
        status = self.jobs[job_id].status
        calls: dict[Request, Callable[[str], Awaitable[Job]]] = {
            "pause": self.durable.pause,
            "resume": self.durable.resume,
            "cancel": self.durable.cancel,
        }
        refused = sorted(request for request in calls if (status, request) not in TRANSITIONS)
        request = data.draw(st.sampled_from(refused), label="request")
        self.run(self._refused(job_id, request, calls[request]))

    async def _refused(self, job_id: str, request: str, call: Callable[[str], Awaitable[Job]]) -> None:
        before = await self.durable.status(job_id)
        assert before is not None
        with pytest.raises(JobStateError) as refused:
            await call(job_id)
        error = refused.value
        assert (error.job_id, error.status, error.request) == (job_id, before.status, request), error
        after = await self.durable.status(job_id)
        assert after == before, (before, after)
        with pytest.raises(JobNotFound):
            await call("no-such-job")

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def lifecycle_holds(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        harness = self.harness
        # Between rules nothing moves, so the reads may run together (a SQLite store batches them).
        ids = list(self.jobs)
        stored = await asyncio.gather(*(self.durable.status(job_id) for job_id in ids))
        journals = await asyncio.gather(*(self.store.read_steps(job_id) for job_id in ids))
        settled_statuses = [status for status in JobStatus if status.is_settled]
        *by_status, every, settled = await asyncio.gather(
            *(self.durable.list(status=status) for status in JobStatus),
            self.durable.list(),
            self.durable.list(status=[status.value for status in settled_statuses]),
        )
        for job_id, job, journal in zip(ids, stored, journals, strict=True):
            model = self.jobs[job_id]
            assert job is not None, job_id
            # 1. the status (and the rest of what the model predicts)
            assert job.status is model.status, (job, model)
            assert job.attempts == model.attempts, (job, model)
            assert job.run_attempts == model.run_attempts, (job, model)
            assert job.steps == model.gate, (job, model)
            assert job.waiting_for == model.waiting_for, (job, model)
            assert (job.answers, job.inputs) == (model.answers, model.inputs), (job, model)
            assert job.version >= self.versions.get(job_id, 0), (job, self.versions)
            self.versions[job_id] = job.version
            assert job.input == model.input, job
            if model.status is JobStatus.COMPLETED:
                assert (job.result, job.error, job.error_type) == (model.result, None, None), job
            if model.status is JobStatus.FAILED:
                assert job.error_type == model.error_type, job
            if model.status in (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED):
                assert job.completed_at is not None, job
            if model.status is JobStatus.RUNNING:
                assert harness.parked.get(job_id) == model.gate, (job_id, harness.parked, model)
                assert harness.invocations[job_id][-1] == job.attempts, (job, harness.invocations[job_id])
            # 2. terminal jobs never change again
            if job.status.is_terminal:
                first = self.terminal.setdefault(job_id, job)
                assert (job.status, job.result, job.version) == (first.status, first.result, first.version), (
                    first,
                    job,
                )
            else:
                assert job_id not in self.terminal, (self.terminal[job_id], job)
            # 3. the retry budget
            assert 1 <= job.run_attempts <= MAX_RETRIES + 1, job
            # 4. every journaled step ran exactly once
            assert [(record.index, record.name) for record in journal] == [
                (index, f"s{index}") for index in range(model.gate)
            ], journal
            assert [record.result for record in journal] == [step_result(job_id, i) for i in range(model.gate)]
            for index in range(model.gate):
                assert harness.executions[(job_id, index)] == 1, (job_id, index, harness.executions)
        for job_id, index in harness.executions:
            assert index < self.jobs[job_id].gate, (job_id, index, "ran but is not journaled")
        for job_id, number, answer in harness.answers:
            assert answer == self.jobs[job_id].answers[number], (job_id, number, answer)
        # 5. list() agrees with status()
        for status, jobs in zip(JobStatus, by_status, strict=True):
            listed = [job.id for job in jobs]
            assert sorted(listed) == sorted(self._with(status)), (status, listed)
            assert len(listed) == len(set(listed)), listed
        assert sorted(job.id for job in every) == sorted(self.jobs), every
        assert [(job.created_at, job.id) for job in every] == sorted(
            ((job.created_at, job.id) for job in every), reverse=True
        ), "list() is newest first"
        assert sorted(job.id for job in settled) == sorted(self._with(*settled_statuses)), settled
        # resume() calls left running must never fail
        for task in [task for task in self.background if task.done()]:
            self.background.remove(task)
            assert task.result().status.is_settled, task.result()


@pytest.mark.parametrize(
    "kind", [pytest.param(kind, marks=STORE_MARKS.get(kind, []), id=kind) for kind in STORE_FACTORIES]
)
def test_lifecycle_properties(kind: str) -> None:
    factory = STORE_FACTORIES[kind]

    class OnStore(LifecycleMachine):
        def __init__(self) -> None:
            super().__init__(factory)

    OnStore.__name__ = OnStore.__qualname__ = f"LifecycleMachine[{kind}]"
    run_state_machine_as_test(OnStore, settings=settings(SETTINGS, max_examples=MAX_EXAMPLES.get(kind, 60)))


@pytest.mark.redis
def test_lifecycle_properties_on_redis(redis_url: str) -> None:
    """The same machine on RedisStore (the session's redis-server, a fresh key prefix per example)."""

    async def redis_store(directory: Path) -> Store:
        return RedisStore.from_url(redis_url, key_prefix=f"life-{uuid.uuid4().hex[:8]}:")

    class OnRedis(LifecycleMachine):
        def __init__(self) -> None:
            super().__init__(redis_store)

    OnRedis.__name__ = OnRedis.__qualname__ = "LifecycleMachine[redis]"
    run_state_machine_as_test(OnRedis, settings=settings(SETTINGS, max_examples=40))


# -- regressions: bugs the machine found, pinned down one by one ----------------------------------------


def _failed_again(calls: list[int], executions: int) -> Callable[[Job], bool]:
    def check(job: Job) -> bool:
        return len(calls) >= executions and job.status in (JobStatus.PENDING, JobStatus.FAILED)

    return check


async def test_resume_after_pause_in_retry_backoff_counts_an_attempt(store: Store) -> None:
    """A job paused while it waits out a retry delay starts a new attempt when resumed: the budget holds."""
    calls: list[int] = []

    async def always_fails(text: str, ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        raise AgentFailure(f"attempt {ctx.attempt} failed")

    clock = FakeClock()
    durable = DurableAgent(
        always_fails, store, max_retries=1, retry_delay=1.0, backoff=1.0, jitter=0.0, lease_ttl=3600.0, clock=clock
    )
    resumes: list[asyncio.Task[Job]] = []
    async with durable:
        await durable.start("job", "input")
        job = await _until(
            durable, "job", lambda job: job.status is JobStatus.PENDING and job.error is not None, "the first failure"
        )
        for executions in range(2, 5):  # 1 + max_retries executions at most: the first resume is the last one
            paused = await durable.pause("job")
            assert paused.status is JobStatus.PAUSED
            resumes.append(asyncio.ensure_future(durable.resume("job")))
            job = await _until(durable, "job", _failed_again(calls, executions), "the resumed execution to fail")
            if job.status is JobStatus.FAILED:
                break
        for task in resumes:
            task.cancel()
        await asyncio.gather(*resumes, return_exceptions=True)
    # The resume runs attempt 2, which is the last (max_retries=1), and the job fails for good. (It used to
    # run "attempt 1" again on every resume and go back to pending: an endless retry budget.)
    assert calls == [1, 2], calls
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2), job


async def test_cancel_of_a_job_waiting_at_an_interrupt_clears_the_prompt(store: Store) -> None:
    """Cancelling a job paused at ``ctx.interrupt`` (no actor runs it) leaves no prompt on the job."""

    async def asks(text: str, ctx: JobContext) -> str:
        return str(await ctx.interrupt("approve?"))

    async with DurableAgent(asks, store) as durable:
        paused = await durable.run("job", "input")
        assert (paused.status, paused.waiting_for) == (JobStatus.PAUSED, "approve?")
        cancelled = await durable.cancel("job")
        assert cancelled.status is JobStatus.CANCELLED
        stored = await durable.status("job")
    assert stored is not None and stored.status is JobStatus.CANCELLED
    assert stored.waiting_for is None, stored
