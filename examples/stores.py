"""The same agent on every store: memory, an SQLite file and (if ``DURAPOD_REDIS_URL`` is set) Redis.

Stores are chosen by URL with ``open_store``: ``memory://`` (tests, throwaway work), ``sqlite:///path``
(the embedded default for anything that must survive a restart) and ``redis://host:port/0`` (a fleet of
workers on many machines). The agent's code does not change.

Run it with ``python examples/stores.py``; set ``DURAPOD_REDIS_URL=redis://localhost:6379/0`` to include
Redis.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from durapod import DurableAgent, JobContext, open_store


async def triage(ticket: str, ctx: JobContext) -> str:
    """Two journaled steps."""
    facts = await ctx.step("lookup", lambda: f"facts about {ticket}")
    return await ctx.step("draft", lambda: f"Dear customer, {facts}.")


async def run_on(url: str, label: str) -> None:
    """Run one job on the store ``url`` names and print what the store holds."""
    store = open_store(url)
    try:
        async with DurableAgent(triage, store) as durable:
            job = await durable.run("ticket-456", "Handle ticket #456")
            steps = await store.read_steps(job.id)
            print(f"{label:<8} {store!r}: job {job.id} {job.status}, {len(steps)} steps journaled -> {job.result!r}")
            await store.delete(job.id)  # leave a shared store (Redis) as we found it
    finally:
        await store.close()


async def main() -> None:
    """Run the agent on each store."""
    await run_on("memory://", "memory")
    with tempfile.TemporaryDirectory() as tmp:
        await run_on(f"sqlite:///{Path(tmp) / 'jobs.db'}", "sqlite")
    redis_url = os.environ.get("DURAPOD_REDIS_URL")
    if not redis_url:
        print("redis    skipped: set DURAPOD_REDIS_URL=redis://localhost:6379/0 to run it")
        return
    try:
        await run_on(redis_url, "redis")
    except ImportError as exc:
        print(f"redis    skipped: the Redis store is not available ({exc})")


if __name__ == "__main__":
    asyncio.run(main())
