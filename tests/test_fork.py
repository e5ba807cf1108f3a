"""Fork: a new job replays another job's steps before ``from_step`` and runs the rest again."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from durapod import Client, DurableAgent, JobConflictError, JobContext, JobNotFound, JobStatus, SQLiteStore, Store
from durapod.testing import FakeClock


def counting_agent(ran: Counter[str]) -> object:
    async def pipeline(text: str, ctx: JobContext) -> str:
        for name in ("fetch", "parse", "summarize", "publish"):
            text = await ctx.step(name, record, name, text)
        return text

    def record(name: str, text: str) -> str:
        ran[name] += 1
        return f"{text}>{name}"

    return pipeline


async def test_fork_from_step_2_runs_steps_2_on_only(store: Store) -> None:
    ran: Counter[str] = Counter()
    async with DurableAgent(counting_agent(ran), store, name="pipeline") as durable:
        source = await durable.run("src", "doc")
        ran.clear()
        forked = await durable.fork("src", "src-2", from_step=2)
        assert forked.status is JobStatus.PENDING
        done = await durable.wait("src-2")
        journal = await durable.steps("src-2")
    assert source.result == done.result == "doc>fetch>parse>summarize>publish"
    assert ran == Counter({"summarize": 1, "publish": 1})  # steps 0 and 1 replayed from the copied journal
    assert [(record.index, record.name) for record in journal] == [
        (0, "fetch"),
        (1, "parse"),
        (2, "summarize"),
        (3, "publish"),
    ]
    assert done.attempts == 1
    assert done.metadata == {"durapod.forked_from": "src"}


async def test_fork_with_a_new_input_from_step_0_runs_everything_again(store: Store) -> None:
    ran: Counter[str] = Counter()
    async with DurableAgent(counting_agent(ran), store, name="pipeline") as durable:
        await durable.run("src", "doc")
        ran.clear()
        await durable.fork("src", "again", from_step=0, input="other")
        done = await durable.wait("again")
    assert done.result == "other>fetch>parse>summarize>publish"
    assert ran == Counter({"fetch": 1, "parse": 1, "summarize": 1, "publish": 1})


async def test_a_client_fork_is_queued_for_a_worker_of_the_agent(store: Store) -> None:
    ran: Counter[str] = Counter()
    async with DurableAgent(counting_agent(ran), store, name="pipeline") as durable:
        await durable.run("src", "doc")
    ran.clear()
    client = Client(store)  # not closed: that would close the store the worker below uses
    forked = await client.fork("src", "queued", from_step=3)
    assert forked.agent == "pipeline"
    async with DurableAgent(counting_agent(ran), store, name="pipeline", poll_interval=0.05) as worker:
        serving = asyncio.create_task(worker.serve())
        done = await worker.wait("queued", timeout=30)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    assert done.result == "doc>fetch>parse>summarize>publish"
    assert ran == Counter({"publish": 1})


async def test_a_fork_is_stamped_by_the_injected_clock(store: Store) -> None:
    """Every time a fork writes (the copy, its journal, the job handed back) is the clock's, not the wall's."""
    moment = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    async with DurableAgent(counting_agent(Counter()), store, name="pipeline", clock=FakeClock(moment)) as durable:
        await durable.run("src", "doc")
        forked = await durable.fork("src", "stamped", from_step=2)
        journal = await durable.steps("stamped")
    assert forked.created_at == forked.updated_at == moment
    assert [record.recorded_at for record in journal[:2]] == [moment, moment]


async def test_fork_refuses_an_existing_id_a_missing_source_and_a_bad_step(store: Store) -> None:
    async with DurableAgent(counting_agent(Counter()), store, name="pipeline") as durable:
        await durable.run("src", "doc")
        with pytest.raises(JobConflictError):
            await durable.fork("src", "src", from_step=1)
        with pytest.raises(JobNotFound):
            await durable.fork("nope", "new", from_step=1)
        with pytest.raises(ValueError, match="from_step"):
            await durable.fork("src", "new", from_step=-1)
        assert await durable.status("new") is None


def test_durapod_fork_queues_the_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from durapod.cli import main

    db = tmp_path / "jobs.db"
    ran: Counter[str] = Counter()

    async def run_source() -> None:
        store = SQLiteStore(db)
        async with DurableAgent(counting_agent(ran), store, name="pipeline") as durable:
            await durable.run("src", "doc")
        await store.close()

    asyncio.run(run_source())
    assert main(["--store", f"sqlite:///{db}", "fork", "src", "copy", "--from-step", "2"]) == 0
    assert "forked job src as copy from step 2 (2 steps copied)" in capsys.readouterr().out

    async def steps() -> list[str]:
        async with Client(SQLiteStore(db)) as client:
            job = await client.status("copy")
            assert job is not None
            assert job.status is JobStatus.PENDING
            return [record.name for record in await client.steps("copy")]

    assert asyncio.run(steps()) == ["fetch", "parse"]
