"""A research agent fans out to five child jobs of a search agent and combines their findings.

``ctx.start_child`` starts each child once (journaled: a crash or a resume never starts a second one) and
returns a handle; ``asyncio.gather`` awaits them all. The children run on any worker of their agent (here
a second agent serving the same store); each names its parent, and cancelling the parent would cancel
them. A child that fails raises ``ChildFailed`` in the parent.

Run it with ``python examples/research_fanout.py``.
"""

from __future__ import annotations

import asyncio

from durapod import DurableAgent, JobContext, MemoryStore

ANGLES = ["history", "economics", "technology", "regulation", "open questions"]


def search(query: str) -> str:
    """A search tool (a real agent would call an LLM or a search API here)."""
    return f"3 sources on {query}"


async def searcher(query: str, ctx: JobContext) -> str:
    """The child agent: one search, journaled."""
    return await ctx.step("search", search, query)


async def research(topic: str, ctx: JobContext) -> str:
    """The parent agent: one child job per angle, then a summary of what they found."""
    handles = [
        await ctx.start_child(f"{ctx.job_id}:{n}", f"{topic}: {angle}", agent="searcher")
        for n, angle in enumerate(ANGLES)
    ]
    findings = await asyncio.gather(*handles)
    return await ctx.step(
        "summarize", lambda: f"{topic} report from {len(findings)} searches: {'; '.join(map(str, findings))}"
    )


async def main() -> None:
    """Run a search worker and the research agent on one store."""
    store = MemoryStore()
    async with (
        DurableAgent(searcher, store, name="searcher", poll_interval=0.05) as search_worker,
        DurableAgent(research, store, name="research") as durable,
    ):
        serving = asyncio.create_task(search_worker.serve())
        job = await durable.run("report-1", "solid-state batteries")
        children = [child for child in await durable.list(agent="searcher") if child.parent_id == "report-1"]
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    print(f"report-1: {job.status} -> {job.result!r}")
    print(f"{len(children)} child jobs, all {sorted({str(child.status) for child in children})}, parent report-1")
    print(f"journal: {[record.name for record in await store.read_steps('report-1')]}")


if __name__ == "__main__":
    asyncio.run(main())
