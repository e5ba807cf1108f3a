"""Latency: one job at a time on SQLite, and pause and cancel in-process on MemoryStore.

(a) ``durable.run()`` of one 3-step job at a time (concurrency 1) on a SQLiteStore in a temporary file,
one job after another: p50, p99 and mean in ms. The baseline, in the same run, writes the same 5 rows per
job (insert the job running, 3 steps, mark it completed) with plain sqlite3 through a writer thread, each
write handed to the thread and awaited; with nothing else in flight that is one transaction per write.
The two take turns, in 10 rounds, each round after a warm-up of its own kind, so that a machine whose
speed drifts during the run weighs on both alike. The ratio is durapod's mean over the baseline's.

Each side's round lasts ``--round-seconds`` (0.5 s), not a number of jobs. On a virtual machine, two
threads that wake each other up run fast for the first 50 to 100 ms after the process was idle, then at
about half that speed for as long as they go on (the baseline alone: about 0.2 ms per job for its first
250 jobs, then 0.5 to 0.7 ms; durapod: 0.6 ms for its first 50 to 100, then 1.0 ms). Rounds of 50 jobs
each measured all of the baseline's round (15 ms) inside that fast start and most of durapod's (60 ms)
past it. Rounds of equal time, ten times as long, measure both sides mostly as they run when busy.

(a') The same on one CPU (Linux): the process is pinned to one CPU for the run, so the loop thread and the
writer thread take turns on one core. Unpinned, every write's two thread wake-ups may cross cores, and
on a virtual machine what that costs depends on where the scheduler happens to put the threads (the
baseline alone, or durapod, can run at half the speed it shows after the other has run). Pinned, the
ratio is what each side costs in CPU.

(b) ``await durable.pause(id)`` and ``await durable.cancel(id)`` in the worker's own process on a
MemoryStore, ``--tries`` each, p50, p99 and max in ms. Pause: the agent loops on a quick step
(``await ctx.step("tick", ...)`` then ``await asyncio.sleep(0)``), so the pause lands at the next step
boundary; the clock starts once the job has ticked. Cancel: the agent is parked inside a step that never
finishes (it awaits an Event); the clock starts once the job is inside it. Each try is a new job.

durapod's logging is left as the library sets it up by default; anything it prints to stdout goes to
stderr, and stdout holds one JSON object.

    python bench/latency.py [--round-seconds 0.5] [--tries 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from throughput import SQLiteWriter, agent, json_output, sqlite_writes

from durapod import DurableAgent, JobContext, JobStatus, MemoryStore, SQLiteStore

WARM_UP = 20  # runs before the measured ones of each round, discarded
ROUNDS = 10  # (a): the baseline and durapod take turns this many times


def summary(samples: list[float]) -> dict[str, Any]:
    """p50, p99 (nearest rank), mean and max of ``samples`` (seconds), in ms."""
    ordered = sorted(samples)

    def rank(percent: float) -> float:
        return ordered[max(math.ceil(percent / 100 * len(ordered)) - 1, 0)]

    return {
        "samples": len(ordered),
        "p50_ms": round(rank(50) * 1000, 3),
        "p99_ms": round(rank(99) * 1000, 3),
        "mean_ms": round(sum(ordered) / len(ordered) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


async def timed(seconds: float, one: Callable[[int], Awaitable[None]], first: int) -> list[float]:
    """``one(i)`` for i = first, first + 1... one after another, for ``seconds`` (at least once): the
    seconds each took."""
    samples: list[float] = []
    ends = time.perf_counter() + seconds
    while not samples or time.perf_counter() < ends:
        started = time.perf_counter()
        await one(first + len(samples))
        samples.append(time.perf_counter() - started)
    return samples


async def warm_up(one: Callable[[int], Awaitable[None]], round_number: int) -> None:
    """``WARM_UP`` runs before the measured ones of a round, discarded (negative indexes of their own)."""
    for index in range(WARM_UP):
        await one(-1 - round_number * WARM_UP - index)


@contextlib.contextmanager
def one_cpu() -> Iterator[int]:
    """Pin this thread, and so the threads it starts meanwhile, to one of the CPUs it may use; restore its
    CPUs after. Yields the CPU."""
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


async def sqlite_run_latency(folder: str, round_seconds: float) -> dict[str, Any]:
    """The baseline and durapod take turns, ``ROUNDS`` rounds of ``round_seconds`` each: a machine that
    slows down or speeds up during the run weighs on both alike."""
    writer = SQLiteWriter(f"{folder}/baseline.db")
    store = SQLiteStore(f"{folder}/durapod.db")

    async def baseline_job(index: int) -> None:
        for sql, args in sqlite_writes(index):
            await writer.execute(sql, args)

    baseline_samples: list[float] = []
    durapod_samples: list[float] = []
    try:
        async with DurableAgent(agent, store, name="latency") as durable:

            async def durapod_job(index: int) -> None:
                job = await durable.run(f"job-{index}", f"input-{index}")
                if job.status is not JobStatus.COMPLETED:
                    raise RuntimeError(f"job-{index} ended {job.status}: {job.error}")

            gc.collect()
            for round_number in range(ROUNDS):
                # each side warms up before each of its rounds: measured after its own kind of load, not
                # after the other's
                await warm_up(baseline_job, round_number)
                baseline_samples += await timed(round_seconds, baseline_job, len(baseline_samples))
                await warm_up(durapod_job, round_number)
                durapod_samples += await timed(round_seconds, durapod_job, len(durapod_samples))
    finally:
        writer.close()
        await store.close()
    if writer.batches != (len(baseline_samples) + WARM_UP * ROUNDS) * len(sqlite_writes(0)):
        raise RuntimeError("the baseline grouped writes: it was meant to have one write in flight")
    baseline = summary(baseline_samples)
    result = summary(durapod_samples)
    return {
        "what": "run() of one 3-step job at a time on SQLiteStore (temp file), ms per job",
        "rounds": ROUNDS,
        "round_seconds": round_seconds,
        "baselines": {"sqlite3 through a writer thread, each write awaited": baseline},
        "durapod": result,
        "ratio_durapod_to_baseline": {
            "mean": round(result["mean_ms"] / baseline["mean_ms"], 3),
            "p50": round(result["p50_ms"] / baseline["p50_ms"], 3),
            "p99": round(result["p99_ms"] / baseline["p99_ms"], 3),
        },
    }


async def pause_latency(tries: int) -> dict[str, Any]:
    ticked = asyncio.Event()

    def tick() -> str:
        ticked.set()
        return "tick"

    async def ticking(job_input: str, ctx: JobContext) -> str:
        while True:
            await ctx.step("tick", tick)
            await asyncio.sleep(0)

    store = MemoryStore()
    try:
        async with DurableAgent(ticking, store, name="ticking") as durable:
            samples: list[float] = []
            for index in range(-WARM_UP, tries):
                job_id = f"pause-{index}"
                ticked.clear()
                await durable.start(job_id, "x")
                await ticked.wait()
                started = time.perf_counter()
                job = await durable.pause(job_id)
                elapsed = time.perf_counter() - started
                if job.status is not JobStatus.PAUSED:
                    raise RuntimeError(f"{job_id} ended {job.status}, expected paused")
                if index >= 0:
                    samples.append(elapsed)
    finally:
        await store.close()
    return summary(samples)


async def cancel_latency(tries: int) -> dict[str, Any]:
    entered = asyncio.Event()
    never = asyncio.Event()

    async def stuck() -> str:
        entered.set()
        await never.wait()
        return "never"

    async def parked(job_input: str, ctx: JobContext) -> str:
        return await ctx.step("park", stuck)

    store = MemoryStore()
    try:
        async with DurableAgent(parked, store, name="parked") as durable:
            samples: list[float] = []
            for index in range(-WARM_UP, tries):
                job_id = f"cancel-{index}"
                entered.clear()
                await durable.start(job_id, "x")
                await entered.wait()
                started = time.perf_counter()
                job = await durable.cancel(job_id)
                elapsed = time.perf_counter() - started
                if job.status is not JobStatus.CANCELLED:
                    raise RuntimeError(f"{job_id} ended {job.status}, expected cancelled")
                if index >= 0:
                    samples.append(elapsed)
    finally:
        await store.close()
    return summary(samples)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--round-seconds", type=float, default=0.5, help="how long each side runs jobs in each round of (a)"
    )
    parser.add_argument("--tries", type=int, default=1000, help="pauses and cancels for (b), each")
    parser.add_argument("--quick", action="store_true", help="smoke run: rounds of 0.02 s, 100 tries")
    args = parser.parse_args()
    if args.quick:
        args.round_seconds = min(args.round_seconds, 0.02)
        args.tries = min(args.tries, 100)
    output = json_output()
    report: dict[str, Any] = {
        "benchmark": "latency",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "warm_up_runs": WARM_UP,
    }
    with tempfile.TemporaryDirectory() as folder:
        report["run_one_job_sqlite"] = await sqlite_run_latency(folder, args.round_seconds)
    if hasattr(os, "sched_setaffinity"):
        with tempfile.TemporaryDirectory() as folder, one_cpu() as cpu:
            pinned = await sqlite_run_latency(folder, args.round_seconds)
        pinned["what"] += f", the process pinned to CPU {cpu}"
        report["run_one_job_sqlite_one_cpu"] = pinned
    report["control_in_process_memory"] = {
        "what": "await durable.pause(id) / durable.cancel(id) in the worker's process on MemoryStore, ms",
        "pause": await pause_latency(args.tries),
        "cancel": await cancel_latency(args.tries),
    }
    output.write(json.dumps(report, indent=2) + "\n")
    output.flush()


if __name__ == "__main__":
    asyncio.run(main())
