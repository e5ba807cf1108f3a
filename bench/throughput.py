"""Throughput: N jobs of 3 steps each at concurrency C, on durapod and on a baseline, in one run.

Each step returns a short string at once; on durapod every step's result is committed to the store before
the agent continues. The baseline runs the same agent as bare asyncio functions (memory store), or writes
the same rows with plain sqlite3 / redis-py (see ``--store``). Prints one JSON object.

    python bench/throughput.py --jobs 5000 --concurrency 50 --store memory|sqlite|redis
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

from durapod import DurableAgent, JobContext, JobStatus, MemoryStore, Store

STEPS = 3


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


def sqlite_baseline(path: str, jobs: int, concurrency: int, group: bool) -> dict[str, Any]:
    """The same rows durapod writes (job, running, 3 steps, completed), with plain sqlite3.

    ``group=False``: one transaction per write. ``group=True``: the writes of ``concurrency`` jobs that
    are in flight together share one transaction per round (what group commit does).
    """
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT, record TEXT)")
    conn.execute("CREATE TABLE steps (job_id TEXT, idx INTEGER, record TEXT, PRIMARY KEY (job_id, idx))")

    def writes(index: int) -> list[tuple[str, tuple[Any, ...]]]:
        job_id = f"job-{index}"
        record = json.dumps({"id": job_id, "input": f"input-{index}"})
        out: list[tuple[str, tuple[Any, ...]]] = [("INSERT INTO jobs VALUES (?, 'pending', ?)", (job_id, record))]
        out.append(("UPDATE jobs SET status='running', record=? WHERE id=?", (record, job_id)))
        for step in range(STEPS):
            out.append(("INSERT INTO steps VALUES (?, ?, ?)", (job_id, step, json.dumps(step_result(step)))))
        out.append(("UPDATE jobs SET status='completed', record=? WHERE id=?", (record, job_id)))
        return out

    started = time.perf_counter()
    if group:
        for first in range(0, jobs, concurrency):
            batches = [writes(index) for index in range(first, min(first + concurrency, jobs))]
            for position in range(len(batches[0])):
                conn.execute("BEGIN")
                for batch in batches:
                    conn.execute(*batch[position])
                conn.execute("COMMIT")
    else:
        for index in range(jobs):
            for sql, args in writes(index):
                conn.execute("BEGIN")
                conn.execute(sql, args)
                conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return {"jobs": jobs, "seconds": round(elapsed, 4), "jobs_per_second": round(jobs / elapsed, 1)}


async def redis_baseline(url: str, jobs: int, concurrency: int, pipelined: bool) -> dict[str, Any]:
    """The same writes with plain redis-py: one round trip per write, or pipelined across jobs."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    await client.flushdb()

    def commands(index: int) -> list[tuple[str, ...]]:
        job_id = f"job-{index}"
        record = json.dumps({"id": job_id, "input": f"input-{index}"})
        out: list[tuple[str, ...]] = [("HSET", f"base:job:{{{job_id}}}", "record", record, "status", "pending")]
        out.append(("HSET", f"base:job:{{{job_id}}}", "status", "running"))
        for step in range(STEPS):
            out.append(("RPUSH", f"base:steps:{{{job_id}}}", json.dumps(step_result(step))))
        out.append(("HSET", f"base:job:{{{job_id}}}", "status", "completed"))
        return out

    started = time.perf_counter()
    if pipelined:
        for first in range(0, jobs, concurrency):
            batches = [commands(index) for index in range(first, min(first + concurrency, jobs))]
            for position in range(len(batches[0])):
                pipe = client.pipeline(transaction=False)
                for batch in batches:
                    pipe.execute_command(*batch[position])
                await pipe.execute()
    else:

        async def one(index: int) -> None:
            for command in commands(index):
                await client.execute_command(*command)  # type: ignore[no-untyped-call]

        await run_pool(jobs, concurrency, one)
    elapsed = time.perf_counter() - started
    await client.aclose()
    return {"jobs": jobs, "seconds": round(elapsed, 4), "jobs_per_second": round(jobs / elapsed, 1)}


class RedisServer:
    """A private redis-server on a free port for the benchmark (no persistence)."""

    def __init__(self) -> None:
        import socket
        import subprocess

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def ready(self) -> None:
        from redis.asyncio import Redis

        client = Redis.from_url(self.url)
        for _ in range(200):
            try:
                await client.ping()
                break
            except Exception:
                await asyncio.sleep(0.05)
        await client.aclose()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def ratio(durapod: dict[str, Any], baseline: dict[str, Any]) -> float:
    return round(float(durapod["jobs_per_second"]) / float(baseline["jobs_per_second"]), 4)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--store", choices=["memory", "sqlite", "redis"], default="memory")
    parser.add_argument("--memory-actors", type=int, default=2000, help="live actors for the memory figure")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "throughput",
        "store": args.store,
        "steps_per_job": STEPS,
        "concurrency": args.concurrency,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    if args.store == "memory":
        baseline = await bench_bare(args.jobs, args.concurrency)
        result = await bench_durapod(MemoryStore(), args.jobs, args.concurrency)
        report["baselines"] = {"bare asyncio functions": baseline}
        report["durapod"] = result
        report["ratio_durapod_to_baseline"] = {"bare asyncio functions": ratio(result, baseline)}
        report["memory"] = await actor_memory(args.memory_actors)
    elif args.store == "sqlite":
        import tempfile

        from durapod.stores.sqlite import SQLiteStore

        with tempfile.TemporaryDirectory() as folder:
            per_write = sqlite_baseline(f"{folder}/a.db", args.jobs, args.concurrency, group=False)
            grouped = sqlite_baseline(f"{folder}/b.db", args.jobs, args.concurrency, group=True)
            store = SQLiteStore(f"{folder}/durapod.db")
            result = await bench_durapod(store, args.jobs, args.concurrency)
            await store.close()
        report["baselines"] = {"sqlite3, one transaction per write": per_write, "sqlite3, grouped": grouped}
        report["durapod"] = result
        report["ratio_durapod_to_baseline"] = {
            "sqlite3, one transaction per write": ratio(result, per_write),
            "sqlite3, grouped": ratio(result, grouped),
        }
    else:
        import importlib

        server = RedisServer()
        try:
            await server.ready()
            single = await redis_baseline(server.url, args.jobs, args.concurrency, pipelined=False)
            piped = await redis_baseline(server.url, args.jobs, args.concurrency, pipelined=True)
            redis_module = importlib.import_module("durapod.stores.redis")
            store = redis_module.RedisStore.from_url(server.url)
            result = await bench_durapod(store, args.jobs, args.concurrency)
            await store.close()
        finally:
            server.stop()
        report["baselines"] = {"redis-py, one round trip per write": single, "redis-py, pipelined": piped}
        report["durapod"] = result
        report["ratio_durapod_to_baseline"] = {
            "redis-py, one round trip per write": ratio(result, single),
            "redis-py, pipelined": ratio(result, piped),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
