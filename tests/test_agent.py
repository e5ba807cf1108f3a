"""DurableAgent on MemoryStore: the job lifecycle of DESIGN.md section 2, case by case."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import JsonValue

from durapod import (
    DurableAgent,
    InvalidInput,
    InvalidJobId,
    Job,
    JobConflictError,
    JobContext,
    JobNotFound,
    JobStateError,
    JobStatus,
    MemoryStore,
    NonRetryableError,
)
from durapod.testing import FakeClock, capture_logs

WAIT = 10.0


class Probe:
    """Records which steps ran and lets tests hold an agent at a known place."""

    def __init__(self) -> None:
        self.ran: Counter[tuple[str, str]] = Counter()
        self.gates: dict[str, asyncio.Event] = {}
        self.reached: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def arrived(self, name: str) -> asyncio.Event:
        return self.reached.setdefault(name, asyncio.Event())

    async def hold(self, name: str) -> None:
        self.arrived(name).set()
        await self.gate(name).wait()

    def step(self, job_id: str, name: str) -> str:
        self.ran[(job_id, name)] += 1
        return f"{name}-done"


async def settle(durable: DurableAgent, job_id: str) -> Job:
    return await durable.wait(job_id, timeout=WAIT)


async def test_run_completes_and_journals_every_step() -> None:
    probe = Probe()

    async def agent(text: str, ctx: JobContext) -> str:
        a = await ctx.step("a", probe.step, ctx.job_id, "a")
        b = await ctx.step("b", probe.step, ctx.job_id, "b")
        return f"{text}:{a}:{b}"

    store = MemoryStore()
    async with DurableAgent(agent, store, metadata={"team": "support"}) as durable:
        job = await durable.run("job_1", "hi")
        assert job.status is JobStatus.COMPLETED
        assert isinstance(job.status, str)
        assert job.status.value == "completed"
        assert job.result == "hi:a-done:b-done"
        assert job.attempts == 1
        assert job.metadata == {"team": "support"}
        assert job.completed_at is not None
        steps = await store.read_steps("job_1")
        assert [(s.index, s.name, s.result) for s in steps] == [(0, "a", "a-done"), (1, "b", "b-done")]
        assert (await durable.status("job_1")) == job
        assert await durable.status("nope") is None


async def test_pause_stops_at_the_next_step_boundary_and_resume_replays() -> None:
    probe = Probe()

    async def agent(text: str, ctx: JobContext) -> str:
        async def slow_first() -> str:
            await probe.hold("in-first")
            return probe.step(ctx.job_id, "first")

        first = await ctx.step("first", slow_first)
        second = await ctx.step("second", probe.step, ctx.job_id, "second")
        return f"{first}+{second}"

    async with DurableAgent(agent, MemoryStore(), pause_timeout=WAIT) as durable:
        await durable.start("j", "x")
        await asyncio.wait_for(probe.arrived("in-first").wait(), WAIT)
        pausing = asyncio.create_task(durable.pause("j"))
        await asyncio.sleep(0)
        assert (await durable.status("j")).status is JobStatus.RUNNING  # type: ignore[union-attr]
        probe.gate("in-first").set()  # the step in flight finishes and is journaled
        paused = await asyncio.wait_for(pausing, WAIT)
        assert paused.status is JobStatus.PAUSED
        assert probe.ran[("j", "second")] == 0  # the next step never started
        assert [s.name for s in await durable.store.read_steps("j")] == ["first"]

        done = await durable.resume("j")
        assert done.status is JobStatus.COMPLETED
        assert done.result == "first-done+second-done"
        assert probe.ran == Counter({("j", "first"): 1, ("j", "second"): 1})


async def test_pause_timeout_cancels_the_step_in_flight_which_reruns_on_resume() -> None:
    clock = FakeClock()
    probe = Probe()
    started = 0

    async def agent(text: str, ctx: JobContext) -> str:
        async def stuck() -> str:
            nonlocal started
            started += 1
            if started == 1:
                await probe.hold("stuck")  # never released: only the pause timeout ends it
            return "unstuck"

        return await ctx.step("stuck", stuck)

    async with DurableAgent(agent, MemoryStore(), pause_timeout=5.0, clock=clock) as durable:
        await durable.start("j", "x")
        await asyncio.wait_for(probe.arrived("stuck").wait(), WAIT)
        pausing = asyncio.create_task(durable.pause("j"))
        await clock.advance(4.9)
        assert not pausing.done()
        await clock.advance(0.2)
        paused = await asyncio.wait_for(pausing, WAIT)
        assert paused.status is JobStatus.PAUSED
        assert await durable.store.read_steps("j") == []
        done = await durable.resume("j")
        assert done.status is JobStatus.COMPLETED
        assert done.result == "unstuck"
        assert started == 2


async def test_cancel_raises_cancelled_error_in_the_agent_and_is_final() -> None:
    seen: list[str] = []
    probe = Probe()

    async def agent(text: str, ctx: JobContext) -> str:
        try:
            await probe.hold("forever")
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "never"

    async with DurableAgent(agent, MemoryStore()) as durable:
        await durable.start("j", "x")
        await asyncio.wait_for(probe.arrived("forever").wait(), WAIT)
        job = await durable.cancel("j")
        assert job.status is JobStatus.CANCELLED
        await asyncio.sleep(0)
        assert seen == ["cancelled"]
        with pytest.raises(JobStateError) as info:
            await durable.resume("j")
        assert info.value.job_id == "j"
        assert info.value.status == "cancelled"
        with pytest.raises(JobStateError):
            await durable.cancel("j")
        with pytest.raises(JobStateError):
            await durable.pause("j")
        again = await durable.run("j", "x")  # run() on a cancelled id returns it unchanged
        assert again == await durable.status("j")
        assert again.status is JobStatus.CANCELLED


async def test_plain_agent_is_cancelled_on_pause_and_called_with_the_new_input() -> None:
    calls: list[JsonValue] = []
    probe = Probe()

    async def plain(value: JsonValue) -> JsonValue:
        calls.append(value)
        if len(calls) == 1:
            await probe.hold("plain")
        return value

    async with DurableAgent(plain, MemoryStore()) as durable:
        await durable.start("j", "first")
        await asyncio.wait_for(probe.arrived("plain").wait(), WAIT)
        paused = await durable.pause("j")
        assert paused.status is JobStatus.PAUSED
        done = await durable.resume("j", "second")
        assert done.status is JobStatus.COMPLETED
        assert done.result == "second"
        assert done.inputs == ["second"]
        assert calls == ["first", "second"]


async def test_interrupt_pauses_and_resume_answers_it() -> None:
    probe = Probe()

    async def agent(text: str, ctx: JobContext) -> str:
        draft = await ctx.step("draft", probe.step, ctx.job_id, "draft")
        approved = await ctx.interrupt(f"send {draft}?")
        if not approved:
            return "dropped"
        return await ctx.step("send", probe.step, ctx.job_id, "send")

    async with DurableAgent(agent, MemoryStore()) as durable:
        job = await durable.run("j", "x")
        assert job.status is JobStatus.PAUSED
        assert job.waiting_for == "send draft-done?"
        done = await durable.resume("j", True)
        assert done.status is JobStatus.COMPLETED
        assert done.result == "send-done"
        assert done.answers == [True]
        assert done.waiting_for is None
        assert probe.ran == Counter({("j", "draft"): 1, ("j", "send"): 1})


async def test_retry_delays_follow_the_backoff_exactly() -> None:
    clock = FakeClock()
    attempts: list[int] = []

    async def flaky(text: str, ctx: JobContext) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) < 4:
            raise RuntimeError(f"boom {len(attempts)}")
        return "ok"

    store = MemoryStore()
    durable = DurableAgent(
        flaky, store, max_retries=3, retry_delay=1.0, backoff=2.0, jitter=0.1, clock=clock, random=lambda: 0.5
    )
    async with durable:
        await durable.start("j", "x")
        await clock.advance(0)
        job = await store.get("j")
        assert job is not None
        assert job.status is JobStatus.PENDING
        assert job.error == "boom 1"
        assert job.error_type == "RuntimeError"
        assert job.next_attempt_at == clock.utcnow() + timedelta(seconds=1.05)
        await clock.advance(1.0)
        assert attempts == [1]  # not before the delay has passed
        for delay in (0.05, 2.1, 4.2):
            await clock.advance(delay)
        done = await settle(durable, "j")
        assert done.status is JobStatus.COMPLETED
        assert done.error is None
        assert done.error_type is None
        assert done.attempts == 4
        assert attempts == [1, 2, 3, 4]
        restart_sleeps = [s for s in clock.sleeps if s not in (0.1,)]
        assert restart_sleeps[:3] == pytest.approx([1.05, 2.1, 4.2])


async def test_retries_exhausted_fail_and_run_again_keeps_counting() -> None:
    calls = 0

    async def always_fails(text: str) -> str:
        nonlocal calls
        calls += 1
        raise ValueError("nope")

    async with DurableAgent(always_fails, MemoryStore(), max_retries=2, retry_delay=0.0, jitter=0.0) as durable:
        job = await durable.run("j", "x")
        assert job.status is JobStatus.FAILED
        assert job.attempts == 3 == calls
        assert job.error == "nope"
        assert job.error_type == "ValueError"
        again = await durable.run("j", "x")
        assert again.status is JobStatus.FAILED
        assert again.attempts == 6
        assert again.run_attempts == 3
        assert calls == 6


async def test_non_retryable_error_and_retry_on_fail_at_once() -> None:
    calls: Counter[str] = Counter()

    async def agent(kind: str) -> str:
        calls[kind] += 1
        if kind == "fatal":
            raise NonRetryableError("bad request")
        raise KeyError(kind)

    durable = DurableAgent(agent, MemoryStore(), retry_delay=0.0, retry_on=lambda e: not isinstance(e, KeyError))
    async with durable:
        fatal = await durable.run("fatal", "fatal")
        assert fatal.status is JobStatus.FAILED
        assert fatal.error_type == "NonRetryableError"
        keyed = await durable.run("keyed", "keyed")
        assert keyed.status is JobStatus.FAILED
        assert keyed.error_type == "KeyError"
        assert calls == Counter({"fatal": 1, "keyed": 1})


async def test_a_job_paused_in_its_retry_backoff_does_not_run() -> None:
    clock = FakeClock()
    calls = 0

    async def flaky(text: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first try fails")
        return "ok"

    async with DurableAgent(flaky, MemoryStore(), retry_delay=10.0, jitter=0.0, clock=clock) as durable:
        await durable.start("j", "x")
        await clock.advance(0)
        assert (await durable.status("j")).status is JobStatus.PENDING  # type: ignore[union-attr]
        paused = await durable.pause("j")
        assert paused.status is JobStatus.PAUSED
        await clock.advance(60.0)
        assert calls == 1
        assert (await durable.status("j")).status is JobStatus.PAUSED  # type: ignore[union-attr]
        done = await durable.resume("j")
        assert done.status is JobStatus.COMPLETED
        assert calls == 2


async def test_run_on_existing_ids() -> None:
    calls = 0
    probe = Probe()

    async def agent(text: str) -> str:
        nonlocal calls
        calls += 1
        await probe.hold(text)
        return text.upper()

    async with DurableAgent(agent, MemoryStore()) as durable:
        first = asyncio.create_task(durable.run("j", "a"))
        await asyncio.wait_for(probe.arrived("a").wait(), WAIT)
        second = asyncio.create_task(durable.run("j", "a"))  # joins, never a second execution
        await asyncio.sleep(0)
        with pytest.raises(JobConflictError) as info:
            await durable.run("j", "different")
        assert info.value.job_id == "j"
        probe.gate("a").set()
        one, two = await asyncio.wait_for(asyncio.gather(first, second), WAIT)
        assert one.status is JobStatus.COMPLETED
        assert one.result == "A"
        assert two == one
        assert calls == 1
        again = await durable.run("j", "a")
        assert again == one  # completed: returned unchanged
        assert calls == 1


@pytest.mark.parametrize("bad", ["", " lead", "in side", "tab\tid", "new\nline", "x" * 201, "\x00", 42, None])
async def test_bad_job_ids_raise_and_change_nothing(bad: Any) -> None:
    async def agent(text: str) -> str:
        return text

    store = MemoryStore()
    async with DurableAgent(agent, store) as durable:
        with pytest.raises(InvalidJobId) as info:
            await durable.run(bad, "x")
        assert info.value.job_id == bad
        with pytest.raises(ValueError, match="invalid job id"):
            await durable.start(bad, "x")
        assert (await store.list()).jobs == []


async def test_non_json_values_are_refused() -> None:
    async def returns_set(text: str) -> Any:
        return {1, 2}

    async def step_returns_object(text: str, ctx: JobContext) -> Any:
        return await ctx.step("obj", object)

    store = MemoryStore()
    async with DurableAgent(returns_set, store, retry_delay=0.0) as durable:
        with pytest.raises(InvalidInput) as info:
            await durable.run("j", {"a": float("nan")})
        assert "input" in str(info.value)
        with pytest.raises(InvalidInput):
            await durable.run("k", object())
        assert (await store.list()).jobs == []
        job = await durable.run("set", "x")
        assert job.status is JobStatus.FAILED
        assert job.error_type == "InvalidInput"
        assert job.attempts == 1  # a bad result is never retried
    async with DurableAgent(step_returns_object, store, retry_delay=0.0) as durable:
        job = await durable.run("obj", "x")
        assert job.status is JobStatus.FAILED
        assert job.error_type == "InvalidInput"
        assert "result of step 'obj'" in (job.error or "")


async def test_a_journal_that_no_longer_matches_fails_the_job() -> None:
    names = iter(["one", "two"])

    async def drifting(text: str, ctx: JobContext) -> str:
        await ctx.step(next(names), str, "x")
        await ctx.interrupt("continue?")
        return "done"

    async with DurableAgent(drifting, MemoryStore()) as durable:
        assert (await durable.run("j", "x")).status is JobStatus.PAUSED
        job = await durable.resume("j", "go")
        assert job.status is JobStatus.FAILED
        assert job.error_type == "StepMismatch"
        assert "'one'" in (job.error or "")
        assert "'two'" in (job.error or "")


async def test_illegal_requests_raise_job_state_error_and_write_nothing() -> None:
    async def agent(text: str) -> str:
        return text

    async with DurableAgent(agent, MemoryStore()) as durable:
        done = await durable.run("j", "x")
        for request in (durable.pause, durable.cancel, durable.resume):
            with pytest.raises(JobStateError) as info:
                await request("j")
            assert (info.value.job_id, info.value.status) == ("j", "completed")
        assert await durable.status("j") == done
        for request in (durable.pause, durable.cancel, durable.resume):
            with pytest.raises(JobNotFound):
                await request("missing")


async def test_list_filters_by_status_metadata_and_limit_newest_first() -> None:
    clock = FakeClock()

    async def agent(text: str, ctx: JobContext) -> str:
        if text == "fail":
            raise NonRetryableError("no")
        if text == "wait":
            await ctx.interrupt("?")
        return text

    async with DurableAgent(agent, MemoryStore(), clock=clock) as durable:
        for index, text in enumerate(["ok", "fail", "wait", "ok2"]):
            await durable.run(f"j{index}", text, metadata={"n": index, "kind": "even" if index % 2 == 0 else "odd"})
            await clock.advance(1)
        everything = await durable.list()
        assert [j.id for j in everything] == ["j3", "j2", "j1", "j0"]
        assert [j.id for j in await durable.list(status="completed")] == ["j3", "j0"]
        assert [j.id for j in await durable.list(status=["failed", JobStatus.PAUSED])] == ["j2", "j1"]
        assert [j.id for j in await durable.list(metadata={"kind": "even"})] == ["j2", "j0"]
        assert [j.id for j in await durable.list(limit=2)] == ["j3", "j2"]
        with pytest.raises(ValueError, match="invalid job status 'done'"):
            await durable.list(status="done")
        for job in everything:
            assert job in await durable.list(status=job.status)


async def test_logs_carry_job_id_attempt_and_worker_id() -> None:
    async def agent(text: str) -> str:
        raise NonRetryableError("bad")

    async with DurableAgent(agent, MemoryStore(), worker_id="w-1") as durable:
        with capture_logs() as logs:
            await durable.run("j", "x")
    failed = [entry for entry in logs if entry["event"] == "job failed"]
    assert failed
    assert failed[0]["job_id"] == "j"
    assert failed[0]["worker_id"] == "w-1"
    assert failed[0]["attempt"] == 1


async def test_a_stopped_worker_hands_jobs_back_and_the_next_one_continues_them() -> None:
    probe = Probe()

    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.step("before", probe.step, ctx.job_id, "before")
        await ctx.step("hold", probe.hold, "held")
        return await ctx.step("after", probe.step, ctx.job_id, "after")

    store = MemoryStore()
    async with DurableAgent(agent, store, name="agent") as first:
        await first.start("j", "x")
        await asyncio.wait_for(probe.arrived("held").wait(), WAIT)
    handed_back = await store.get("j")
    assert handed_back is not None
    assert handed_back.status is JobStatus.PENDING
    assert handed_back.attempts == 0  # the interrupted execution is not counted
    probe.gate("held").set()
    async with DurableAgent(agent, store, name="agent") as second:
        done = await settle(second, "j")
    assert done.status is JobStatus.COMPLETED
    assert probe.ran == Counter({("j", "before"): 1, ("j", "after"): 1})


async def test_a_job_recovered_too_often_fails_with_recovery_limit_exceeded() -> None:
    clock = FakeClock()

    async def agent(text: str) -> str:
        return text

    store = MemoryStore()
    now = clock.utcnow()
    crashed = Job(
        id="poison",
        agent="agent",
        input="x",
        status=JobStatus.RUNNING,
        created_at=now,
        updated_at=now,
        version=1,
        owner="dead-worker",
        lease_until=now - timedelta(seconds=1),
        epoch=3,
        attempts=1,
        recoveries=2,
    )
    await store.create(crashed)
    async with DurableAgent(agent, store, name="agent", max_recoveries=2, clock=clock) as durable:
        job = await settle(durable, "poison")
    assert job.status is JobStatus.FAILED
    assert job.error_type == "RecoveryLimitExceeded"
    assert job.recoveries == 3


async def test_max_concurrency_bounds_running_agents() -> None:
    running = 0
    peak = 0
    release = asyncio.Event()

    async def agent(text: str) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return text

    async with DurableAgent(agent, MemoryStore(), max_concurrency=2) as durable:
        for index in range(5):
            await durable.start(f"j{index}", "x")
        for _ in range(20):
            await asyncio.sleep(0)
        assert running == 2
        statuses = Counter(j.status for j in await durable.list())
        assert statuses == Counter({JobStatus.RUNNING: 2, JobStatus.PENDING: 3})
        release.set()
        for index in range(5):
            assert (await settle(durable, f"j{index}")).status is JobStatus.COMPLETED
    assert peak == 2


async def test_a_job_started_with_a_free_slot_is_created_running_in_one_write() -> None:
    """start() returns the job as made (pending, v1); the store already holds it running (v2, its first
    attempt counted, its job_status event logged with it). A job that waits for a slot is created pending."""
    probe = Probe()

    async def agent(text: str, ctx: JobContext) -> str:
        await probe.hold(text)
        return await ctx.step("s", probe.step, text, "s")

    store = MemoryStore()
    async with DurableAgent(agent, store, max_concurrency=1) as durable:
        first = await durable.start("first", "first")
        assert (first.status, first.version, first.attempts) == (JobStatus.PENDING, 1, 0)
        stored = await store.get("first")
        assert stored is not None
        assert (stored.status, stored.version, stored.attempts, stored.owner) == (
            JobStatus.RUNNING,
            2,
            1,
            durable.worker_id,
        )
        logged = await store.read_events("first")
        assert [(event["type"], event["seq"]) for event in logged] == [("job_status", 0)]
        assert Job.model_validate(logged[0]["job"]) == stored
        await asyncio.wait_for(probe.arrived("first").wait(), WAIT)
        second = await durable.start("second", "second")  # the only slot is taken: created pending
        waiting = await store.get("second")
        assert waiting is not None and (waiting.status, waiting.version) == (JobStatus.PENDING, 1)
        assert await store.read_events("second") == []
        probe.gate("first").set()
        probe.gate("second").set()
        for job in (first, second):
            done = await settle(durable, job.id)
            assert (done.status, done.attempts, done.result) == (JobStatus.COMPLETED, 1, "s-done")
            events = [event["type"] for event in await store.read_events(job.id)]
            assert events == ["job_status", "step", "done", "job_status"]


async def test_agent_shapes() -> None:
    class ObjectAgent:
        async def run(self, text: str, ctx: JobContext) -> str:
            return await ctx.step("upper", str.upper, text)

    async def generator(text: str) -> AsyncIterator[str]:
        for word in text.split():
            yield word + "."

    store = MemoryStore()
    async with DurableAgent(ObjectAgent(), store) as durable:
        assert durable.name == "test_agent_shapes.<locals>.ObjectAgent"
        assert (await durable.run("o", "abc")).result == "ABC"
    async with DurableAgent(generator, store) as durable:
        job = await durable.run("g", "a b")
        assert job.result == "a.b."
    # the log of a settled job is written in the background; closing the worker waits for it
    assert [e["token"] for e in await store.read_events("g") if e["type"] == "token"] == ["a.", "b."]
    with pytest.raises(TypeError, match="must be an async function"):
        DurableAgent(lambda text: text, store)
    with pytest.raises(ValueError, match="max_retries"):
        DurableAgent(generator, store, max_retries=-1)
    with pytest.raises(ValueError, match="retry_delay"):
        DurableAgent(generator, store, retry_delay=float("inf"))


async def test_calls_need_a_running_worker() -> None:
    async def agent(text: str) -> str:
        return text

    durable = DurableAgent(agent, MemoryStore())
    with pytest.raises(RuntimeError, match="not running"):
        await durable.start("j", "x")
    async with durable:
        assert durable.is_running
    assert not durable.is_running
    await durable.aclose()  # idempotent
