"""durapod's PostgresStore against DBOS, on the same local Postgres, with the same workload.

N jobs of 3 steps each, each step returning a short string at once, 50 in flight (as in
``bench/throughput.py``): on durapod ``DurableAgent.run`` with a ``PostgresStore``; on DBOS an async
``@DBOS.workflow()`` of three async ``@DBOS.step()`` calls, called directly (DBOS checkpoints the workflow
and every step's output in its system database before going on, as durapod journals each step). Each side
runs in a database that the script makes and drops, on the server named by ``DURAPOD_POSTGRES_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``). Both keep Postgres's default durability
(``synchronous_commit`` on).

DBOS is not a dependency of durapod: it runs in a virtualenv of its own, in a child process (DBOS is a
singleton per process), started with the Python named by ``--dbos-python`` (default ``.venv-dbos/bin/python``,
gitignored). Make it with::

    python3 -m venv .venv-dbos && .venv-dbos/bin/pip install dbos

The two take turns, ``--repeat`` rounds, each after a discarded warm-up of ``--warm-up`` jobs; the medians
are compared. Prints one JSON object::

    .venv/bin/python bench/vs_dbos.py [--jobs 1000] [--concurrency 50] [--warm-up 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

STEPS = 3
ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("DURAPOD_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def step_result(index: int) -> str:
    return f"result-{index}"


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


def rate(jobs: int, elapsed: float) -> dict[str, Any]:
    return {"jobs": jobs, "seconds": round(elapsed, 4), "jobs_per_second": round(jobs / elapsed, 1)}


# -- DBOS (runs in the child process, in DBOS's virtualenv: imports nothing of durapod) -----------------


async def dbos_child(url: str, jobs: int, concurrency: int, warm_up: int, tag: str, threads: int) -> dict[str, Any]:
    # imported by name: DBOS is in its own virtualenv, not in durapod's (where mypy runs)
    dbos = importlib.import_module("dbos")

    if threads:  # DBOS runs its database calls in the loop's default executor (asyncio.to_thread)
        asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(threads))

    async def quick_step_body(index: int) -> str:
        return step_result(index)

    quick_step = dbos.DBOS.step()(quick_step_body)

    async def agent_body(job_input: str) -> str:
        last = ""
        for index in range(STEPS):
            last = await quick_step(index)
        return f"{job_input}:{last}"

    agent = dbos.DBOS.workflow()(agent_body)
    config = {"name": "durapod-bench", "system_database_url": url, "log_level": "WARNING"}
    dbos.DBOS(config=config)
    dbos.DBOS.launch()
    try:

        async def run(count: int, prefix: str) -> float:
            async def one(index: int) -> None:
                result = await agent(f"input-{prefix}-{index}")
                if result != f"input-{prefix}-{index}:{step_result(STEPS - 1)}":
                    raise RuntimeError(f"DBOS workflow {index} returned {result!r}")

            return await run_pool(count, concurrency, one)

        if warm_up:
            await run(warm_up, f"warm-up-{tag}")
        return rate(jobs, await run(jobs, tag))
    finally:
        dbos.DBOS.destroy()


# -- durapod (runs in this process) -------------------------------------------------------------------


async def durapod_run(url: str, jobs: int, concurrency: int, warm_up: int, tag: str) -> dict[str, Any]:
    from durapod import DurableAgent, JobContext, JobStatus, PostgresStore

    async def quick_step(index: int) -> str:
        return step_result(index)

    async def agent(job_input: str, ctx: JobContext) -> str:
        last = ""
        for index in range(STEPS):
            last = await ctx.step(f"step-{index}", quick_step, index)
        return f"{job_input}:{last}"

    store = PostgresStore(url, schema=f"d_{tag}")
    try:
        async with DurableAgent(agent, store, name="bench") as durable:

            async def run(count: int, prefix: str) -> float:
                async def one(index: int) -> None:
                    job = await durable.run(f"job-{prefix}-{index}", f"input-{index}")
                    if job.status is not JobStatus.COMPLETED:
                        raise RuntimeError(f"job {index} ended {job.status}: {job.error}")

                return await run_pool(count, concurrency, one)

            if warm_up:
                await run(warm_up, f"warm-up-{tag}")
            return rate(jobs, await run(jobs, tag))
    finally:
        await store.close()


class Database:
    """A database made on the Postgres server for the benchmark, dropped afterwards."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"{POSTGRES_URL.rpartition('/')[0]}/{name}"

    async def _admin(self, statement: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(POSTGRES_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def create(self) -> None:
        await self.drop()
        await self._admin(f'CREATE DATABASE "{self.name}"')

    async def drop(self) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def dbos_in_child(python: str, url: str, args: argparse.Namespace, warm_up: int, tag: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [python, __file__, "--dbos-child", url, str(out), "--jobs", str(args.jobs)]
        command += ["--concurrency", str(args.concurrency), "--warm-up", str(warm_up), "--tag", tag]
        command += ["--dbos-threads", str(args.dbos_threads)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"the DBOS run failed ({done.returncode}): {done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda run: float(run["jobs_per_second"]))
    middle = dict(ordered[len(ordered) // 2])
    middle["runs_jobs_per_second"] = [run["jobs_per_second"] for run in runs]
    return middle


def dbos_version(python: str) -> str:
    probe = "import importlib.metadata as m; print(m.version('dbos'))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warm-up", type=int, default=200, help="jobs of a discarded run before each measured one")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each; medians are compared")
    parser.add_argument("--dbos-python", default=str(ROOT / ".venv-dbos" / "bin" / "python"))
    parser.add_argument(
        "--dbos-threads",
        type=int,
        default=0,
        help="threads of DBOS's executor (0: asyncio's default, min(32, cores + 4))",
    )
    parser.add_argument("--dbos-child", nargs=2, metavar=("URL", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="main", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dbos_child:
        url, out = args.dbos_child
        result = asyncio.run(dbos_child(url, args.jobs, args.concurrency, args.warm_up, args.tag, args.dbos_threads))
        Path(out).write_text(json.dumps(result))
        return
    version = dbos_version(args.dbos_python)
    if not version:
        sys.exit(
            f"DBOS is not installed for {args.dbos_python}: make its own virtualenv (durapod does not depend"
            " on it) with\n    python3 -m venv .venv-dbos && .venv-dbos/bin/pip install dbos\nor name another"
            " Python that has it with --dbos-python."
        )
    durapod_db = Database(f"durapod_vs_dbos_{os.getpid()}_durapod")
    dbos_db = Database(f"durapod_vs_dbos_{os.getpid()}_dbos")
    runs: dict[str, list[dict[str, Any]]] = {"durapod": [], "dbos": []}
    try:
        asyncio.run(durapod_db.create())
        asyncio.run(dbos_db.create())
        for round_ in range(args.repeat):
            warm_up = args.warm_up if round_ == 0 else 0
            tag = f"r{round_}"
            runs["durapod"].append(asyncio.run(durapod_run(durapod_db.url, args.jobs, args.concurrency, warm_up, tag)))
            runs["dbos"].append(dbos_in_child(args.dbos_python, dbos_db.url, args, args.warm_up, tag))
    finally:
        asyncio.run(durapod_db.drop())
        asyncio.run(dbos_db.drop())
    durapod, dbos = median_run(runs["durapod"]), median_run(runs["dbos"])
    report = {
        "benchmark": "vs_dbos",
        "steps_per_job": STEPS,
        "concurrency": args.concurrency,
        "warm_up_jobs": args.warm_up,
        "repeat": args.repeat,
        "python": sys.version.split()[0],
        "dbos_version": version,
        "durapod": durapod,
        "dbos": dbos,
        "ratio_durapod_to_dbos": round(durapod["jobs_per_second"] / dbos["jobs_per_second"], 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
