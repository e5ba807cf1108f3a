"""A day-long approval: ask, sleep a day durably, remind if nobody answered, then wait for the answer.

``ctx.sleep`` journals the wake time: the sleeping job holds no task and no actor, survives a restart of
its worker (the next worker wakes it on time, without starting the sleep over), and can be paused or
cancelled. Here the worker is even stopped mid-sleep and another one finishes the job. The reminder
delay is the job's input: a day in production, one second in this demo.

Run it with ``python examples/approval_with_reminder.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from durapod import DurableAgent, Job, JobContext, JobStatus, JobStatusEvent, SQLiteStore

ONE_DAY = timedelta(days=1).total_seconds()
inbox: dict[str, str] = {}  # answers that arrived by mail (nobody answers in this demo)
sent: list[str] = []


def send(kind: str, request: str) -> str:
    """A mail to the approver (a tool call with side effects: journaled, so it is sent once)."""
    sent.append(f"{kind}: {request}")
    return f"{kind} sent"


def answered(request: str) -> bool:
    """Did the approver answer by mail?"""
    return request in inbox


async def approval(order: dict[str, Any], ctx: JobContext) -> str:
    """Ask for an approval; remind the approver after ``remind_after`` seconds; wait for the answer."""
    request = str(order["request"])
    await ctx.step("ask", send, "request", request)
    await ctx.sleep(float(order.get("remind_after", ONE_DAY)))
    if not await ctx.step("check", answered, request):
        await ctx.step("remind", send, "reminder", request)
    answer = await ctx.interrupt(f"Approve {request}?")
    return f"{request}: {answer}"


async def asleep(durable: DurableAgent, job_id: str) -> Job:
    """The job once it sleeps: its events tell (a ``job_status`` event with a wake time)."""
    async with contextlib.aclosing(durable.stream(job_id)) as events:
        async for event in events:
            if isinstance(event, JobStatusEvent) and event.job.sleeping_until is not None:
                return event.job
    raise RuntimeError(f"{job_id} settled without sleeping")


async def main() -> None:
    """Start an approval, stop the worker while the job sleeps, and let another worker finish it."""
    with tempfile.TemporaryDirectory() as directory:
        store = SQLiteStore(Path(directory) / "approvals.db")
        order: dict[str, JsonValue] = {"request": "purchase order #7 (1,250 EUR)", "remind_after": 1.0}
        async with DurableAgent(approval, store, name="approval") as first:
            await first.start("po-7", order)
            job = await asleep(first, "po-7")
            print(f"1. asked, now {job.status}, sleeping until {job.sleeping_until:%H:%M:%S} (no task held)")
        print("2. worker stopped mid-sleep")
        async with DurableAgent(approval, store, name="approval") as second:
            job = await second.wait("po-7")  # the second worker wakes it at the journaled time
            print(f"3. woke up and reminded: {job.status}, waiting for: {job.waiting_for}")
            job = await second.resume("po-7", "approved")
        steps = [record.name for record in await store.read_steps("po-7")]
        await store.close()
    assert job.status is JobStatus.COMPLETED
    print(f"4. {job.status} -> {job.result!r}")
    print(f"mails sent: {sent}")
    print(f"journal: {steps}")


if __name__ == "__main__":
    asyncio.run(main())
