"""Memory: bytes per live job parked in a step, bytes per paused job, and RSS over many finished jobs.

(a) ``--parked`` jobs started with ``durable.start`` on a MemoryStore, each parked inside its first step
(``ctx.step`` of a function that awaits an ``asyncio.Event``): the bytes still allocated once all are
parked (tracemalloc, after ``gc.collect()``), per job. The baseline, in the same run, is a bare asyncio
task parked on the same Event (bytes per task).

(b) ``--paused`` jobs parked in the same way, then all paused with ``durable.pause``, then
``gc.collect()``: the bytes held per paused job against before the jobs were started, with the worker
still open. A pause lands at a step boundary and a job parked in a step reaches none, so the agent has
``pause_timeout=0.01``: the step in flight is cancelled after 10 ms, as documented. A paused job should
hold nothing in the worker.

The MemoryStore holds each job's records too, so (a) and (b) are also reported without the store's
share, measured two ways: a store-only run (as many jobs put in a MemoryStore with ``Client(store).submit``,
and ``Client(store).pause`` for (b), no worker: the job records alone), and what is still allocated once
the worker is closed and dropped, the store kept (the records and the jobs' event logs).

(c) RSS (``VmRSS``) sampled every ``--every`` jobs over ``--jobs`` jobs of 3 steps run through
``durable.run`` at concurrency 50, on a MemoryStore (which keeps every finished job, so RSS grows by the
bytes of a finished job's records per job: reported as growth per job) and on a SQLiteStore in a
temporary file (finished jobs live on disk: RSS should be flat). The growth is from the 10,000th job
to the last (from a fifth of the way if ``--jobs`` is smaller than 20,000).

(d) RSS of a worker on a SQLiteStore before and after ``--parked`` jobs went to sleep (``ctx.sleep`` of an
hour): a sleeping job is in the store only (no owner), and the worker holds nothing of it.

Each part runs in a fresh Python process (so that memory one part freed cannot hide another's growth),
two at a time. durapod's logging is left as the library sets it up by default; anything it prints to
stdout goes to stderr, and stdout holds one JSON object.

    python bench/memory.py [--parked 10000] [--paused 2000] [--jobs 50000] [--every 5000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from throughput import agent, json_output, run_pool

from durapod import Client, DurableAgent, JobContext, JobStatus, MemoryStore, SQLiteStore

WARM_UP = 100  # jobs started (and left as they are) before measuring
PARTS = ("parked", "paused", "store-only", "rss-memory", "rss-sqlite", "sleepers")


def traced() -> int:
    """Bytes allocated since tracemalloc started and still alive, after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def top_files(snapshot: tracemalloc.Snapshot, count: int, limit: int = 8) -> list[dict[str, Any]]:
    """Where the bytes still held were allocated (innermost frame), per job: a hint, not a measure."""
    out = []
    for stat in snapshot.statistics("filename")[:limit]:
        path = Path(stat.traceback[0].filename)
        out.append({"file": "/".join(path.parts[-2:]), "bytes_per_job": round(stat.size / count)})
    return out


async def until(predicate: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting until {what}")
        await asyncio.sleep(0.001)


class Parking:
    """An agent parked inside its first step, until ``release`` is set; counts the jobs inside the step."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def wait_for_release(self) -> str:
        self.entered += 1
        await self.release.wait()
        return "released"

    async def agent(self, job_input: str, ctx: JobContext) -> str:
        return await ctx.step("park", self.wait_for_release)

    async def start_parked(self, durable: DurableAgent, prefix: str, count: int) -> list[str]:
        target = self.entered + count
        ids = [f"{prefix}-{index}" for index in range(count)]
        for job_id in ids:
            await durable.start(job_id, "x")
        await until(lambda: self.entered >= target, f"{count} jobs are parked in their step")
        return ids


async def part_parked(count: int) -> dict[str, Any]:
    """(a) bare tasks parked on an Event, then durapod jobs parked in a step; then the worker closed and dropped."""
    parking = Parking()

    async def bare() -> None:
        await parking.release.wait()

    warm = [asyncio.create_task(bare()) for _ in range(WARM_UP)]
    await asyncio.sleep(0)
    gc.collect()
    tracemalloc.start()
    tasks = [asyncio.create_task(bare()) for _ in range(count)]
    await asyncio.sleep(0)  # every task runs to its first await and parks on the Event
    bare_held = traced()
    tracemalloc.stop()

    store = MemoryStore()
    durable = DurableAgent(parking.agent, store, name="parked")
    await durable.open()
    await parking.start_parked(durable, "warm-up", WARM_UP)
    gc.collect()
    tracemalloc.start()
    await parking.start_parked(durable, "parked", count)
    held = traced()
    snapshot = tracemalloc.take_snapshot()
    await durable.aclose()  # the parked agents are interrupted and their jobs handed back (pending)
    del durable
    after_close = traced()
    tracemalloc.stop()
    parking.release.set()
    await asyncio.gather(*warm, *tasks)
    await store.close()
    return {
        "jobs": count,
        "durapod_bytes_per_job": round(held / count),
        "durapod_bytes_per_job_worker_closed_and_dropped": round(after_close / count),
        "bare_task_bytes_per_task": round(bare_held / count),
        "durapod_top_files": top_files(snapshot, count),
    }


async def part_paused(count: int) -> dict[str, Any]:
    """(b) parked jobs, all paused: bytes held with the worker open, then with the worker closed and dropped."""
    parking = Parking()
    store = MemoryStore()
    durable = DurableAgent(parking.agent, store, name="paused", pause_timeout=0.01)
    await durable.open()
    warm = await parking.start_parked(durable, "warm-up", WARM_UP)
    await asyncio.gather(*(durable.pause(job_id) for job_id in warm))
    gc.collect()
    tracemalloc.start()
    ids = await parking.start_parked(durable, "paused", count)
    parked_held = traced()
    jobs = await asyncio.gather(*(durable.pause(job_id) for job_id in ids))
    not_paused = [job.id for job in jobs if job.status is not JobStatus.PAUSED]
    if not_paused:
        raise RuntimeError(f"{len(not_paused)} jobs did not pause, e.g. {not_paused[0]}")
    del ids, jobs  # only what the worker and the store hold is measured
    await asyncio.sleep(0.1)  # the actors that paused them stop
    paused_held = traced()
    snapshot = tracemalloc.take_snapshot()
    await durable.aclose()
    del durable
    after_close = traced()
    tracemalloc.stop()
    await store.close()
    return {
        "jobs": count,
        "parked_bytes_per_job": round(parked_held / count),
        "paused_bytes_per_job_worker_open": round(paused_held / count),
        "paused_bytes_per_job_worker_closed_and_dropped": round(after_close / count),
        "paused_top_files": top_files(snapshot, count),
    }


async def part_store_only(queued_count: int, paused_count: int) -> dict[str, Any]:
    """The store's share: jobs queued with Client.submit (and paused with Client.pause), no worker at all."""
    held: dict[str, int] = {}
    for kind, count in (("queued", queued_count), ("paused", paused_count)):
        store = MemoryStore()
        client = Client(store)
        await client.submit("warm-up", "x", agent="parked")
        await client.pause("warm-up")
        gc.collect()
        tracemalloc.start()
        for index in range(count):
            await client.submit(f"job-{index}", "x", agent="parked")
            if kind == "paused":
                job = await client.pause(f"job-{index}")
                if job.status is not JobStatus.PAUSED:
                    raise RuntimeError(f"job-{index} is {job.status}, expected paused")
        held[kind] = round(traced() / count)
        tracemalloc.stop()
        await client.aclose()
    return {"queued_bytes_per_job": held["queued"], "paused_bytes_per_job": held["paused"]}


def rss_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the peak, where /proc is missing


async def part_rss(kind: str, jobs: int, every: int, concurrency: int = 50) -> dict[str, Any]:
    """(c) RSS every ``every`` jobs over ``jobs`` jobs of 3 steps through ``durable.run``."""
    with tempfile.TemporaryDirectory() as folder:
        store = MemoryStore() if kind == "memory" else SQLiteStore(f"{folder}/rss.db")
        samples: list[dict[str, Any]] = [{"jobs": 0, "rss_mb": round(rss_bytes() / 2**20, 2)}]
        finished = 0
        try:
            async with DurableAgent(agent, store, name="rss") as durable:

                async def one(index: int) -> None:
                    nonlocal finished
                    job = await durable.run(f"job-{index}", f"input-{index}")
                    if job.status is not JobStatus.COMPLETED:
                        raise RuntimeError(f"job-{index} ended {job.status}: {job.error}")
                    finished += 1
                    if finished % every == 0:
                        samples.append({"jobs": finished, "rss_mb": round(rss_bytes() / 2**20, 2)})

                elapsed = await run_pool(jobs, concurrency, one)
        finally:
            await store.close()
    first = next(sample for sample in samples if sample["jobs"] >= (10_000 if jobs >= 20_000 else jobs // 5))
    last = samples[-1]
    start, end = first["jobs"], last["jobs"]
    growth_mb = last["rss_mb"] - first["rss_mb"]
    return {
        "store": kind,
        "jobs": jobs,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "samples": samples,
        "growth_from_jobs": start,
        "growth_to_jobs": end,
        "growth_mb": round(growth_mb, 2),
        "growth_bytes_per_job": round(growth_mb * 2**20 / (end - start)) if end > start else None,
    }


async def part_sleepers(count: int) -> dict[str, Any]:
    """(d) RSS of a worker on a SQLiteStore before and after ``count`` jobs went to sleep (``ctx.sleep`` of an
    hour): a sleeping job is in the store only, and the worker holds nothing of it."""
    asleep = 0
    everyone_asleep = asyncio.Event()
    target = WARM_UP

    async def sleeper(job_input: str, ctx: JobContext) -> str:
        nonlocal asleep
        if not ctx.is_replaying:
            asleep += 1
            if asleep >= target:
                everyone_asleep.set()
        await ctx.sleep(3600)
        return job_input

    async def settled(durable: DurableAgent, last: str) -> None:
        await everyone_asleep.wait()
        # the last one's sleep is written, and the actors that wrote theirs have ended
        await until(lambda: not asyncio.all_tasks() - {asyncio.current_task()} - idle_tasks, "the actors end")
        job = await durable.status(last)
        if job is None or job.sleeping_until is None:
            raise RuntimeError(f"{last} is not asleep: {job}")

    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(f"{folder}/sleepers.db")
        try:
            async with DurableAgent(sleeper, store, name="sleepers") as durable:
                idle_tasks = set(asyncio.all_tasks()) - {asyncio.current_task()}
                for index in range(WARM_UP):
                    await durable.start(f"warm-up-{index}", "x")
                await settled(durable, f"warm-up-{WARM_UP - 1}")
                gc.collect()
                await asyncio.sleep(0.5)
                before = rss_bytes()
                everyone_asleep.clear()
                target = WARM_UP + count
                for index in range(count):
                    await durable.start(f"sleeper-{index}", "x")
                await settled(durable, f"sleeper-{count - 1}")
                gc.collect()
                await asyncio.sleep(0.5)
                after = rss_bytes()
                tasks_left = len(asyncio.all_tasks() - idle_tasks) - 1
        finally:
            await store.close()
    return {
        "jobs": count,
        "rss_growth_mb": round((after - before) / 2**20, 2),
        "rss_growth_bytes_per_job": round((after - before) / count),
        "tasks_held": tasks_left,
    }


async def run_part(part: str, args: argparse.Namespace) -> dict[str, Any]:
    if part == "parked":
        return await part_parked(args.parked)
    if part == "paused":
        return await part_paused(args.paused)
    if part == "store-only":
        return await part_store_only(args.parked, args.paused)
    if part == "sleepers":
        return await part_sleepers(args.parked)
    return await part_rss(part.removeprefix("rss-"), args.jobs, args.every)


def in_child(part: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one part in a fresh interpreter; its stdout is its JSON, its stderr passes through."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--part",
        part,
        "--parked",
        str(args.parked),
        "--paused",
        str(args.paused),
    ]
    command += ["--jobs", str(args.jobs), "--every", str(args.every)]
    done = subprocess.run(command, stdout=subprocess.PIPE, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def report(args: argparse.Namespace, parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    parked, paused, store = parts["parked"], parts["paused"], parts["store-only"]
    with_store = parked["durapod_bytes_per_job"]
    paused_open = paused["paused_bytes_per_job_worker_open"]
    store_share = (
        "The store's share is measured two ways: 'store_only_run' = the same number of jobs put in a"
        " MemoryStore with Client.submit (and Client.pause for paused jobs), no worker: the job records"
        " alone; 'worker_closed' = what is still allocated once the worker is closed (aclose) and"
        " dropped, the store kept: the job records and their event logs (a job that ran has job_status"
        " events in the store), plus anything the closed worker left reachable."
    )
    return {
        "benchmark": "memory",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "parked_in_step": {
            "what": (
                "Bytes still allocated (tracemalloc, after gc.collect) per live job parked inside its first"
                " step, the jobs started with durable.start on a MemoryStore with a worker open. Baseline:"
                " a bare asyncio task parked on the same Event (bytes per task). " + store_share + " Closing"
                " the worker hands parked jobs back as pending, so 'worker_closed' here is the store after"
                " that."
            ),
            "jobs": parked["jobs"],
            "durapod_bytes_per_job_including_store": with_store,
            "store_bytes_per_job": {
                "store_only_run": store["queued_bytes_per_job"],
                "worker_closed": parked["durapod_bytes_per_job_worker_closed_and_dropped"],
            },
            "durapod_bytes_per_job_excluding_store": {
                "minus_store_only_run": with_store - store["queued_bytes_per_job"],
                "minus_worker_closed": with_store - parked["durapod_bytes_per_job_worker_closed_and_dropped"],
            },
            "baselines": {
                "bare asyncio task parked on the same Event": {"bytes_per_task": parked["bare_task_bytes_per_task"]}
            },
            "ratio_durapod_including_store_to_baseline": round(with_store / parked["bare_task_bytes_per_task"], 2),
            "top_allocating_files": parked["durapod_top_files"],
        },
        "paused": {
            "what": (
                "Bytes still allocated per paused job against before the jobs were started: jobs parked in a"
                " step as above, all paused with durable.pause (pause_timeout=0.01: a job parked in a step"
                " reaches no step boundary, so the step in flight is cancelled after 10 ms), then"
                " gc.collect, worker still open. " + store_share + " 'in_worker' = the figure minus the"
                " store's share: a paused job should hold nothing in the worker."
            ),
            "jobs": paused["jobs"],
            "bytes_per_job_while_parked": paused["parked_bytes_per_job"],
            "bytes_per_paused_job_including_store": paused_open,
            "store_bytes_per_paused_job": {
                "store_only_run": store["paused_bytes_per_job"],
                "worker_closed": paused["paused_bytes_per_job_worker_closed_and_dropped"],
            },
            "bytes_per_paused_job_in_worker": {
                "minus_store_only_run": paused_open - store["paused_bytes_per_job"],
                "minus_worker_closed": paused_open - paused["paused_bytes_per_job_worker_closed_and_dropped"],
            },
            "top_allocating_files": paused["paused_top_files"],
        },
        "rss": {
            "what": (
                "VmRSS every --every jobs over --jobs jobs of 3 steps through durable.run at concurrency 50,"
                " growth from the 10,000th job to the last. MemoryStore keeps every finished job (its"
                " growth per job is what a finished job's records cost); SQLiteStore (temp file) keeps them"
                " on disk (its RSS should be flat). 'seconds' is for information: parts run two at a time."
            ),
            "memory": parts["rss-memory"],
            "sqlite": parts["rss-sqlite"],
        },
        "sleeping": {
            "what": (
                "VmRSS of a worker on a SQLiteStore (temp file) before and after --parked jobs went to sleep"
                " for an hour (ctx.sleep), 100 asleep before the first sample, gc.collect before each. The"
                " growth includes SQLite's page caches (up to 2 MB per connection, a writer and a reader)"
                " filling as the file grows, and what the allocator keeps of the 10,000 actors that ran until each"
                " job fell asleep. 'tasks_held' = tasks of the sleeping jobs (none expected)."
            ),
            **parts["sleepers"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parked", type=int, default=10_000, help="jobs parked in a step for (a)")
    parser.add_argument("--paused", type=int, default=2_000, help="jobs paused for (b)")
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs run for the RSS samples (c)")
    parser.add_argument("--every", type=int, default=5_000, help="jobs between two RSS samples")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1,000 parked, 500 paused, 5,000 jobs every 1,000"
    )
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # one part, in a child process
    args = parser.parse_args()
    if args.quick:
        args.parked = min(args.parked, 1000)
        args.paused = min(args.paused, 500)
        args.jobs = min(args.jobs, 5000)
        args.every = min(args.every, 1000)
    output = json_output()
    if args.part is not None:
        result = asyncio.run(run_part(args.part, args))
        output.write(json.dumps(result) + "\n")
        output.flush()
        return
    # the two long RSS runs first, each next to a shorter part; a part's figures do not depend on timing
    order = ("rss-sqlite", "rss-memory", "parked", "paused", "store-only", "sleepers")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {part: pool.submit(in_child, part, args) for part in order}
        parts = {part: future.result() for part, future in futures.items()}
    output.write(json.dumps(report(args, parts), indent=2) + "\n")
    output.flush()


if __name__ == "__main__":
    main()
