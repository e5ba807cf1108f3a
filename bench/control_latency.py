"""Control latency: pause and cancel asked by another process, until the job is durably stopped.

A worker process runs jobs of an agent that journals a 2 ms step after another; this process (a
``Client`` that runs nothing) pauses, then cancels, running jobs and measures, for each, the time from the
request to the job being paused (at its next step boundary) or cancelled, as stored. Prints JSON with the
median and max over ``--tries`` tries. On Redis and Postgres, the owner learns of a request through
pub/sub or NOTIFY; on SQLite its lease keeper polls the store every 100 ms. Postgres runs on the server at
``DURAPOD_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``), in a database the
script makes and drops.

    python bench/control_latency.py --store redis|postgres|sqlite --tries 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from throughput import PostgresDatabase, RedisServer

from durapod import Client, JobStatus, open_store

WORKER = Path(__file__).parent / "latency_worker.py"


async def until_running(client: Client, job_id: str) -> None:
    while True:
        job = await client.status(job_id)
        if job is not None and job.status is JobStatus.RUNNING and job.steps > 0:
            return
        await asyncio.sleep(0.002)


async def measure(url: str, tries: int) -> dict[str, Any]:
    pauses: list[float] = []
    cancels: list[float] = []
    async with Client(open_store(url), poll_interval=0.002) as client:
        for attempt in range(tries):
            for kind, samples in (("pause", pauses), ("cancel", cancels)):
                job_id = f"{kind}-{attempt}"
                await client.submit(job_id, "x", agent="latency")
                await until_running(client, job_id)
                started = time.perf_counter()
                job = await (client.pause(job_id) if kind == "pause" else client.cancel(job_id))
                samples.append(time.perf_counter() - started)
                expected = JobStatus.PAUSED if kind == "pause" else JobStatus.CANCELLED
                if job.status is not expected:
                    raise RuntimeError(f"{job_id} ended {job.status}, expected {expected}")
                if kind == "pause":
                    await client.cancel(job_id)  # a paused job is cancelled directly: frees nothing to wait for

    def summary(samples: list[float]) -> dict[str, float]:
        return {
            "median_ms": round(statistics.median(samples) * 1000, 1),
            "max_ms": round(max(samples) * 1000, 1),
            "min_ms": round(min(samples) * 1000, 1),
        }

    return {"tries": tries, "pause": summary(pauses), "cancel": summary(cancels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["sqlite", "redis", "postgres"], default="redis")
    parser.add_argument("--tries", type=int, default=50)
    args = parser.parse_args()
    server: RedisServer | None = None
    database: PostgresDatabase | None = None
    folder = tempfile.TemporaryDirectory()
    if args.store == "redis":
        server = RedisServer()
        asyncio.run(server.ready())
        url = server.url
    elif args.store == "postgres":
        database = PostgresDatabase()
        asyncio.run(database.create())
        url = database.url
    else:
        url = f"sqlite:///{folder.name}/latency.db"
    worker = subprocess.Popen([sys.executable, str(WORKER), url], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("the worker did not start")
        result = asyncio.run(measure(url, args.tries))
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
        if server is not None:
            server.stop()
        if database is not None:
            asyncio.run(database.drop())
        folder.cleanup()
    print(json.dumps({"benchmark": "control_latency", "store": args.store, **result}, indent=2))


if __name__ == "__main__":
    main()
