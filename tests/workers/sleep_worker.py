"""A worker process for the durable-sleep crash test: serves the ``sleeper`` agent until killed.

    python sleep_worker.py STORE_URL DIRECTORY [--lease-ttl SECONDS]

``sleeper`` runs step ``before``, sleeps durably for the number of seconds its input gives, then runs step
``after``. Each step appends ``<job id> <step> <pid>`` to ``DIRECTORY/ran.log``. Prints ``ready`` once it
serves.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from durapod import DurableAgent, JobContext, open_store


def sleeper_agent(directory: Path) -> Callable[[float, JobContext], Awaitable[str]]:
    """The ``sleeper`` agent, logging the steps it runs to ``directory/ran.log``."""

    def ran(job_id: str, step: str) -> str:
        with open(directory / "ran.log", "a") as log:
            log.write(f"{job_id} {step} {os.getpid()}\n")
        return step

    async def sleeper(seconds: float, ctx: JobContext) -> str:
        before = await ctx.step("before", ran, ctx.job_id, "before")
        await ctx.sleep(seconds)
        after = await ctx.step("after", ran, ctx.job_id, "after")
        return f"{before}:{after}"

    return sleeper


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    args = parser.parse_args()
    durable = DurableAgent(
        sleeper_agent(args.directory),
        open_store(args.store),
        name="sleeper",
        lease_ttl=args.lease_ttl,
        poll_interval=0.05,
    )
    async with durable:
        print("ready", flush=True)
        await durable.serve()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
