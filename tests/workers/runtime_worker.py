"""A worker process for the runtime tests: serves one agent until SIGTERM, then drains and exits.

    python runtime_worker.py STORE_URL DIRECTORY AGENT [--worker-id ID] [--lease-ttl SECONDS]

Agents:

- ``gather``: steps ``a`` and ``b`` started together (``asyncio.gather``), then step ``c``; ``b`` waits until
  the file ``DIRECTORY/release`` exists.
- ``slow``: step ``slow`` waits until ``DIRECTORY/release`` exists and the worker drains (SIGTERM), then
  step ``after``.

Every step function appends ``<job id> <step> <pid>`` to ``DIRECTORY/ran.log`` when it starts, so the test
sees what ran where. The worker prints ``ready`` once it serves, ``stopped`` after draining.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from durapod import DurableAgent, JobContext, open_store


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("directory", type=Path)
    parser.add_argument("agent", choices=["gather", "slow"])
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    args = parser.parse_args()
    directory: Path = args.directory
    release = directory / "release"

    def ran(job_id: str, step: str) -> None:
        with open(directory / "ran.log", "a") as log:
            log.write(f"{job_id} {step} {os.getpid()}\n")

    async def quick(job_id: str, step: str) -> str:
        ran(job_id, step)
        return f"{step}-done"

    async def gated(job_id: str, step: str) -> str:
        ran(job_id, step)
        while not release.exists():  # noqa: ASYNC110 - another process makes the file
            await asyncio.sleep(0.01)
        return f"{step}-done"

    async def gather(text: str, ctx: JobContext) -> str:
        a, b = await asyncio.gather(ctx.step("a", quick, ctx.job_id, "a"), ctx.step("b", gated, ctx.job_id, "b"))
        c = await ctx.step("c", quick, ctx.job_id, "c")
        return f"{text}:{a}:{b}:{c}"

    async def draining(job_id: str, step: str) -> str:
        """Like ``gated``, and returns only once the worker drains (SIGTERM): the step is in flight then."""
        await gated(job_id, step)
        while durable.is_running:  # noqa: ASYNC110 - the worker offers nothing to wait on
            await asyncio.sleep(0.01)
        return f"{step}-done"

    async def slow(text: str, ctx: JobContext) -> str:
        first = await ctx.step("slow", draining, ctx.job_id, "slow")
        second = await ctx.step("after", quick, ctx.job_id, "after")
        return f"{text}:{first}:{second}"

    durable = DurableAgent(
        gather if args.agent == "gather" else slow,
        open_store(args.store),
        name=args.agent,
        worker_id=args.worker_id,
        lease_ttl=args.lease_ttl,
        poll_interval=0.05,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with durable:
        serving = asyncio.create_task(durable.serve())
        print("ready", flush=True)
        await stop.wait()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    await durable.store.close()
    print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
