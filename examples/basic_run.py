"""The README example: a triage agent whose two steps are journaled in an SQLite file.

A plain ``async def agent(input, ctx)`` becomes durable: each ``ctx.step`` result is committed to the
store before the agent continues, so a crashed or restarted job resumes after its last recorded step.
Running a completed job's id again returns its stored result without running anything.

Run it with ``python examples/basic_run.py`` (offline; the database lives in a temporary directory).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from durapod import DurableAgent, JobContext, JobStatus, open_store

calls = {"lookup": 0, "draft": 0}


async def lookup_ticket(ticket: str) -> str:
    """A tool: what we know about the ticket."""
    calls["lookup"] += 1
    return f"facts about {ticket}"


async def llm_draft(facts: str) -> str:
    """Stands in for an LLM call."""
    calls["draft"] += 1
    return f"Dear customer, {facts}."


async def triage(ticket: str, ctx: JobContext) -> str:
    """The agent: a plain async function."""
    facts = await ctx.step("lookup", lookup_ticket, ticket)  # journaled: never re-run once recorded
    return await ctx.step("draft", llm_draft, facts)


async def main() -> None:
    """Run one job, run it again, and show its journal."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'jobs.db'}")  # or SQLiteStore(path)
        durable = DurableAgent(triage, store, max_retries=3, retry_delay=2.0, metadata={"team": "support"})
        try:
            async with durable:  # starts the supervision tree; stops it gracefully
                job = await durable.run("job_123", "Handle ticket #456")  # waits until the job settles
                assert job.status is JobStatus.COMPLETED
                print(f"job {job.id}: {job.status} after {job.attempts} attempt(s) -> {job.result!r}")

                again = await durable.run("job_123", "Handle ticket #456")
                print(
                    f"run again: {again.status}, same result, steps ran lookup={calls['lookup']} draft={calls['draft']}"
                )

                for step in await store.read_steps("job_123"):
                    print(f"  journal #{step.index} {step.name}: {step.result!r}")
                completed = await durable.list(status="completed")  # newest first; also limit=, metadata=
                print(f"completed jobs: {[j.id for j in completed]} (metadata {completed[0].metadata})")
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
