"""Durable sleep: ``ctx.sleep`` / ``ctx.sleep_until`` journal the wake time; a sleeping job holds no task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durapod import (
    Client,
    DurableAgent,
    Job,
    JobContext,
    JobStatus,
    JobStatusEvent,
    MemoryStore,
    SQLiteStore,
    Store,
    StoreUnavailable,
)
from durapod.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "workers" / "primitives_worker.py"
WAIT = 30.0
START = datetime(2026, 1, 1, tzinfo=UTC)


async def sleeping(store: Store, job_id: str) -> Job:
    """The job once it sleeps (the store offers nothing to wait on for a pending job)."""
    while True:
        job = await store.get(job_id)
        if job is not None and job.sleeping_until is not None:
            return job
        await asyncio.sleep(0.001)


def job_tasks(*job_ids: str) -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() in job_ids]


async def test_a_sleep_journals_its_wake_time_and_the_job_wakes_then(store: Store) -> None:
    clock = FakeClock(START)
    ran: list[str] = []

    def step(text: str) -> str:
        ran.append(text)
        return text

    async def agent(text: str, ctx: JobContext) -> str:
        before = await ctx.step("before", step, text.upper())
        await ctx.sleep(timedelta(seconds=20))
        after = await ctx.step("after", step, text.lower())
        return f"{before},{after}"

    async with DurableAgent(agent, store, clock=clock, lease_ttl=3600) as durable:
        await durable.start("j", "Hi")
        job = await sleeping(store, "j")
        assert job.status is JobStatus.PENDING
        assert job.sleeping_until == job.next_attempt_at == START + timedelta(seconds=20)
        assert job_tasks("j") == []  # no actor, no task while it sleeps
        await clock.advance(19)
        assert (await durable.status("j")).status is JobStatus.PENDING  # type: ignore[union-attr]
        await clock.advance(1)
        done = await durable.wait("j", timeout=WAIT)
    assert done.status is JobStatus.COMPLETED
    assert done.result == "HI,hi"
    assert done.attempts == 1  # waking continues the execution: no new attempt
    assert done.sleeping_until is None
    journal = await store.read_steps("j")
    assert [record.name for record in journal] == ["before", "durapod.sleep", "after"]
    assert journal[1].result == (START + timedelta(seconds=20)).isoformat()
    assert ran == ["HI", "hi"]  # "before" was replayed from the journal, not run again


async def test_sleep_until_a_past_time_returns_at_once_and_a_naive_time_is_refused() -> None:
    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.sleep_until(datetime(2000, 1, 1, tzinfo=UTC))
        await ctx.sleep(0)
        if text == "naive":
            await ctx.sleep_until(datetime(2100, 1, 1))  # naive: refused
        return "woke"

    async with DurableAgent(agent, MemoryStore(), max_retries=0) as durable:
        assert (await durable.run("past", "x")).result == "woke"
        failed = await durable.run("naive", "naive")
    assert failed.status is JobStatus.FAILED
    assert failed.error_type == "ValueError"
    assert "timezone-aware" in (failed.error or "")


async def test_a_thousand_sleeping_jobs_hold_no_task() -> None:
    clock = FakeClock(START)

    async def agent(number: int, ctx: JobContext) -> int:
        await ctx.sleep(60)
        return number

    store = MemoryStore()
    async with DurableAgent(agent, store, clock=clock, lease_ttl=3600) as durable:
        before = len(asyncio.all_tasks())
        timers = clock.pending
        ids = [f"j{number}" for number in range(1000)]
        for number, job_id in enumerate(ids):
            await durable.start(job_id, number)
        for job_id in ids:
            await sleeping(store, job_id)
        assert len(asyncio.all_tasks()) <= before  # 1,000 sleeping jobs, not one task among them
        assert clock.pending <= timers + 1  # and one timer for all of them (the earliest wake-up)
        await clock.advance(60)
        results = [await durable.wait(job_id, timeout=WAIT) for job_id in ids]
    assert [job.result for job in results] == list(range(1000))


async def test_a_sleeping_job_can_be_paused_resumed_and_cancelled(store: Store) -> None:
    clock = FakeClock(START)

    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.sleep(100)
        return text

    async with DurableAgent(agent, store, clock=clock, lease_ttl=3600) as durable:
        await durable.start("p", "x")
        await sleeping(store, "p")
        paused = await durable.pause("p")
        assert paused.status is JobStatus.PAUSED
        assert paused.sleeping_until is None
        await clock.advance(40)
        await durable.resume("p", wait=False)
        again = await sleeping(store, "p")  # the rest of the same sleep, not a new one
        assert again.sleeping_until == START + timedelta(seconds=100)
        assert again.attempts == 1
        await clock.advance(60)
        assert (await durable.wait("p", timeout=WAIT)).result == "x"
        assert [record.name for record in await store.read_steps("p")] == ["durapod.sleep"]

        await durable.start("c", "y")
        await sleeping(store, "c")
        cancelled = await durable.cancel("c")
        assert cancelled.status is JobStatus.CANCELLED
        await clock.advance(200)
        assert (await durable.status("c")).status is JobStatus.CANCELLED  # type: ignore[union-attr]


async def test_a_worker_that_stops_mid_sleep_hands_the_sleep_over_without_starting_it_again(store: Store) -> None:
    clock = FakeClock(START)

    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.sleep(100)
        return text

    async with DurableAgent(agent, store, clock=clock, name="sleepy", lease_ttl=3600) as first:
        await first.start("h", "x")
        await sleeping(store, "h")
    await clock.advance(30)
    async with DurableAgent(agent, store, clock=clock, name="sleepy", lease_ttl=3600) as second:
        job = await sleeping(store, "h")
        assert job.sleeping_until == START + timedelta(seconds=100)
        await clock.advance(69)
        assert (await second.status("h")).status is JobStatus.PENDING  # type: ignore[union-attr]
        await clock.advance(1)
        done = await second.wait("h", timeout=WAIT)
    assert done.status is JobStatus.COMPLETED
    assert [record.name for record in await store.read_steps("h")] == ["durapod.sleep"]


async def test_a_worker_already_running_wakes_a_job_another_worker_put_to_sleep(store: Store) -> None:
    """The worker that began the sleep is gone; one that was running all along learns the wake time from
    the store at its next lease renewal (every third of the lease: at 4 s here) and wakes the job at 10 s,
    not at its periodic claim after that (12 s)."""
    clock = FakeClock(START)

    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.sleep(10)
        return text

    async with DurableAgent(agent, store, clock=clock, name="shared", lease_ttl=12) as other:
        async with DurableAgent(agent, store, clock=clock, name="shared", lease_ttl=12) as first:
            await first.start("w", "x")
            job = await sleeping(store, "w")
        assert job.owner is None
        for _ in range(9):  # the other worker renews its lease (and asks for the next wake-up) at 4 s and 8 s
            await clock.advance(1)
            await asyncio.sleep(0.01)  # its lease keeper's store calls, on the real clock
        assert (await other.status("w")).status is JobStatus.PENDING  # type: ignore[union-attr]
        await clock.advance(1)
        done = await other.wait("w", timeout=WAIT)
    assert done.status is JobStatus.COMPLETED
    assert done.owner == other.worker_id  # the worker that was running all along woke it
    assert [record.name for record in await store.read_steps("w")] == ["durapod.sleep"]


async def test_a_job_that_wakes_while_every_slot_is_taken_runs_when_one_frees() -> None:
    """With ``max_concurrency`` reached at its wake time, the job runs as soon as a slot frees, not at the
    next periodic claim (a third of the hour-long lease here)."""
    clock = FakeClock(START)
    release = asyncio.Event()

    async def agent(text: str, ctx: JobContext) -> str:
        if text == "busy":
            await ctx.step("hold", release.wait)
        else:
            await ctx.sleep(10)
        return text

    store = MemoryStore()
    async with DurableAgent(agent, store, clock=clock, lease_ttl=3600, max_concurrency=1) as durable:
        await durable.start("sleeper", "zz")
        await sleeping(store, "sleeper")
        await durable.start("busy", "busy")  # takes the only slot
        await clock.advance(10)
        assert (await durable.status("sleeper")).status is JobStatus.PENDING  # type: ignore[union-attr]
        release.set()
        assert (await durable.wait("busy", timeout=WAIT)).status is JobStatus.COMPLETED
        done = await durable.wait("sleeper", timeout=WAIT)
    assert done.status is JobStatus.COMPLETED


# -- a real worker process, SIGKILLed mid-sleep ---------------------------------------------------


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=WAIT)


def ran(directory: Path) -> list[tuple[str, int]]:
    path = directory / "ran.log"
    if not path.exists():
        return []
    return [(step, int(pid)) for _, step, pid in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.slow
def test_a_worker_killed_mid_sleep_is_continued_by_another_without_starting_the_sleep_over(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    db = tmp_path / "jobs.db"

    async def submit() -> None:
        async with Client(SQLiteStore(db)) as client:
            await client.submit("s", 2.0, agent="sleeper")

    async def asleep() -> Job | None:
        async with Client(SQLiteStore(db)) as client:
            job = await client.status("s")
        return job if job is not None and job.sleeping_until is not None else None

    asyncio.run(submit())
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), f"sqlite:///{db}", str(tmp_path), "--lease-ttl", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    processes.append(worker)
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + WAIT
    while (job := asyncio.run(asleep())) is None:
        assert time.monotonic() < deadline, "the job never slept"
        time.sleep(0.01)  # another process does the work: poll the store
    wake_at = job.sleeping_until
    assert wake_at is not None
    worker.send_signal(signal.SIGKILL)
    worker.wait(WAIT)

    async def take_over() -> Job:
        sys.path.insert(0, str(ROOT))
        from tests.workers.primitives_worker import sleeper_agent

        store = SQLiteStore(db)
        agent = sleeper_agent(tmp_path)
        async with DurableAgent(agent, store, name="sleeper", lease_ttl=0.5) as durable:
            done: Job = await durable.wait("s", timeout=WAIT)
            journal = await durable.steps("s")
        await store.close()
        assert [record.name for record in journal] == ["before", "durapod.sleep", "after"]
        assert journal[1].result == wake_at.isoformat()  # the wake time journaled before the kill
        assert journal[2].recorded_at >= wake_at  # woke on time, not before
        assert journal[2].recorded_at < wake_at + timedelta(seconds=2)  # and not after a second full sleep
        return done

    done = asyncio.run(take_over())
    assert done.status is JobStatus.COMPLETED
    assert done.result == "before:after"
    assert done.attempts == 1
    steps = ran(tmp_path)
    assert [step for step, _ in steps] == ["before", "after"]  # before ran once, in the killed worker
    assert steps[1][1] == os.getpid()


async def test_a_sleeping_job_is_held_by_no_worker_and_claimable_from_its_wake_time(store: Store) -> None:
    """A job that falls asleep goes back to the store with no owner (even as its worker drains): no lease
    to wait for, no renewal; any worker may claim it from its wake time on, and none before."""

    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.sleep(60)
        return text

    async with DurableAgent(agent, store, name="sleepy", lease_ttl=30) as durable:
        await durable.start("r", "x")
        async with contextlib.aclosing(durable.stream("r")) as events:
            async for event in events:
                if isinstance(event, JobStatusEvent) and event.job.sleeping_until is not None:
                    break
    job = await store.get("r")
    assert job is not None and job.owner is None
    wake_at = job.sleeping_until
    assert wake_at is not None
    assert await store.next_wake("sleepy", now=wake_at - timedelta(seconds=59)) == job.lease_until
    assert job.lease_until is not None and job.lease_until < wake_at
    early = wake_at - timedelta(milliseconds=1)
    assert await store.claim("r", "another-worker", lease_until=early + timedelta(seconds=30), now=early) is None
    taken = await store.claim("r", "another-worker", lease_until=wake_at + timedelta(seconds=30), now=wake_at)
    assert taken is not None
    assert taken.sleeping_until == wake_at
    assert await store.next_wake("sleepy", now=wake_at) is None


def test_show_prints_the_wake_time_of_a_sleeping_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from durapod.cli import main

    db = tmp_path / "jobs.db"

    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.sleep(timedelta(days=1))
        return text

    async def start() -> None:
        store = SQLiteStore(db)
        async with DurableAgent(agent, store, clock=FakeClock(START), lease_ttl=3600) as durable:
            await durable.start("nap", "x")
            await sleeping(store, "nap")
        await store.close()

    asyncio.run(start())
    assert main(["--store", f"sqlite:///{db}", "show", "nap"]) == 0
    shown = capsys.readouterr().out
    assert "sleeping until  2026-01-02 00:00:00" in shown, shown
    assert "next attempt" not in shown


async def test_sleeping_jobs_take_no_concurrency_slot(store: Store) -> None:
    clock = FakeClock(START)

    async def agent(text: str, ctx: JobContext) -> str:
        if text == "sleep":
            await ctx.sleep(60)
        return text

    async with DurableAgent(
        agent, store, clock=clock, max_concurrency=1, lease_ttl=3600, poll_interval=0.05
    ) as durable:
        await durable.start("s", "sleep")
        await sleeping(store, "s")
        await durable.submit("q", "quick")
        serving = asyncio.create_task(durable.serve())
        try:
            done = await durable.wait("q", timeout=WAIT)  # taken although a sleeper is held with max_concurrency=1
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    assert done.result == "quick"


async def test_sleepers_wake_in_the_order_of_their_wake_times() -> None:
    clock = FakeClock(START)
    woke: list[int] = []

    async def agent(seconds: int, ctx: JobContext) -> int:
        await ctx.sleep(seconds)
        woke.append(seconds)
        return seconds

    async with DurableAgent(agent, MemoryStore(), clock=clock, lease_ttl=3600) as durable:
        for seconds in (30, 10, 20):
            await durable.start(f"s{seconds}", seconds)
            await sleeping(durable.store, f"s{seconds}")
        await clock.advance(10)
        assert (await durable.wait("s10", timeout=WAIT)).result == 10
        assert woke == [10]
        await clock.advance(10)
        assert (await durable.wait("s20", timeout=WAIT)).result == 20
        assert woke == [10, 20]
        await clock.advance(10)
        assert (await durable.wait("s30", timeout=WAIT)).result == 30
    assert woke == [10, 20, 30]


class WakeTimesUnreadable(MemoryStore):
    """A MemoryStore whose ``next_wake`` fails once ``broken`` is set; everything else works."""

    broken = False

    async def next_wake(self, agent: str | None, *, now: datetime) -> datetime | None:
        if self.broken:
            raise StoreUnavailable("next_wake is down")
        return await super().next_wake(agent, now=now)


async def test_a_failing_next_wake_is_logged_as_such_and_orphans_are_still_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="durapod")
    clock = FakeClock(START)
    store = WakeTimesUnreadable()

    async def agent(text: str, ctx: JobContext) -> str:
        return text

    orphan = Job(
        id="o",
        agent="shared",
        input="left behind",
        status=JobStatus.RUNNING,
        attempts=1,
        owner="a-dead-worker",
        lease_until=START - timedelta(seconds=1),
        epoch=1,
        created_at=START,
        updated_at=START,
    )
    async with DurableAgent(agent, store, clock=clock, name="shared", lease_ttl=12) as durable:
        store.broken = True
        await store.create(orphan)
        await clock.advance(4)  # the lease keeper's renewal: claims orphans, then asks for the next wake-up
        done = await durable.wait("o", timeout=WAIT)
    assert done.status is JobStatus.COMPLETED and done.owner == durable.worker_id
    messages = [record.getMessage() for record in caplog.records if record.name.startswith("durapod")]
    assert any("cannot read when the next sleeping job wakes" in message for message in messages), messages
    assert not any("cannot claim orphaned jobs" in message for message in messages), messages
