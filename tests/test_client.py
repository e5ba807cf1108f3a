"""Client: a process that runs no job queues, queries and controls jobs through the store."""

from __future__ import annotations

import asyncio

import pytest

from durapod import Client, DurableAgent, JobConflictError, JobContext, JobStateError, JobStatus, Store
from durapod.testing import FakeClock


async def approve(text: str, ctx: JobContext) -> str:
    answer = await ctx.interrupt(f"send {text}?")
    return f"{text}:{answer}"


async def test_submit_list_page_and_status(store: Store) -> None:
    clock = FakeClock()
    async with Client(store, clock=clock) as client:
        for index in range(5):
            await client.submit(f"j{index}", index, agent="a" if index % 2 else None, metadata={"n": index})
            await clock.advance(1)
        again = await client.submit("j0", 0)  # the same input: the existing job, nothing new
        assert again.id == "j0" and again.status is JobStatus.PENDING
        with pytest.raises(JobConflictError):
            await client.submit("j0", "other")
        assert [job.id for job in await client.list()] == ["j4", "j3", "j2", "j1", "j0"]
        assert [job.id for job in await client.list(agent="a")] == ["j3", "j1"]
        assert [job.id for job in await client.list(metadata={"n": 2})] == ["j2"]
        first = await client.page(limit=2)
        assert [job.id for job in first.jobs] == ["j4", "j3"]
        second = await client.page(limit=2, cursor=first.next_cursor)
        assert [job.id for job in second.jobs] == ["j2", "j1"]
        status = await client.status("j1")
        assert status is not None and status.agent == "a" and status.input == 1
        assert await client.status("missing") is None
        with pytest.raises(TimeoutError):
            await client.wait("j1", timeout=0.05)  # nobody runs it
        with pytest.raises(ValueError, match="limit"):
            await client.list(limit=-1)


async def test_control_of_jobs_nobody_runs(store: Store) -> None:
    async with Client(store) as client:
        await client.submit("j", "x")
        paused = await client.pause("j")
        assert paused.status is JobStatus.PAUSED
        with pytest.raises(JobStateError):
            await client.pause("j")
        queued = await client.resume("j", "more", wait=False)
        assert queued.status is JobStatus.PENDING  # queued for a worker: resume does not wait
        assert queued.inputs == ["more"]
        cancelled = await client.cancel("j")
        assert cancelled.status is JobStatus.CANCELLED
        with pytest.raises(JobStateError):
            await client.resume("j")


async def test_a_worker_runs_what_a_client_queued_and_resumed(store: Store) -> None:
    client = Client(store)
    await client.submit("ticket", "reply", agent="approve")
    async with DurableAgent(approve, store, name="approve") as worker:  # opening claims the queued job
        paused = await worker.wait("ticket", timeout=10)
        assert paused.status is JobStatus.PAUSED and paused.waiting_for == "send reply?"
        serving = asyncio.create_task(worker.serve())
        await client.resume("ticket", "yes", wait=False)  # answers the interrupt; the worker's serve loop takes it
        done = await client.wait("ticket", timeout=10)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    assert done.status is JobStatus.COMPLETED
    assert done.result == "reply:yes"
    assert done.attempts == 1  # answering an interrupt continues the execution
    steps = await client.steps("ticket")
    assert steps == []
