"""The fleet on Redis: worker processes on one RedisStore, killed with SIGKILL, and Redis restarted."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pytest_redis.executor import RedisExecutor

from durapod import Client, JobStatus
from durapod.stores.redis import RedisStore
from tests.fleet import Fleet, audit, read_journals, stale_commits
from tests.redis_fixtures import require_redis
from tests.workers.crash_worker import STEPS, expected_result

pytestmark = [pytest.mark.slow, pytest.mark.redis]


async def submit(url: str, count: int) -> None:
    async with Client(RedisStore.from_url(url)) as client:
        for index in range(count):
            await client.submit(f"job-{index:03d}", f"in{index}", agent="crash")


async def wait_all(url: str, count: int, timeout: float = 240.0) -> dict[str, tuple[JobStatus, object, int]]:
    async with Client(RedisStore.from_url(url), poll_interval=0.2) as client:
        jobs: dict[str, tuple[JobStatus, object, int]] = {}
        for index in range(count):
            job = await client.wait(f"job-{index:03d}", timeout=timeout)
            jobs[job.id] = (job.status, job.result, job.steps)
        return jobs


def check_results(jobs: dict[str, tuple[JobStatus, object, int]], count: int) -> None:
    assert len(jobs) == count
    for index in range(count):
        status, result, steps = jobs[f"job-{index:03d}"]
        assert status is JobStatus.COMPLETED
        assert result == expected_result(f"in{index}")
        assert steps == STEPS


@pytest.mark.timeout(600)
def test_three_workers_one_killed_and_replaced(redis_url: str, tmp_path: Path) -> None:
    jobs = 300
    # steps take a moment, so that all 300 jobs are still far from done when the kill lands
    fleet = Fleet(redis_url, tmp_path / "side.db", concurrency=20, lease_ttl=2.0, step_delay=0.1)
    asyncio.run(submit(redis_url, jobs))
    try:
        workers = [fleet.start(f"worker-{n}") for n in range(3)]
        victim = workers[1]
        fleet.wait_for_executions(30, pid=victim.pid)
        victim.kill()
        replacement = fleet.start("worker-3")
        final = asyncio.run(wait_all(redis_url, jobs))
        for worker in fleet.workers:
            if not worker.killed:
                assert worker.terminate() == 0
    finally:
        fleet.stop_all()
    check_results(final, jobs)
    report = audit(fleet.executions(), {victim.pid})
    assert report.unexplained_reruns == []
    assert report.two_owners == []
    journals = asyncio.run(read_journals(redis_url, [f"job-{index:03d}" for index in range(jobs)]))
    assert stale_commits(fleet.rows("ran"), journals) == []
    pids = {row[2] for row in fleet.executions()}
    assert {victim.pid, replacement.pid} <= pids  # the killed worker had jobs; its replacement took work
    print(f"\nfleet: 300 jobs, 1 kill, {report.reruns_in_flight} in-flight steps ran again")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(600)
def test_jobs_complete_across_a_redis_restart(tmp_path: Path) -> None:
    require_redis()
    data = tmp_path / "redis"
    data.mkdir()
    port = free_port()
    server = RedisExecutor(
        "redis-server",
        databases=4,
        redis_timeout=30,
        loglevel="warning",
        host="127.0.0.1",
        port=port,
        appendonly="yes",
        datadir=data,
    )
    server.start()
    url = f"redis://127.0.0.1:{port}/0"
    jobs = 150
    fleet = Fleet(url, tmp_path / "side.db", concurrency=20, lease_ttl=3.0, step_delay=0.01)
    try:
        asyncio.run(submit(url, jobs))
        workers = [fleet.start(f"worker-{n}") for n in range(2)]
        fleet.wait_for_executions(200)
        server.stop()  # a clean shutdown: the append-only file has every acknowledged write
        server.start()
        final = asyncio.run(wait_all(url, jobs))
        for worker in workers:
            assert worker.terminate() == 0
        journals = asyncio.run(read_journals(url, [f"job-{index:03d}" for index in range(jobs)]))
    finally:
        fleet.stop_all()
        server.stop()
    check_results(final, jobs)
    report = audit(fleet.executions(), set())
    assert report.two_owners == []
    assert stale_commits(fleet.rows("ran"), journals) == []
