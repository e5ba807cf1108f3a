"""The worker process of bench/control_latency.py: runs the ``latency`` agent until SIGTERM.

    python bench/latency_worker.py STORE_URL

The agent journals a short step every few milliseconds, forever, so that a pause lands at a step
boundary within one step and a cancel interrupts it at once. Prints ``ready`` once serving.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from durapod import DurableAgent, JobContext, open_store


async def busy(step: int) -> int:
    await asyncio.sleep(0.002)
    return step


async def latency(job_input: str, ctx: JobContext) -> str:
    for step in range(100_000):
        await ctx.step(f"step-{step}", busy, step)
    return "done"


async def main() -> None:
    durable = DurableAgent(latency, open_store(sys.argv[1]), name="latency", lease_ttl=5.0, poll_interval=0.01)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with durable:
        serving = asyncio.create_task(durable.serve())
        print("ready", flush=True)
        await stop.wait()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    await durable.store.close()


if __name__ == "__main__":
    asyncio.run(main())
