"""A worker process whose SQLite file hits a file-size limit (``RLIMIT_FSIZE``) while its jobs run.

    python fsize_worker.py DB_PATH JOBS

Runs JOBS jobs of steps ``a``, ``b`` and ``c``. Once every job has journaled ``a``, the process limits
the files it writes to 4 KiB, so that every write of the store fails (``EFBIG``: SQLite reports a full
disk or an I/O error, a store error that is not "unavailable") while the jobs go on to ``b``. After the
runtime has met those errors and its lease keeper has stopped the jobs, the limit is lifted and every
``run()`` is awaited. Each step first looks, on a connection of its own, whether the journal already
holds it: a step that runs although it is journaled is reported.

Prints one JSON line: ``statuses``, ``executions`` (per ``job:step``) and ``reruns`` (journaled steps that
ran again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path

from durapod import DurableAgent, JobContext, SQLiteStore


class _Seen(logging.Handler):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def main() -> None:
    db, jobs = Path(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    executions: Counter[str] = Counter()
    reruns: list[str] = []
    past_a: set[str] = set()
    journaled, go = asyncio.Event(), asyncio.Event()

    def work(job_id: str, index: int, name: str) -> str:
        executions[f"{job_id}:{name}"] += 1
        with sqlite3.connect(db) as check:
            found = check.execute("SELECT count(*) FROM steps WHERE job_id = ? AND idx = ?", (job_id, index))
            if found.fetchone()[0]:
                reruns.append(f"{job_id}:{name}")
        return name * 300  # a result of some size: its row needs a page

    async def agent(text: str, ctx: JobContext) -> str:
        results = [await ctx.step("a", work, ctx.job_id, 0, "a")]
        past_a.add(ctx.job_id)
        if len(past_a) == jobs:
            journaled.set()
        await go.wait()
        for index, name in enumerate(("b", "c"), start=1):
            results.append(await ctx.step(name, work, ctx.job_id, index, name))
        return "".join(result[0] for result in results)

    stopped = _Seen("lease renewal keeps failing")
    logging.getLogger("durapod").addHandler(stopped)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    async with DurableAgent(agent, SQLiteStore(db), lease_ttl=1.0, max_retries=0) as durable:
        runs = [asyncio.create_task(durable.run(f"j{n:02d}", "x")) for n in range(jobs)]
        await asyncio.wait_for(journaled.wait(), 30)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        go.set()
        await asyncio.wait_for(stopped.event.wait(), 30)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        done = await asyncio.wait_for(asyncio.gather(*runs), 30)
    print(json.dumps({"statuses": [str(job.status) for job in done], "executions": executions, "reruns": reruns}))


if __name__ == "__main__":
    asyncio.run(main())
