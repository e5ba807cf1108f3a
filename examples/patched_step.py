"""Changing an agent while jobs are in flight: ``ctx.patched`` keeps old jobs on their recorded path.

Version 1 of a triage agent looks a ticket up, drafts a reply and waits for a human. Version 2 adds a
spam check between the two. A job that version 1 left paused already journaled its draft at the position
where version 2 would check for spam: ``ctx.patched("spam-check")`` is False for it, so it replays on the
old path instead of failing with ``StepMismatch``. New jobs take the new path. ``DurableAgent(version=)``
records which version started each job.

Run it with ``python examples/patched_step.py``.
"""

from __future__ import annotations

import asyncio

from durapod import DurableAgent, JobContext, MemoryStore


def lookup(ticket: str) -> str:
    """Fetch the ticket's facts."""
    return f"facts of {ticket}"


def check_spam(facts: str) -> str:
    """The new step of version 2."""
    return f"{facts} (not spam)"


def draft(facts: str) -> str:
    """Draft a reply."""
    return f"reply on {facts}"


async def triage_v1(ticket: str, ctx: JobContext) -> str:
    """Version 1: look up, draft, wait for approval."""
    facts = await ctx.step("lookup", lookup, ticket)
    reply = await ctx.step("draft", draft, facts)
    answer = await ctx.interrupt(f"Send {reply!r}?")
    return f"{reply} [{answer}]"


async def triage_v2(ticket: str, ctx: JobContext) -> str:
    """Version 2: a spam check before the draft, for the jobs that reach it for the first time."""
    facts = await ctx.step("lookup", lookup, ticket)
    if ctx.patched("spam-check"):
        facts = await ctx.step("spam_check", check_spam, facts)
    reply = await ctx.step("draft", draft, facts)
    answer = await ctx.interrupt(f"Send {reply!r}?")
    return f"{reply} [{answer}]"


async def main() -> None:
    """Leave a job paused under version 1, deploy version 2, and resume it next to a new job."""
    store = MemoryStore()
    async with DurableAgent(triage_v1, store, name="triage", version="1") as v1:
        job = await v1.run("ticket-1", "ticket #1")
        print(f"v1 left ticket-1 {job.status}, waiting for: {job.waiting_for}")
    async with DurableAgent(triage_v2, store, name="triage", version="2") as v2:
        print(f"jobs started by version 1: {[job.id for job in await v2.list(version='1')]}")
        old = await v2.resume("ticket-1", "sent")
        new = await v2.run("ticket-2", "ticket #2")
        new = await v2.resume("ticket-2", "sent")
    print(f"old job on the old path: {old.status} -> {old.result!r}")
    print(f"new job on the new path: {new.status} -> {new.result!r}")
    for job_id in ("ticket-1", "ticket-2"):
        print(f"{job_id} journal: {[record.name for record in await store.read_steps(job_id)]}")


if __name__ == "__main__":
    asyncio.run(main())
