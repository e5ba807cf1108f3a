"""Child jobs: ``ctx.start_child`` / ``ctx.run_child`` start a job once, fan out and in, fail and cancel."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import BaseModel

from durapod import (
    ChildFailed,
    ChildHandle,
    Client,
    DurableAgent,
    Job,
    JobConflictError,
    JobContext,
    JobStatus,
    MemoryStore,
    NonRetryableError,
    SQLiteStore,
    Store,
)

WAIT = 30.0


@asynccontextmanager
async def serving(durable: DurableAgent) -> AsyncIterator[DurableAgent]:
    """``durable`` running and serving queued jobs (its children) until the block ends."""
    async with durable:
        task = asyncio.create_task(durable.serve())
        try:
            yield durable
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_parent_fans_out_to_five_children_of_another_agent_and_combines_them(store: Store) -> None:
    ran: Counter[str] = Counter()

    async def search(query: str, ctx: JobContext) -> str:
        ran[ctx.job_id] += 1
        return f"found {query}"

    async def research(topic: str, ctx: JobContext) -> str:
        handles = [await ctx.start_child(f"{ctx.job_id}:{n}", f"{topic} {n}", agent="search") for n in range(5)]
        assert all(isinstance(handle, ChildHandle) for handle in handles)
        found = await asyncio.gather(*handles)
        return "; ".join(str(item) for item in found)

    async with (
        serving(DurableAgent(search, store, name="search", poll_interval=0.05)),
        DurableAgent(research, store, name="research") as parent,
    ):
        done = await parent.run("r", "cats")
        children = [await parent.status(f"r:{n}") for n in range(5)]
        journal = await parent.steps("r")
    assert done.status is JobStatus.COMPLETED, done
    assert done.result == "; ".join(f"found cats {n}" for n in range(5))
    assert [child.parent_id for child in children if child is not None] == ["r"] * 5
    assert {child.agent for child in children if child is not None} == {"search"}
    assert [record.name for record in journal] == ["durapod.child"] * 5
    assert ran == Counter({f"r:{n}": 1 for n in range(5)})


async def test_run_child_of_the_same_agent_starts_it_at_once_and_returns_its_result(store: Store) -> None:
    async def countdown(n: int, ctx: JobContext) -> int:
        if n == 0:
            return 0
        below = await ctx.run_child(f"count-{n - 1}", n - 1)
        assert isinstance(below, int)
        return n + below

    async with DurableAgent(countdown, store, name="countdown") as durable:  # no serve(): children run here
        done = await durable.run("count-3", 3)
        leaf = await durable.status("count-0")
    assert done.result == 3 + 2 + 1 + 0
    assert leaf is not None
    assert leaf.parent_id == "count-1"
    assert leaf.status is JobStatus.COMPLETED


async def test_a_replayed_parent_never_starts_a_child_twice(store: Store) -> None:
    ran: Counter[str] = Counter()

    async def child(n: int, ctx: JobContext) -> int:
        ran[ctx.job_id] += 1
        return n * 10

    async def parent(text: str, ctx: JobContext) -> str:
        handles = [await ctx.start_child(f"p:{n}", n, agent="child") for n in range(3)]
        first = await handles[0]
        answer = await ctx.interrupt("continue?")  # paused here: the resume replays the three starts
        rest = await asyncio.gather(*handles[1:])
        return f"{first}:{answer}:{rest}"

    async with (
        serving(DurableAgent(child, store, name="child", poll_interval=0.05)),
        DurableAgent(parent, store, name="parent") as durable,
    ):
        paused = await durable.run("p", "x")
        assert paused.status is JobStatus.PAUSED
        done = await durable.resume("p", "yes")
        journal = await durable.steps("p")
    assert done.result == "0:yes:[10, 20]"
    assert [record.name for record in journal] == ["durapod.child"] * 3
    assert ran == Counter({"p:0": 1, "p:1": 1, "p:2": 1})


async def test_a_failed_child_raises_child_failed_in_the_parent(store: Store) -> None:
    async def agent(text: str, ctx: JobContext) -> str:
        if ctx.job_id.endswith(":child"):
            raise NonRetryableError("no such page")
        try:
            await ctx.run_child(f"{ctx.job_id}:child", text)
        except ChildFailed as failure:
            return f"{failure.job_id} {failure.child_id} {failure.status} {failure.error_type}: {failure.error}"
        return "ok"

    async with DurableAgent(agent, store, name="family") as durable:
        done = await durable.run("f", "x")
        child = await durable.status("f:child")
    assert done.result == "f f:child failed NonRetryableError: no such page"
    assert child is not None
    assert child.status is JobStatus.FAILED


async def test_cancelling_a_parent_cancels_its_unfinished_children(store: Store) -> None:
    started = asyncio.Event()
    forever = asyncio.Event()

    async def child(text: str, ctx: JobContext) -> str:
        if text == "quick":
            return "done"
        if text == "ask":
            return str(await ctx.interrupt("waiting"))
        started.set()
        await forever.wait()
        return "never"

    async def parent(text: str, ctx: JobContext) -> str:
        await ctx.run_child("c:quick", "quick", agent="kid")
        paused = await ctx.start_child("c:ask", "ask", agent="kid")
        running = await ctx.start_child("c:run", "run", agent="kid")
        return str(await asyncio.gather(paused, running))

    async with (
        serving(DurableAgent(child, store, name="kid", poll_interval=0.05)) as kid,
        DurableAgent(parent, store, name="parent") as durable,
    ):
        await durable.start("c", "x")
        await asyncio.wait_for(started.wait(), WAIT)
        assert (await kid.wait("c:ask", timeout=WAIT)).status is JobStatus.PAUSED
        cancelled = await durable.cancel("c")
        assert cancelled.status is JobStatus.CANCELLED
        statuses = {job_id: (await kid.wait(job_id, timeout=WAIT)).status for job_id in ("c:quick", "c:ask", "c:run")}
    assert statuses == {
        "c:quick": JobStatus.COMPLETED,  # finished before: left alone
        "c:ask": JobStatus.CANCELLED,
        "c:run": JobStatus.CANCELLED,
    }


async def test_a_child_id_that_belongs_to_another_job_is_a_conflict() -> None:
    store = MemoryStore()

    async def agent(text: str, ctx: JobContext) -> str:
        if text == "parent":
            try:
                await ctx.run_child("taken", "other input")
            except JobConflictError as conflict:
                return f"conflict: {conflict.job_id}"
        return text

    async with DurableAgent(agent, store) as durable:
        await durable.run("taken", "mine")
        done = await durable.run("p", "parent")
    assert done.result == "conflict: taken"


@pytest.mark.parametrize("bad", ["", "has space"])
async def test_a_bad_child_id_fails_the_parent_with_a_typed_error(bad: str) -> None:
    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.run_child(bad, text)
        return text

    async with DurableAgent(agent, MemoryStore(), max_retries=0) as durable:
        done = await durable.run("p", "x")
    assert done.status is JobStatus.FAILED
    assert done.error_type == "InvalidJobId"


# -- a real worker process, SIGKILLed mid-way through a fan-out -------------------------------------

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "workers" / "primitives_worker.py"


def ran(directory: Path) -> list[tuple[str, str, int]]:
    path = directory / "ran.log"
    if not path.exists():
        return []
    return [(job, step, int(pid)) for job, step, pid in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.slow
def test_a_parent_killed_mid_fan_out_is_continued_by_another_worker_with_exactly_five_children(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"

    async def submit() -> None:
        async with Client(SQLiteStore(db)) as client:
            await client.submit("fan", "x", agent="fanout")

    asyncio.run(submit())
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), f"sqlite:///{db}", str(tmp_path), "--lease-ttl", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + WAIT
        while ("fan", "gate") not in {(job, step) for job, step, _ in ran(tmp_path)}:
            assert time.monotonic() < deadline, "the parent never reached its gate"
            time.sleep(0.01)  # another process does the work: poll its traces
        worker.send_signal(signal.SIGKILL)
        worker.wait(WAIT)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=WAIT)
    (tmp_path / "release").touch()

    async def take_over() -> tuple[Job, list[Job]]:
        sys.path.insert(0, str(ROOT))
        from tests.workers.primitives_worker import fanout_agents

        fanout, leaf = fanout_agents(tmp_path)
        store = SQLiteStore(db)
        async with (
            serving(DurableAgent(leaf, store, name="leaf", lease_ttl=0.5, poll_interval=0.05)),
            DurableAgent(fanout, store, name="fanout", lease_ttl=0.5) as parent,
        ):
            done = await parent.wait("fan", timeout=WAIT)
            children = await parent.list(agent="*")
        await store.close()
        return done, [job for job in children if job.parent_id is not None]

    done, children = asyncio.run(take_over())
    assert done.status is JobStatus.COMPLETED, done
    assert done.result == [f"x{n}x{n}" for n in range(5)]
    assert sorted(child.id for child in children) == [f"fan:{n}" for n in range(5)]
    leaves = Counter(job for job, step, _ in ran(tmp_path) if step == "leaf")
    assert leaves == Counter({f"fan:{n}": 1 for n in range(5)})  # each child ran once


def test_show_names_a_jobs_parent_and_lists_its_children(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from durapod.cli import main

    db = tmp_path / "jobs.db"

    async def parent(text: str, ctx: JobContext) -> str:
        if ctx.job_id != "top":
            return text
        return str(await asyncio.gather(*[await ctx.start_child(f"top-{n}", n) for n in range(2)]))

    async def run() -> None:
        store = SQLiteStore(db)
        async with DurableAgent(parent, store, name="tree") as durable:
            assert (await durable.run("top", "x")).status is JobStatus.COMPLETED
        await store.close()

    asyncio.run(run())
    assert main(["--store", f"sqlite:///{db}", "show", "top"]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"^children\s+top-0, top-1$", shown, flags=re.MULTILINE), shown
    assert main(["--store", f"sqlite:///{db}", "show", "top-1"]) == 0
    assert re.search(r"^parent\s+top$", capsys.readouterr().out, flags=re.MULTILINE)
    assert main(["--store", f"sqlite:///{db}", "show", "top", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["children"] == ["top-0", "top-1"]


class Order(BaseModel):
    sku: str
    quantity: int


class Receipt(BaseModel):
    sku: str
    total: int


async def test_a_child_of_the_parents_own_typed_agent_takes_its_model_and_returns_a_typed_result(
    store: Store,
) -> None:
    async def checkout(order: Order, ctx: JobContext) -> Receipt:
        if order.quantity > 1:  # split into single items, each its own child job
            parts = [
                await ctx.start_child(f"{ctx.job_id}:{n}", Order(sku=order.sku, quantity=1))
                for n in range(order.quantity)
            ]
            receipts = await asyncio.gather(*parts)
            assert all(isinstance(receipt, Receipt) for receipt in receipts)
            return Receipt(sku=order.sku, total=sum(receipt.total for receipt in receipts))
        return Receipt(sku=order.sku, total=5)

    async with DurableAgent(checkout, store, name="checkout") as durable:
        done = await durable.run("o", Order(sku="pen", quantity=3))
        child = await store.get("o:1")
    receipt: object = done.result
    assert receipt == Receipt(sku="pen", total=15)
    assert child is not None
    assert child.input == {"sku": "pen", "quantity": 1}  # the store holds JSON


async def test_a_parent_waiting_for_children_of_its_own_agent_frees_its_concurrency_slot(store: Store) -> None:
    async def tree(depth: int, ctx: JobContext) -> int:
        if depth == 0:
            return 1
        left, right = await asyncio.gather(*[await ctx.start_child(f"{ctx.job_id}.{side}", depth - 1) for side in "lr"])
        return int(left) + int(right)

    async with DurableAgent(tree, store, name="tree", max_concurrency=1) as durable:
        done = await asyncio.wait_for(durable.run("t", 2), WAIT)  # one slot, seven jobs: no deadlock
    assert done.result == 4


async def test_a_parent_takes_its_slot_back_only_once_it_waits_for_no_child(store: Store) -> None:
    """One slot. The parent waits for a leaf and for a middle child that waits for a leaf of its own. The
    first leaf ends while the middle child runs; had the parent taken its slot back then (it still waits
    for the middle child), the middle child's leaf would never get the slot: a deadlock."""

    async def family(role: str, ctx: JobContext) -> str:
        if role == "parent":
            leaf = await ctx.start_child(f"{ctx.job_id}.a", "leaf")
            middle = await ctx.start_child(f"{ctx.job_id}.b", "middle")
            first, second = await asyncio.gather(leaf, middle)
            return f"{first}+{second}"
        if role == "middle":
            return f"m({await (await ctx.start_child(f'{ctx.job_id}.c', 'leaf'))})"
        return "leaf"

    async with DurableAgent(family, store, name="family", max_concurrency=1) as durable:
        done = await asyncio.wait_for(durable.run("p", "parent"), WAIT)
    assert done.result == "leaf+m(leaf)"
