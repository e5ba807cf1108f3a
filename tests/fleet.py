"""Running real worker processes for crash and fleet tests, and checking what they did."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from durapod import open_store

WORKER = Path(__file__).parent / "workers" / "crash_worker.py"
ROOT = Path(__file__).parent.parent


@dataclass
class Worker:
    worker_id: str
    process: subprocess.Popen[str]
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=30)  # reaps it and closes its pipes
        self.killed = True

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=60)
        return self.process.returncode


@dataclass
class Fleet:
    store_url: str
    side_db: Path
    concurrency: int = 20
    lease_ttl: float = 2.0
    step_delay: float = 0.002
    workers: list[Worker] = field(default_factory=list)

    def start(self, worker_id: str) -> Worker:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                self.store_url,
                str(self.side_db),
                worker_id,
                "--concurrency",
                str(self.concurrency),
                "--lease-ttl",
                str(self.lease_ttl),
                "--step-delay",
                str(self.step_delay),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the worker serves (or dies)
        if line.strip() != "ready":
            process.kill()
            _, err = process.communicate(timeout=30)
            raise RuntimeError(f"worker {worker_id} did not start: {line!r} {err[-2000:]}")
        worker = Worker(worker_id, process)
        self.workers.append(worker)
        return worker

    def executions(self, kind: str = "ran") -> list[tuple[str, int, int, str, int, int]]:
        """Rows of one kind (``ran``: a step function executed; ``journaled``: its result was committed)."""
        return [row[1:] for row in self.rows(kind)]

    def rows(self, kind: str) -> list[tuple[int, str, int, int, str, int, int]]:
        """Rows of one kind with their global order: (seq, job_id, step, pid, worker, epoch, attempt)."""
        if not self.side_db.exists():
            return []
        with sqlite3.connect(self.side_db, timeout=30) as conn:
            try:
                rows = conn.execute(
                    "SELECT seq, job_id, step, pid, worker, epoch, attempt FROM executions WHERE kind = ? ORDER BY seq",
                    (kind,),
                ).fetchall()
            except sqlite3.OperationalError:
                return []
        return [tuple(row) for row in rows]

    def wait_for_executions(self, count: int, timeout: float = 120.0, *, pid: int | None = None) -> None:
        """Poll the side table (other processes write it) until it holds ``count`` executions (of ``pid``)."""
        deadline = time.monotonic() + timeout
        while len([row for row in self.executions() if pid is None or row[2] == pid]) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} executions after {timeout}s")
            for worker in self.workers:
                if not worker.killed and worker.process.poll() is not None:
                    raise RuntimeError(f"worker {worker.worker_id} died: {worker.process.stderr.read()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.02)

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.communicate(timeout=30)


@dataclass
class Audit:
    """What the side table says about re-executions and owners."""

    reruns_in_flight: int
    unexplained_reruns: list[tuple[str, int]]
    two_owners: list[tuple[str, int]]


def audit(rows: list[tuple[str, int, int, str, int, int]], killed_pids: set[int]) -> Audit:
    """Check the side table.

    A step may run twice only when its earlier execution was in flight in a worker that was then killed,
    and at most one step per job per killed worker can have been in flight. Every (job, epoch) must have
    been executed by one process only: an epoch is one owner.
    """
    runs: defaultdict[tuple[str, int], list[int]] = defaultdict(list)
    owners: defaultdict[tuple[str, int], set[int]] = defaultdict(set)
    for job_id, step, pid, _worker, epoch, _attempt in rows:
        runs[(job_id, step)].append(pid)
        owners[(job_id, epoch)].add(pid)
    in_flight = 0
    unexplained = []
    per_job_and_pid: Counter[tuple[str, int]] = Counter()
    for (job_id, step), pids in runs.items():
        for earlier in pids[:-1]:
            per_job_and_pid[(job_id, earlier)] += 1
            if earlier in killed_pids:
                in_flight += 1
            else:
                unexplained.append((job_id, step))
    unexplained += [(job_id, -1) for (job_id, _pid), count in per_job_and_pid.items() if count > 1]
    two_owners = [key for key, pids in owners.items() if len(pids) > 1]
    return Audit(in_flight, unexplained, two_owners)


def stale_commits(
    ran: list[tuple[int, str, int, int, str, int, int]], journals: dict[str, list[tuple[int, int]]]
) -> list[tuple[str, int, int]]:
    """Journal records an old owner committed after a newer owner of the job had started running it.

    ``journals`` holds each job's journal as the store has it: ``(index, epoch)`` per record. A worker
    that takes a job over (epoch ``e``) reads its journal and runs its first step at index ``k``: the
    journal had exactly ``k`` records then. Fencing means that no record at index ``k`` or later can carry
    an epoch below ``e``: the old owner's late writes were refused. Returns the records that break it.
    """
    first_run: dict[tuple[str, int], int] = {}
    for _seq, job_id, step, _pid, _worker, epoch, _attempt in ran:
        key = (job_id, epoch)
        first_run[key] = min(step, first_run.get(key, step))
    stale = []
    for job_id, records in journals.items():
        for index, epoch in records:
            for (other_job, newer), start in first_run.items():
                if other_job == job_id and newer > epoch and index >= start:
                    stale.append((job_id, index, epoch))
                    break
    return stale


async def read_journals(store_url: str, job_ids: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Each job's journal as stored: ``(index, epoch)`` per record."""
    store = open_store(store_url)
    try:
        return {job_id: [(r.index, r.epoch) for r in await store.read_steps(job_id)] for job_id in job_ids}
    finally:
        await store.close()
