"""Scheduled jobs: an agent that runs on a cron schedule (a digest of the day's tickets).

Each fire of a schedule creates the job ``<schedule name>:<UTC fire time>`` only if it is absent, so one
fire is one job however many workers run the scheduler. Here the schedule fires every 2 seconds (a
6-field cron, seconds first) so that the example finishes quickly; a nightly digest would use
``0 9 * * *``. When the installed durapod has no scheduler yet, the example says so and runs the job of
the next fire by hand, with the same id.

Run it with ``python examples/scheduled.py``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from durapod import DurableAgent, JobContext, MemoryStore

CRON = "*/2 * * * * *"  # every 2 seconds; a nightly digest: "0 9 * * *"
fired: asyncio.Queue[str] = asyncio.Queue()


async def digest(day: str, ctx: JobContext) -> str:
    """Collect the tickets and summarise them."""
    tickets = await ctx.step("collect", lambda: ["#456 refund", "#457 login", "#458 dark mode"])
    summary = await ctx.step("summarise", lambda: f"digest for {day}: {len(tickets)} tickets ({', '.join(tickets)})")
    fired.put_nowait(ctx.job_id)
    return summary


def input_for(fire: datetime) -> str:
    """The input of the run of one fire (``on_schedule``)."""
    return fire.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


async def main() -> None:
    """Let the schedule fire once, or run the next fire's job by hand."""
    durable = DurableAgent(digest, MemoryStore(), name="digest")
    scheduling: Any = durable  # typed loosely: this example also runs on versions without schedules
    async with durable:
        if hasattr(DurableAgent, "schedule"):
            await scheduling.schedule("every-2s", CRON, input_for)
            scheduling.start_scheduler()
            print(f"scheduler started: schedule 'every-2s' ({CRON!r}) creates a job at every fire")
            job_id = await asyncio.wait_for(fired.get(), timeout=10)
            job = await durable.wait(job_id)
            await scheduling.stop_scheduler()
            print(f"job {job.id}: {job.status} -> {job.result!r}")
            for state in await scheduling.schedules():
                print(f"schedule {state.name!r}: last job {state.last_job_id}, next fire {state.next_fire}")
        else:
            print("scheduling is coming in a later version of durapod: running the next fire's job by hand")
            now = datetime.now(UTC).replace(microsecond=0)
            fire = now.replace(second=now.second - now.second % 2)
            job = await durable.run(f"every-2s:{fire.strftime('%Y-%m-%dT%H:%M:%SZ')}", input_for(fire))
            print(f"job {job.id}: {job.status} -> {job.result!r}")


if __name__ == "__main__":
    asyncio.run(main())
