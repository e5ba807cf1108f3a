"""The job runtime: concurrent steps, sync steps off the loop, takeover, worker ids, drain, shared control API."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from durapod import (
    Client,
    DurableAgent,
    JobContext,
    JobStatus,
    MemoryStore,
    SQLiteStore,
    StepMismatch,
    WorkerIdInUse,
)

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "workers" / "runtime_worker.py"
WAIT = 30.0


# -- in process ------------------------------------------------------------------------------------


async def test_steps_started_together_get_positions_in_call_order_and_replay() -> None:
    ran: Counter[str] = Counter()
    gate = asyncio.Event()

    async def work(name: str) -> str:
        ran[name] += 1
        if name == "first":
            await gate.wait()  # finishes last: it is journaled after the others
        return f"{name}-done"

    async def agent(text: str, ctx: JobContext) -> str:
        results = await asyncio.gather(*(ctx.step(name, work, name) for name in ("first", "second", "third")))
        answer = await ctx.interrupt("go on?")
        return f"{results}:{answer}"

    store = MemoryStore()
    async with DurableAgent(agent, store) as durable:
        await durable.start("j", "x")
        while len(await store.read_steps("j")) < 2:  # noqa: ASYNC110 - the store offers nothing to wait on
            await asyncio.sleep(0)
        gate.set()
        paused = await durable.wait("j", timeout=WAIT)
        assert paused.status is JobStatus.PAUSED
        journal = await store.read_steps("j")
        assert [(record.index, record.name) for record in journal] == [(0, "first"), (1, "second"), (2, "third")]
        done = await durable.resume("j", "yes", timeout=WAIT)  # replays the three steps from the journal
    assert done.status is JobStatus.COMPLETED
    assert done.result == "['first-done', 'second-done', 'third-done']:yes"
    assert ran == Counter({"first": 1, "second": 1, "third": 1})


async def test_a_journal_that_no_longer_matches_concurrent_steps_fails_the_job() -> None:
    swapped = False

    async def agent(text: str, ctx: JobContext) -> str:
        names = ("b", "a") if swapped else ("a", "b")
        await asyncio.gather(*(ctx.step(name, str.upper, name) for name in names))
        return str(await ctx.interrupt("again?"))

    async with DurableAgent(agent, MemoryStore()) as durable:
        assert (await durable.run("j", "x")).status is JobStatus.PAUSED
        swapped = True
        failed = await durable.resume("j", "yes", timeout=WAIT)
    assert failed.status is JobStatus.FAILED
    assert failed.error_type == StepMismatch.__name__


async def test_a_sync_step_runs_off_the_event_loop() -> None:
    """The step blocks its thread until a coroutine on the loop signals it: on the loop it would deadlock."""
    signalled = threading.Event()
    step_running = asyncio.Event()
    loop = asyncio.get_running_loop()
    ticks = 0

    def blocking_step() -> str:
        loop.call_soon_threadsafe(step_running.set)
        if not signalled.wait(WAIT):  # set by the ticker below, which needs the loop to run
            return "the loop was blocked"
        time.sleep(1.0)  # and a second of plain blocking work
        return "done in a thread"

    async def ticker() -> None:
        nonlocal ticks
        await step_running.wait()
        signalled.set()
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def agent(text: str, ctx: JobContext) -> str:
        return await ctx.step("block", blocking_step)

    ticking = asyncio.create_task(ticker())
    try:
        async with DurableAgent(agent, MemoryStore()) as durable:
            job = await durable.run("j", "x")
    finally:
        ticking.cancel()
    assert job.result == "done in a thread"
    assert ticks > 1  # the ticker kept running while the step blocked its thread


async def test_a_worker_id_held_by_a_live_worker_is_refused(tmp_path: Path) -> None:
    async def agent(text: str) -> str:
        return text

    store = MemoryStore()
    async with DurableAgent(agent, store, worker_id="w-1"):
        other = DurableAgent(agent, store, worker_id="w-1")
        with pytest.raises(WorkerIdInUse) as caught:
            await other.open()
        assert caught.value.worker_id == "w-1"
        assert not other.is_running
    async with DurableAgent(agent, store, worker_id="w-1") as again:  # free once the holder has stopped
        assert (await again.run("j", "x")).status is JobStatus.COMPLETED


async def test_resume_without_waiting_returns_before_the_job_settles() -> None:
    release = asyncio.Event()

    async def slow(text: str) -> str:
        await release.wait()
        return text

    async def agent(text: str, ctx: JobContext) -> str:
        answer = await ctx.interrupt("go?")
        return await ctx.step("slow", slow, f"{text}:{answer}")

    async with DurableAgent(agent, MemoryStore()) as durable:
        assert (await durable.run("j", "x")).status is JobStatus.PAUSED
        resumed = await durable.resume("j", "yes", wait=False)
        assert resumed.status is JobStatus.RUNNING
        assert (await durable.status("j")).status is JobStatus.RUNNING  # type: ignore[union-attr]
        release.set()
        done = await durable.wait("j", timeout=WAIT)
    assert done.result == "x:yes"


async def test_pause_and_cancel_without_waiting_return_once_recorded() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def hold() -> str:
        started.set()
        await release.wait()
        return "held"

    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.step("hold", hold)
        return await ctx.step("next", str.upper, text)

    async with DurableAgent(agent, MemoryStore(), pause_timeout=WAIT) as durable:
        await durable.start("j", "x")
        await started.wait()
        asked = await durable.pause("j", wait=False)
        assert asked.status is JobStatus.RUNNING  # asked, not yet paused: the step in flight finishes first
        release.set()
        paused = await durable.wait("j", timeout=WAIT)
        assert paused.status is JobStatus.PAUSED
        assert [record.name for record in await durable.steps("j")] == ["hold"]
        cancelled = await durable.cancel("j", wait=False)
        assert cancelled.status is JobStatus.CANCELLED  # nobody runs a paused job: cancelled at once


SHARED = ["submit", "status", "steps", "list", "page", "wait", "stream", "pause", "resume", "cancel", "schedules"]


@pytest.mark.parametrize("name", SHARED)
def test_durable_agent_and_client_share_query_and_control_signatures(name: str) -> None:
    agent_signature = inspect.signature(getattr(DurableAgent, name))
    client_signature = inspect.signature(getattr(Client, name))
    assert agent_signature == client_signature


# -- real processes --------------------------------------------------------------------------------


class Worker:
    def __init__(self, url: str, directory: Path, agent: str, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), url, str(directory), agent, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            _, err = self.process.communicate(timeout=WAIT)
            raise AssertionError(f"worker did not start: {line!r} {err}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=WAIT)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def ran(directory: Path) -> list[tuple[str, str, int]]:
    path = directory / "ran.log"
    if not path.exists():
        return []
    return [(job, step, int(pid)) for job, step, pid in (line.split() for line in path.read_text().splitlines())]


def wait_until(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # another process does the work: poll its traces


async def steps_of(db: Path, job_id: str) -> list[str]:
    async with Client(SQLiteStore(db)) as client:
        return [record.name for record in await client.steps(job_id)]


@pytest.mark.slow
def test_gathered_steps_replay_after_sigkill_and_a_plain_worker_takes_the_job_over(
    tmp_path: Path, workers: list[Worker]
) -> None:
    """A worker with a random id is SIGKILLed while step b runs and a is journaled; another process's plain
    ``async with`` worker (no serve()) takes the orphan over within a few lease periods and finishes it:
    a does not run again, b and c run once there, and the journal holds each step at its position."""
    db = tmp_path / "jobs.db"
    url = f"sqlite:///{db}"

    async def submit() -> None:
        async with Client(SQLiteStore(db)) as client:
            await client.submit("g", "x", agent="gather")

    asyncio.run(submit())
    first = Worker(url, tmp_path, "gather", "--lease-ttl", "1")
    workers.append(first)
    wait_until(lambda: {step for _, step, _ in ran(tmp_path)} == {"a", "b"}, "steps a and b to start")
    wait_until(lambda: asyncio.run(steps_of(db, "g")) == ["a"], "step a to be journaled")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(WAIT)
    (tmp_path / "release").touch()

    async def take_over() -> JobStatus:
        def gated(job_id: str, step: str) -> str:  # a sync step: it runs in a worker thread
            with open(tmp_path / "ran.log", "a") as log:
                log.write(f"{job_id} {step} {os.getpid()}\n")
            return f"{step}-done"

        async def gather(text: str, ctx: JobContext) -> str:
            a, b = await asyncio.gather(ctx.step("a", gated, ctx.job_id, "a"), ctx.step("b", gated, ctx.job_id, "b"))
            c = await ctx.step("c", gated, ctx.job_id, "c")
            return f"{text}:{a}:{b}:{c}"

        store = SQLiteStore(db)
        async with DurableAgent(gather, store, name="gather", lease_ttl=1.0, poll_interval=0.05) as durable:
            job = await durable.wait("g", timeout=WAIT)  # no serve(): the takeover is the worker's own
            assert job.result == "x:a-done:b-done:c-done", job
            status = job.status
        await store.close()
        return status

    assert asyncio.run(take_over()) is JobStatus.COMPLETED
    assert asyncio.run(steps_of(db, "g")) == ["a", "b", "c"]
    by_step = Counter(step for _, step, _ in ran(tmp_path))
    assert by_step == Counter({"a": 1, "b": 2, "c": 1})  # b was in flight at the kill: it ran again
    assert {pid for _, step, pid in ran(tmp_path) if step == "c"} == {os.getpid()}


@pytest.mark.slow
def test_a_second_process_with_a_live_workers_id_is_refused(tmp_path: Path, workers: list[Worker]) -> None:
    db = tmp_path / "jobs.db"
    url = f"sqlite:///{db}"
    holder = Worker(url, tmp_path, "slow", "--worker-id", "fixed-id", "--lease-ttl", "5")
    workers.append(holder)
    second = subprocess.run(
        [sys.executable, str(WORKER), url, str(tmp_path), "slow", "--worker-id", "fixed-id"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert second.returncode != 0
    assert "WorkerIdInUse" in second.stderr and "fixed-id" in second.stderr
    holder.process.send_signal(signal.SIGTERM)  # a graceful stop frees the id at once
    out, _ = holder.process.communicate(timeout=WAIT)
    assert "stopped" in out
    third = Worker(url, tmp_path, "slow", "--worker-id", "fixed-id")
    workers.append(third)


@pytest.mark.slow
def test_sigterm_lets_the_step_in_flight_finish_and_be_journaled(tmp_path: Path, workers: list[Worker]) -> None:
    db = tmp_path / "jobs.db"
    url = f"sqlite:///{db}"

    async def submit() -> None:
        async with Client(SQLiteStore(db)) as client:
            await client.submit("s", "x", agent="slow")

    asyncio.run(submit())
    worker = Worker(url, tmp_path, "slow", "--lease-ttl", "5")
    workers.append(worker)
    wait_until(lambda: [step for _, step, _ in ran(tmp_path)] == ["slow"], "the slow step to start")
    worker.process.send_signal(signal.SIGTERM)  # the step is in flight: it gets shutdown_grace to finish
    (tmp_path / "release").touch()
    out, _ = worker.process.communicate(timeout=WAIT)
    assert worker.process.returncode == 0 and "stopped" in out

    async def handed_back() -> tuple[JobStatus, list[str]]:
        async with Client(SQLiteStore(db)) as client:
            job = await client.status("s")
            assert job is not None
            return job.status, [record.name for record in await client.steps("s")]

    status, journal = asyncio.run(handed_back())
    assert journal == ["slow"]  # finished and journaled before the worker let go
    assert status is JobStatus.PENDING  # handed back for the next worker, which continues after "slow"
    assert [step for _, step, _ in ran(tmp_path)] == ["slow"]  # "after" never started here
    nxt = Worker(url, tmp_path, "slow")
    workers.append(nxt)
    wait_until(lambda: asyncio.run(steps_of(db, "s")) == ["slow", "after"], "the next worker to finish")
    assert [step for _, step, _ in ran(tmp_path)] == ["slow", "after"]  # the journaled step did not run again


async def test_an_id_registered_by_a_dead_process_of_this_host_is_taken_over_at_once() -> None:
    """A restarted worker (a container restarts with the same pid, say) reclaims its id; another host's
    live registration is refused until its lease runs out."""
    import json
    import socket
    from datetime import timedelta

    async def agent(text: str) -> str:
        return text

    store = MemoryStore()
    now = durapod_now()
    dead_here = json.dumps({"token": "old", "host": socket.gethostname(), "pid": os.getpid(), "process": "gone"})
    assert (
        await store.register_worker("w-1", "old", info=dead_here, lease_until=now + timedelta(hours=1), now=now) is None
    )
    async with DurableAgent(agent, store, worker_id="w-1") as durable:
        assert (await durable.run("j", "x")).status is JobStatus.COMPLETED
    elsewhere = json.dumps({"token": "other", "host": "another-host", "pid": os.getpid(), "process": "x"})
    assert (
        await store.register_worker("w-2", "other", info=elsewhere, lease_until=now + timedelta(hours=1), now=now)
        is None
    )
    with pytest.raises(WorkerIdInUse, match="another-host"):
        await DurableAgent(agent, store, worker_id="w-2").open()


def durapod_now() -> datetime:
    from durapod.models import utcnow

    return utcnow()
