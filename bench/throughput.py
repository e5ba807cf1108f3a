"""Throughput: N jobs of 3 steps each at concurrency C, on durapod and on a baseline, in one run.

Each step returns a short string at once; on durapod every step's result is committed to the store before
the agent continues. The baseline runs the same agent as bare asyncio functions (memory store), or writes
the same rows with plain sqlite3 / redis-py (see ``--store``). Prints one JSON object.

    python bench/throughput.py --jobs 5000 --concurrency 50 --store memory
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from durapod import DurableAgent, JobContext, JobStatus, MemoryStore, Store

STEPS = 3


def quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))


def step_result(index: int) -> str:
    return f"result-{index}"


async def agent(job_input: str, ctx: JobContext) -> str:
    last = ""
    for index in range(STEPS):
        last = await ctx.step(f"step-{index}", step_result, index)
    return f"{job_input}:{last}"


async def bare_agent(job_input: str) -> str:
    last = ""
    for index in range(STEPS):
        last = step_result(index)
        await asyncio.sleep(0)  # where durapod awaits its commit, the baseline yields once
    return f"{job_input}:{last}"


async def run_pool(jobs: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """Run ``one(i)`` for i in range(jobs) with ``concurrency`` in flight; returns elapsed seconds."""
    counter = iter(range(jobs))

    async def worker() -> None:
        for index in counter:
            await one(index)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return time.perf_counter() - started


async def bench_durapod(store: Store, jobs: int, concurrency: int) -> dict[str, Any]:
    async with DurableAgent(agent, store, name="bench") as durable:

        async def one(index: int) -> None:
            job = await durable.run(f"job-{index}", f"input-{index}")
            if job.status is not JobStatus.COMPLETED:
                raise RuntimeError(f"job-{index} ended {job.status}: {job.error}")

        elapsed = await run_pool(jobs, concurrency, one)
    return {"jobs": jobs, "seconds": round(elapsed, 4), "jobs_per_second": round(jobs / elapsed, 1)}


async def bench_bare(jobs: int, concurrency: int) -> dict[str, Any]:
    results: dict[str, str] = {}

    async def one(index: int) -> None:
        results[f"job-{index}"] = await bare_agent(f"input-{index}")

    elapsed = await run_pool(jobs, concurrency, one)
    return {"jobs": jobs, "seconds": round(elapsed, 4), "jobs_per_second": round(jobs / elapsed, 1)}


async def actor_memory(count: int) -> dict[str, Any]:
    """Bytes per live job actor: ``count`` jobs parked in their agent, measured with tracemalloc."""
    release = asyncio.Event()

    async def parked(job_input: str, ctx: JobContext) -> str:
        await release.wait()
        return job_input

    async with DurableAgent(parked, MemoryStore(), name="parked") as durable:
        await durable.start("warm-up", "x")
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for index in range(count):
            await durable.start(f"parked-{index}", "x")
        for _ in range(5):
            await asyncio.sleep(0)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        release.set()
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {"actors": count, "bytes_per_actor_including_job_record": round(total / count)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--store", choices=["memory"], default="memory")
    parser.add_argument("--memory-actors", type=int, default=2000, help="live actors for the memory figure")
    args = parser.parse_args()
    quiet_logs()
    baseline = await bench_bare(args.jobs, args.concurrency)
    durapod = await bench_durapod(MemoryStore(), args.jobs, args.concurrency)
    report = {
        "benchmark": "throughput",
        "store": args.store,
        "steps_per_job": STEPS,
        "concurrency": args.concurrency,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "baseline": {"name": "bare asyncio functions", **baseline},
        "durapod": durapod,
        "ratio_durapod_to_baseline": round(durapod["jobs_per_second"] / baseline["jobs_per_second"], 4),
        "memory": await actor_memory(args.memory_actors),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
