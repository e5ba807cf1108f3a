"""A worker process for the crash and fleet tests.

    python tests/workers/crash_worker.py STORE_URL SIDE_DB WORKER_ID [--concurrency N] [--lease-ttl S]

Serves the ``crash`` agent: 5 steps per job; every execution of a step is recorded in a side table
(``SIDE_DB``, plain sqlite3, committed before the step returns) with the worker's pid and the job's
epoch, so the test can tell which steps ran more than once and whether a job ever had two live owners.
Prints ``ready`` once serving. Runs until SIGTERM (graceful) or SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys

from durapod import DurableAgent, JobContext, open_store

STEPS = 5


def side_connection(path: str) -> sqlite3.Connection:
    # steps run in worker threads (sync step functions do): one connection shared by them and the loop
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # One table for both kinds of row: its rowid orders what the processes did, across processes.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS executions (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, "
        "job_id TEXT, step INTEGER, pid INTEGER, worker TEXT, epoch INTEGER, attempt INTEGER)"
    )
    return conn


def expected_result(job_input: str) -> str:
    return "|".join(f"{job_input}.{index}" for index in range(STEPS))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("side")
    parser.add_argument("worker_id")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    parser.add_argument("--step-delay", type=float, default=0.002, help="seconds of work after each step")
    args = parser.parse_args()
    side = side_connection(args.side)
    pid = os.getpid()

    def record(kind: str, job_id: str, step: int, epoch: int, attempt: int) -> str:
        side.execute(
            "INSERT INTO executions (kind, job_id, step, pid, worker, epoch, attempt) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, job_id, step, pid, args.worker_id, epoch, attempt),
        )
        return str(step)

    async def crash(job_input: str, ctx: JobContext) -> str:
        parts = []
        for index in range(STEPS):
            await ctx.step(f"step-{index}", record, "ran", ctx.job_id, index, ctx.epoch, ctx.attempt)
            if not ctx.is_replaying:
                record("journaled", ctx.job_id, index, ctx.epoch, ctx.attempt)
            parts.append(f"{job_input}.{index}")
            await asyncio.sleep(args.step_delay)  # work between steps: gives kills a chance to land anywhere
        return "|".join(parts)

    durable = DurableAgent(
        crash,
        open_store(args.store),
        name="crash",
        worker_id=args.worker_id,
        max_concurrency=args.concurrency,
        lease_ttl=args.lease_ttl,
        poll_interval=0.05,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
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
