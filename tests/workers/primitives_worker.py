"""A worker process for the durable-primitives crash tests: serves two agents until killed.

    python primitives_worker.py STORE_URL DIRECTORY [--lease-ttl SECONDS]

- ``sleeper`` runs step ``before``, sleeps durably for the number of seconds its input gives, then runs
  step ``after``.
- ``fanout`` starts children 0..2 of agent ``leaf``, awaits them, runs step ``gate`` (which waits until
  ``DIRECTORY/release`` exists), then starts children 3 and 4 and returns every child's result.
- ``leaf`` returns its input doubled.

Every step and every leaf appends ``<job id> <step> <pid>`` to ``DIRECTORY/ran.log``. Prints ``ready``
once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from durapod import DurableAgent, JobContext, open_store


def _ran(directory: Path, job_id: str, step: str) -> str:
    with open(directory / "ran.log", "a") as log:
        log.write(f"{job_id} {step} {os.getpid()}\n")
    return step


def sleeper_agent(directory: Path) -> Callable[[float, JobContext], Awaitable[str]]:
    """The ``sleeper`` agent, logging the steps it runs to ``directory/ran.log``."""

    def ran(job_id: str, step: str) -> str:
        return _ran(directory, job_id, step)

    async def sleeper(seconds: float, ctx: JobContext) -> str:
        before = await ctx.step("before", ran, ctx.job_id, "before")
        await ctx.sleep(seconds)
        after = await ctx.step("after", ran, ctx.job_id, "after")
        return f"{before}:{after}"

    return sleeper


def fanout_agents(
    directory: Path,
) -> tuple[Callable[[str, JobContext], Awaitable[list[str]]], Callable[[str, JobContext], Awaitable[str]]]:
    """The ``fanout`` and ``leaf`` agents."""

    async def gate(job_id: str) -> str:
        _ran(directory, job_id, "gate")
        while not (directory / "release").exists():  # noqa: ASYNC110 - another process makes the file
            await asyncio.sleep(0.01)
        return "open"

    async def fanout(topic: str, ctx: JobContext) -> list[str]:
        first = [await ctx.start_child(f"{ctx.job_id}:{n}", f"{topic}{n}", agent="leaf") for n in range(3)]
        results = [str(result) for result in await asyncio.gather(*first)]
        await ctx.step("gate", gate, ctx.job_id)
        rest = [await ctx.start_child(f"{ctx.job_id}:{n}", f"{topic}{n}", agent="leaf") for n in range(3, 5)]
        return results + [str(result) for result in await asyncio.gather(*rest)]

    async def leaf(text: str, ctx: JobContext) -> str:
        _ran(directory, ctx.job_id, "leaf")
        return text * 2

    return fanout, leaf


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    args = parser.parse_args()
    store = open_store(args.store)
    fanout, leaf = fanout_agents(args.directory)
    agents = {"sleeper": sleeper_agent(args.directory), "fanout": fanout, "leaf": leaf}
    workers = [
        DurableAgent(agent, store, name=name, lease_ttl=args.lease_ttl, poll_interval=0.05)
        for name, agent in agents.items()
    ]
    async with workers[0], workers[1], workers[2], asyncio.TaskGroup() as group:
        for worker in workers:
            group.create_task(worker.serve())
        print("ready", flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
