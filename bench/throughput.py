"""Throughput: N jobs of 3 steps each at concurrency C, on durapod and on baselines, in one run.

Each step returns a short string at once; on durapod every step's result is committed to the store before
the agent continues. Every baseline does the same work with no durapod, in the same process and run, so
the ratios compare like with like on one machine:

- ``--store memory``: plain asyncio with a dict as the store (C worker coroutines take jobs from a shared
  iterator; per job a job record, 3 step records and a completed record go into dicts, with one
  ``await asyncio.sleep(0)`` per step where durapod awaits its commit); also the agent as bare functions.
- ``--store sqlite``: plain sqlite3 with group commit across jobs (C coroutines await each of their
  writes; one writer thread runs everything queued in one transaction, commits once and wakes the
  waiters with one ``call_soon_threadsafe`` per batch, as SQLiteStore does); also one transaction per
  write, and the writes of C jobs grouped round by round.
- ``--store redis``: redis-py auto-pipelined (C coroutines await each of their writes; the commands
  queued during one event-loop turn go in one pipeline, ``transaction=False``, each caller getting its
  own reply, as ioredis's autopipelining does); also one round trip per write, and round-based pipelines.
- ``--store postgres``: asyncpg with group commit across jobs (C coroutines await each of their writes;
  the writes queued while the previous batch commits go in one transaction, statements of one kind sent
  together with ``executemany``, which asyncpg pipelines); also one autocommitted statement per write on a
  pool of 10 connections (PostgresStore's default pool). Runs on the server named by
  ``DURAPOD_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``), in a database it
  makes and drops.

``--compare-concurrency 50,1000`` also runs durapod at each of those concurrencies (a fresh store each run,
taking turns for ``--repeat`` rounds after a warm-up, as the baselines do) and reports the median
throughput at the highest over that at the lowest. Each measured run (baseline or durapod)
follows a discarded warm-up run of ``--warm-up`` jobs. Prints one JSON object. On Linux each durapod run
also reports the CPU time per job of each thread (the event loop's, a store's writer) next to the wall
time per job: with SQLite the two threads take turns (the GIL, and every job waiting for one commit), so
the wall time is about their sum.

    python bench/throughput.py [--store memory|sqlite|redis|postgres] [--jobs 5000] [--concurrency 50]
                               [--compare-concurrency 50,1000] [--warm-up 500] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import queue
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from durapod import DurableAgent, JobContext, JobStatus, MemoryStore, PostgresStore, RedisStore, SQLiteStore

STEPS = 3

AnyStore = MemoryStore | SQLiteStore | RedisStore | PostgresStore
POSTGRES_URL = os.environ.get("DURAPOD_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def json_output() -> TextIO:
    """Keep stdout for the JSON report: returns it, and sends whatever else writes to fd 1 to stderr.

    The benchmarks leave the library's logging as it is by default; a library that prints its logs to
    stdout would otherwise mix them into the report.
    """
    sys.stdout.flush()
    report = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return report


def step_result(index: int) -> str:
    return f"result-{index}"


async def quick_step(index: int) -> str:
    """A step that returns a short string at once (an LLM or tool call is async; a sync step would run
    in a worker thread)."""
    return step_result(index)


async def agent(job_input: str, ctx: JobContext) -> str:
    last = ""
    for index in range(STEPS):
        last = await ctx.step(f"step-{index}", quick_step, index)
    return f"{job_input}:{last}"


async def bare_agent(job_input: str) -> str:
    last = ""
    for index in range(STEPS):
        last = step_result(index)
        await asyncio.sleep(0)  # where durapod awaits its commit, the baseline yields once
    return f"{job_input}:{last}"


def rate(jobs: int, elapsed: float) -> dict[str, Any]:
    return {"jobs": jobs, "seconds": round(elapsed, 4), "jobs_per_second": round(jobs / elapsed, 1)}


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


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds each thread of this process has used, by thread name (Linux: /proc; else empty)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    used: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        used[thread.name] = used.get(thread.name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


async def bench_durapod(store: AnyStore, jobs: int, concurrency: int) -> dict[str, Any]:
    async with DurableAgent(agent, store, name="bench") as durable:

        async def one(index: int) -> None:
            job = await durable.run(f"job-{index}", f"input-{index}")
            if job.status is not JobStatus.COMPLETED:
                raise RuntimeError(f"job-{index} ended {job.status}: {job.error}")

        before = thread_cpu_seconds()
        elapsed = await run_pool(jobs, concurrency, one)
        after = thread_cpu_seconds()
    result = rate(jobs, elapsed)
    # where the time goes: the event loop's thread and a store's own threads (SQLite's writer runs one
    # batch while the loop waits for it: wall time is about their sum, not the larger of the two)
    if after:
        result["cpu_us_per_job_by_thread"] = {
            name: round((seconds - before.get(name, 0.0)) / jobs * 1e6, 1)
            for name, seconds in after.items()
            if seconds - before.get(name, 0.0) > 0
        }
        result["wall_us_per_job"] = round(elapsed / jobs * 1e6, 1)
    return result


async def bench_bare(jobs: int, concurrency: int) -> dict[str, Any]:
    results: dict[str, str] = {}

    async def one(index: int) -> None:
        results[f"job-{index}"] = await bare_agent(f"input-{index}")

    elapsed = await run_pool(jobs, concurrency, one)
    return rate(jobs, elapsed)


async def bench_dict_store(jobs: int, concurrency: int) -> dict[str, Any]:
    """Plain asyncio with a dict as the store: the job and step records durapod keeps, written to dicts.

    Per job: a job record, then per step a step record (job id, index, name, result) and one yield to the
    loop (where durapod awaits its commit), then a completed job record.
    """
    job_table: dict[str, dict[str, Any]] = {}
    step_table: dict[tuple[str, int], dict[str, Any]] = {}

    async def one(index: int) -> None:
        job_id = f"job-{index}"
        job_input = f"input-{index}"
        job_table[job_id] = {"id": job_id, "input": job_input, "status": "running"}
        last = ""
        for step in range(STEPS):
            last = step_result(step)
            step_table[(job_id, step)] = {"job_id": job_id, "index": step, "name": f"step-{step}", "result": last}
            await asyncio.sleep(0)  # where durapod awaits its commit
        job_table[job_id] = {"id": job_id, "input": job_input, "status": "completed", "result": f"{job_input}:{last}"}

    elapsed = await run_pool(jobs, concurrency, one)
    if len(job_table) != jobs or len(step_table) != jobs * STEPS:
        raise RuntimeError("the dict-store baseline lost records")
    return rate(jobs, elapsed)


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


# -- sqlite baselines ----------------------------------------------------------------------------------

SQLITE_SCHEMA = (
    "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT, record TEXT)",
    "CREATE TABLE steps (job_id TEXT, idx INTEGER, record TEXT, PRIMARY KEY (job_id, idx))",
)


def sqlite_connect(path: str) -> sqlite3.Connection:
    """A connection like SQLiteStore's (WAL, ``synchronous=NORMAL``), with the baseline's two tables."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in SQLITE_SCHEMA:
        conn.execute(statement)
    return conn


def sqlite_writes(index: int) -> list[tuple[str, tuple[Any, ...]]]:
    """The rows durapod writes for one job: insert the job running, 3 steps, mark it completed (a worker
    with a free slot creates a job it runs at once as running: no separate pending write)."""
    job_id = f"job-{index}"
    record = json.dumps({"id": job_id, "input": f"input-{index}"})
    out: list[tuple[str, tuple[Any, ...]]] = [("INSERT INTO jobs VALUES (?, 'running', ?)", (job_id, record))]
    for step in range(STEPS):
        out.append(("INSERT INTO steps VALUES (?, ?, ?)", (job_id, step, json.dumps(step_result(step)))))
    out.append(("UPDATE jobs SET status='completed', record=? WHERE id=?", (record, job_id)))
    return out


def sqlite_baseline(path: str, jobs: int, concurrency: int, group: bool) -> dict[str, Any]:
    """The same rows durapod writes (the job running, 3 steps, completed), with plain sqlite3 on the loop
    thread.

    ``group=False``: one transaction per write. ``group=True``: the writes of ``concurrency`` jobs that
    are in flight together share one transaction per round.
    """
    conn = sqlite_connect(path)
    started = time.perf_counter()
    if group:
        for first in range(0, jobs, concurrency):
            batches = [sqlite_writes(index) for index in range(first, min(first + concurrency, jobs))]
            for position in range(len(batches[0])):
                conn.execute("BEGIN")
                for batch in batches:
                    conn.execute(*batch[position])
                conn.execute("COMMIT")
    else:
        for index in range(jobs):
            for sql, args in sqlite_writes(index):
                conn.execute("BEGIN")
                conn.execute(sql, args)
                conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return rate(jobs, elapsed)


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class SQLiteWriter:
    """Plain sqlite3 through one writer thread, with group commit.

    ``await writer.execute(sql, args)`` queues the write and waits for its commit. The thread takes
    everything queued (up to ``max_batch``), runs it in one ``BEGIN IMMEDIATE`` transaction, commits once
    and wakes the awaiting coroutines with one ``call_soon_threadsafe`` per batch. With one write in flight
    it is one transaction per write.
    """

    max_batch = 1000

    def __init__(self, path: str) -> None:
        self._conn = sqlite_connect(path)
        self._queue: queue.SimpleQueue[tuple[str, tuple[Any, ...], asyncio.Future[None]] | None] = queue.SimpleQueue()
        self.batches = 0
        self._thread = threading.Thread(target=self._main, name="bench-sqlite-writer", daemon=True)
        self._thread.start()

    def execute(self, sql: str, args: tuple[Any, ...]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((sql, args, future))
        return future

    def _main(self) -> None:
        conn = self._conn
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            error: BaseException | None = None
            try:
                conn.execute("BEGIN IMMEDIATE")
                for sql, args, _ in batch:
                    conn.execute(sql, args)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                error = exc
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self.batches += 1
            futures = [future for _, _, future in batch]
            futures[0].get_loop().call_soon_threadsafe(_resolve, futures, error)
        conn.close()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


async def sqlite_group_commit_baseline(path: str, jobs: int, concurrency: int) -> dict[str, Any]:
    """``concurrency`` coroutines each await every write of their job; one writer thread group-commits."""
    writer = SQLiteWriter(path)

    async def one(index: int) -> None:
        for sql, args in sqlite_writes(index):
            await writer.execute(sql, args)

    try:
        elapsed = await run_pool(jobs, concurrency, one)
    finally:
        writer.close()
    result = rate(jobs, elapsed)
    result["commits"] = writer.batches
    return result


# -- redis baselines -----------------------------------------------------------------------------------


def redis_commands(index: int) -> list[tuple[str, ...]]:
    job_id = f"job-{index}"
    record = json.dumps({"id": job_id, "input": f"input-{index}"})
    out: list[tuple[str, ...]] = [("HSET", f"base:job:{{{job_id}}}", "record", record, "status", "running")]
    for step in range(STEPS):
        out.append(("RPUSH", f"base:steps:{{{job_id}}}", json.dumps(step_result(step))))
    out.append(("HSET", f"base:job:{{{job_id}}}", "status", "completed"))
    return out


async def redis_baseline(url: str, jobs: int, concurrency: int, pipelined: bool) -> dict[str, Any]:
    """The same writes with plain redis-py: one round trip per write, or pipelined across jobs by rounds."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    await client.flushdb()

    started = time.perf_counter()
    if pipelined:
        for first in range(0, jobs, concurrency):
            batches = [redis_commands(index) for index in range(first, min(first + concurrency, jobs))]
            for position in range(len(batches[0])):
                pipe = client.pipeline(transaction=False)
                for batch in batches:
                    pipe.execute_command(*batch[position])
                await pipe.execute()
    else:

        async def one(index: int) -> None:
            for command in redis_commands(index):
                await client.execute_command(*command)  # type: ignore[no-untyped-call]

        await run_pool(jobs, concurrency, one)
    elapsed = time.perf_counter() - started
    await client.aclose()
    return rate(jobs, elapsed)


class AutoPipeline:
    """Auto-pipelining on redis-py, as ioredis does it.

    ``await pipeline.execute(*command)`` queues the command; the commands queued during one event-loop
    turn are sent in one pipeline (``transaction=False``) at the start of the next turn, and each caller
    gets its own reply (or its own exception). Pipelines of successive turns may be in flight together.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._queued: list[tuple[tuple[str, ...], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self.pipelines = 0

    def execute(self, *command: str) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((command, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        self._flush_scheduled = False
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[str, ...], asyncio.Future[Any]]]) -> None:
        self.pipelines += 1
        pipe = self._client.pipeline(transaction=False)
        for command, _ in batch:
            pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def drain(self) -> None:
        while self._sending:
            await asyncio.gather(*self._sending)


async def redis_autopipelined_baseline(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    """``concurrency`` coroutines each await every write of their job; one pipeline per loop turn."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    await client.flushdb()
    pipeline = AutoPipeline(client)

    async def one(index: int) -> None:
        for command in redis_commands(index):
            await pipeline.execute(*command)

    try:
        elapsed = await run_pool(jobs, concurrency, one)
        await pipeline.drain()
    finally:
        await client.aclose()
    result = rate(jobs, elapsed)
    result["pipelines"] = pipeline.pipelines
    return result


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


def concurrency_list(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected concurrencies like 50,1000, got {text!r}") from None
    if len(values) < 2 or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected at least two concurrencies >= 1, got {text!r}")
    return values


# -- postgres baselines --------------------------------------------------------------------------------

POSTGRES_SCHEMA = (
    "CREATE TABLE {t}_jobs (id text PRIMARY KEY, status text, record text)",
    "CREATE TABLE {t}_steps (job_id text, idx integer, record text, PRIMARY KEY (job_id, idx))",
)


def postgres_writes(table: str, index: int) -> list[tuple[str, tuple[Any, ...]]]:
    """The rows durapod writes for one job: insert the job running, 3 steps, mark it completed."""
    job_id = f"job-{index}"
    record = json.dumps({"id": job_id, "input": f"input-{index}"})
    out: list[tuple[str, tuple[Any, ...]]] = [
        (f"INSERT INTO {table}_jobs VALUES ($1, 'running', $2)", (job_id, record))
    ]
    for step in range(STEPS):
        out.append((f"INSERT INTO {table}_steps VALUES ($1, $2, $3)", (job_id, step, json.dumps(step_result(step)))))
    out.append((f"UPDATE {table}_jobs SET status='completed', record=$1 WHERE id=$2", (record, job_id)))
    return out


class PostgresDatabase:
    """A database made on the Postgres server for the benchmark, dropped afterwards."""

    def __init__(self) -> None:
        self.name = f"durapod_bench_{os.getpid()}"
        base = POSTGRES_URL.rpartition("/")[0]
        self.url = f"{base}/{self.name}"

    async def _admin(self, statement: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(POSTGRES_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def create(self) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        await self._admin(f'CREATE DATABASE "{self.name}"')

    async def drop(self) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


async def postgres_tables(url: str, tag: str) -> str:
    import asyncpg

    table = f"b_{tag.replace('-', '_')}_{os.urandom(3).hex()}"  # each baseline run its own tables
    connection = await asyncpg.connect(url)
    try:
        for statement in POSTGRES_SCHEMA:
            await connection.execute(statement.format(t=table))
    finally:
        await connection.close()
    return table


async def postgres_per_write_baseline(url: str, jobs: int, concurrency: int, tag: str) -> dict[str, Any]:
    """C coroutines, each awaiting every write of its job as one autocommitted statement (a pool of 10)."""
    import asyncpg

    table = await postgres_tables(url, tag)
    pool = await asyncpg.create_pool(url, min_size=10, max_size=10)

    async def one(index: int) -> None:
        for sql, args in postgres_writes(table, index):
            await pool.execute(sql, *args)

    try:
        elapsed = await run_pool(jobs, concurrency, one)
    finally:
        await pool.close()
    return rate(jobs, elapsed)


async def postgres_group_commit_baseline(url: str, jobs: int, concurrency: int, tag: str) -> dict[str, Any]:
    """C coroutines each await every write; the writes queued while a batch commits go in the next one:
    one transaction, one ``executemany`` per statement (pipelined by asyncpg), one connection."""
    import asyncpg

    table = await postgres_tables(url, tag)
    connection = await asyncpg.connect(url)
    queued: list[tuple[str, tuple[Any, ...], asyncio.Future[None]]] = []
    wake = asyncio.Event()
    batches = 0

    async def writer() -> None:
        nonlocal batches
        while True:
            await wake.wait()
            wake.clear()
            batch = queued[:]
            del queued[:]
            if not batch:
                continue
            batches += 1
            grouped: dict[str, list[tuple[Any, ...]]] = {}
            for sql, args, _ in batch:
                grouped.setdefault(sql, []).append(args)
            async with connection.transaction():
                for sql, rows in grouped.items():
                    await connection.executemany(sql, rows)
            for _, _, future in batch:
                future.set_result(None)

    def execute(sql: str, args: tuple[Any, ...]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queued.append((sql, args, future))
        wake.set()
        return future

    async def one(index: int) -> None:
        for sql, args in postgres_writes(table, index):
            await execute(sql, args)

    task = asyncio.get_running_loop().create_task(writer())
    try:
        elapsed = await run_pool(jobs, concurrency, one)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await connection.close()
    result = rate(jobs, elapsed)
    result["batches"] = batches
    return result


Measure = Callable[[int, str], Awaitable[dict[str, Any]]]


async def measured(run: Measure, jobs: int, warm_up: int, tag: str = "main") -> dict[str, Any]:
    """A discarded warm-up run of ``warm_up`` jobs (allocator arenas, caches, lazy imports), then the measured one.

    ``run(jobs, tag)`` makes whatever it writes to (a file, a store, a key prefix) from ``tag``.
    """
    if warm_up > 0:
        await run(warm_up, f"warm-up-{tag}")
        gc.collect()
    result = await run(jobs, tag)
    gc.collect()
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, with every run's throughput beside it (``runs``)."""
    ordered = sorted(runs, key=lambda run: float(run["jobs_per_second"]))
    middle = dict(ordered[len(ordered) // 2])
    middle["runs_jobs_per_second"] = [run["jobs_per_second"] for run in runs]
    return middle


async def compare_concurrency(
    make_store: Callable[[str], AnyStore], jobs: int, concurrencies: list[int], repeat: int, warm_up: int
) -> dict[str, Any]:
    """durapod at each concurrency (a fresh store each run), and the highest's throughput over the lowest's.

    As for the baselines: a warm-up run first, then the concurrencies take turns for ``repeat`` rounds and
    their medians are compared.
    """
    found: dict[str, list[dict[str, Any]]] = {str(concurrency): [] for concurrency in concurrencies}
    for round_ in range(repeat):
        for concurrency in concurrencies:

            async def run(count: int, tag: str, concurrency: int = concurrency) -> dict[str, Any]:
                store = make_store(f"c{concurrency}-{tag}")
                try:
                    return await bench_durapod(store, count, concurrency)
                finally:
                    await store.close()

            found[str(concurrency)].append(
                await measured(run, jobs, warm_up if round_ == 0 else 0, f"c{concurrency}-r{round_}")
            )
    runs = {name: median_run(results) for name, results in found.items()}
    lowest, highest = runs[str(concurrencies[0])], runs[str(concurrencies[-1])]
    return {"jobs": jobs, "repeat": repeat, "runs": runs, "ratio_highest_to_lowest": ratio(highest, lowest)}


def baselines_for(store: str, folder: str, url: str, concurrency: int) -> dict[str, Measure]:
    """The baselines of ``--store``, the one the targets use first."""
    if store == "memory":
        return {
            "plain asyncio, dict store": lambda jobs, tag: bench_dict_store(jobs, concurrency),
            "bare asyncio functions": lambda jobs, tag: bench_bare(jobs, concurrency),
        }
    if store == "sqlite":

        async def per_write(jobs: int, tag: str) -> dict[str, Any]:
            return sqlite_baseline(f"{folder}/per-write-{tag}.db", jobs, concurrency, group=False)

        async def by_rounds(jobs: int, tag: str) -> dict[str, Any]:
            return sqlite_baseline(f"{folder}/rounds-{tag}.db", jobs, concurrency, group=True)

        return {
            "sqlite3, group commit across jobs": lambda jobs, tag: sqlite_group_commit_baseline(
                f"{folder}/group-{tag}.db", jobs, concurrency
            ),
            "sqlite3, one transaction per write": per_write,
            "sqlite3, grouped by rounds": by_rounds,
        }
    if store == "postgres":
        return {
            "asyncpg, group commit across jobs": lambda jobs, tag: postgres_group_commit_baseline(
                url, jobs, concurrency, tag
            ),
            "asyncpg, one statement per write": lambda jobs, tag: postgres_per_write_baseline(
                url, jobs, concurrency, tag
            ),
        }
    return {
        "redis-py, auto-pipelined": lambda jobs, tag: redis_autopipelined_baseline(url, jobs, concurrency),
        "redis-py, one round trip per write": lambda jobs, tag: redis_baseline(url, jobs, concurrency, pipelined=False),
        "redis-py, pipelined by rounds": lambda jobs, tag: redis_baseline(url, jobs, concurrency, pipelined=True),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--store", choices=["memory", "sqlite", "redis", "postgres"], default="memory")
    parser.add_argument("--warm-up", type=int, default=500, help="jobs of a discarded run before each measured one")
    parser.add_argument("--memory-actors", type=int, default=2000, help="live actors for the memory figure")
    parser.add_argument(
        "--compare-concurrency",
        type=concurrency_list,
        metavar="C1,C2[,...]",
        help="also run durapod at each concurrency and report the highest's throughput over the lowest's",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every contender; medians are compared")
    parser.add_argument("--quick", action="store_true", help="smoke run: 500 jobs, 50 to warm up, 200 actors")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
        args.jobs = min(args.jobs, 500)
        args.warm_up = min(args.warm_up, 50)
        args.memory_actors = min(args.memory_actors, 200)
    report: dict[str, Any] = {
        "benchmark": "throughput",
        "store": args.store,
        "steps_per_job": STEPS,
        "concurrency": args.concurrency,
        "warm_up_jobs": args.warm_up,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    with tempfile.TemporaryDirectory() as folder:
        server: RedisServer | None = None
        database: PostgresDatabase | None = None
        try:
            url = ""
            if args.store == "redis":
                server = RedisServer()
                await server.ready()
                url = server.url
            if args.store == "postgres":
                database = PostgresDatabase()
                await database.create()
                url = database.url

            def make_store(tag: str) -> AnyStore:
                if args.store == "memory":
                    return MemoryStore()
                if args.store == "sqlite":
                    return SQLiteStore(f"{folder}/durapod-{tag}.db")
                if args.store == "postgres":
                    return PostgresStore(url, schema="d_" + tag.replace("-", "_"))
                return RedisStore.from_url(url, key_prefix=f"durapod-{tag}:")

            async def run_durapod(jobs: int, tag: str) -> dict[str, Any]:
                store = make_store(tag)
                try:
                    return await bench_durapod(store, jobs, args.concurrency)
                finally:
                    await store.close()

            # Baselines and durapod take turns, ``repeat`` rounds: on a noisy machine each gets the same
            # share of good and bad moments, and the medians are compared.
            contenders = dict(baselines_for(args.store, folder, url, args.concurrency))
            contenders["durapod"] = run_durapod
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
            for round_ in range(args.repeat):
                for name, run in contenders.items():
                    warm_up = args.warm_up if round_ == 0 else 0
                    runs[name].append(await measured(run, args.jobs, warm_up, f"r{round_}"))
            result = median_run(runs.pop("durapod"))
            baselines = {name: median_run(found) for name, found in runs.items()}
            report["repeat"] = args.repeat
            report["baselines"] = baselines
            report["durapod"] = result
            report["ratio_durapod_to_baseline"] = {name: ratio(result, base) for name, base in baselines.items()}
            if args.compare_concurrency:
                report["concurrency_comparison"] = await compare_concurrency(
                    make_store, args.jobs, args.compare_concurrency, args.repeat, args.warm_up
                )
        finally:
            if server is not None:
                server.stop()
            if database is not None:
                await database.drop()
    if args.store == "memory":
        report["memory"] = await actor_memory(args.memory_actors)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
