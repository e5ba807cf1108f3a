"""Pause a running job at a step boundary, resume it with new input, and answer an interrupt.

- ``await durable.pause(id)`` returns once the job is durably paused: the step in flight finishes and is
  journaled, and the agent stops before the next one.
- ``await durable.resume(id, new_input)`` calls the agent again: it replays its journal (recorded steps
  return their results without running) and sees ``new_input`` in ``ctx.inputs``.
- ``await ctx.interrupt(prompt)`` pauses the job until someone resumes it; the value given to ``resume``
  is what ``interrupt`` returns.

Run it with ``python examples/pause_resume.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from durapod import DurableAgent, JobContext, MemoryStore

runs: Counter[str] = Counter()  # how many times each step function really ran
gathering = asyncio.Event()


async def gather(topic: str) -> list[str]:
    """A slow step: long enough to be paused while it runs."""
    runs["gather"] += 1
    gathering.set()
    await asyncio.sleep(0.2)
    return [f"{topic}: revenue up 12%", f"{topic}: churn down 3%"]


async def analyze(facts: list[str]) -> str:
    """Another step."""
    runs["analyze"] += 1
    await asyncio.sleep(0.05)
    return f"{len(facts)} findings, all positive"


async def report_agent(topic: str, ctx: JobContext) -> str:
    """Gather, analyze, draft (using the newest resume input), ask a human, publish."""
    facts = await ctx.step("gather", gather, topic)
    analysis = await ctx.step("analyze", analyze, facts)
    guidance = ctx.inputs[0] if ctx.inputs else "no guidance"
    draft = await ctx.step("draft", lambda: f"Report on {topic} ({guidance}): {analysis}")
    answer = await ctx.interrupt(f"Publish this report? {draft!r}")
    if answer != "yes":
        return f"not published ({answer})"
    return await ctx.step("publish", lambda: f"published: {draft}")


async def main() -> None:
    """Pause mid-run, resume with new input, then answer the interrupt."""
    store = MemoryStore()
    async with DurableAgent(report_agent, store) as durable:
        await durable.start("report-q3", "Q3")
        await gathering.wait()  # the first step is running
        job = await durable.pause("report-q3")
        print(f"1. paused at a step boundary: {job.status}, {job.steps} step(s) journaled")

        job = await durable.resume("report-q3", "focus on EMEA")
        print(f"2. resumed with new input: {job.status}, waiting for: {job.waiting_for}")

        job = await durable.resume("report-q3", "yes")  # the answer to ctx.interrupt
        print(f"3. interrupt answered: {job.status} -> {job.result!r}")
        print(f"   each step ran once: {dict(runs)}; inputs given on resume: {job.inputs}")


if __name__ == "__main__":
    asyncio.run(main())
