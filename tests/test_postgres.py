"""PostgresStore beyond the store contract: URLs and settings, expiry, several stores on one database,
the two-scheduler exactly-once test, and worker processes killed with SIGKILL (the crash and fleet tests).

The store contract, the lifecycle properties and every runtime test that takes the ``store`` fixture run
on Postgres too (see ``STORE_FACTORIES`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from pathlib import Path

import pytest

from durapod import Client, DurableAgent, FakeClock, JobContext, PostgresStore, open_store
from durapod.errors import JobNotFound, StaleOwnerError, StoreError, VersionConflict
from durapod.models import ControlKind, JobStatus, utcnow
from durapod.schedules import fire_job_id
from durapod.stores.base import ControlRequest
from tests.fleet import Fleet, audit, read_journals, stale_commits
from tests.test_scheduler import START, run_two_schedulers
from tests.test_store_contract import NOW, make_job, running_job, step
from tests.workers.crash_worker import STEPS, expected_result

pytestmark = pytest.mark.postgres


def test_open_store_takes_the_schema_from_the_url_and_hides_the_password() -> None:
    store = open_store("postgresql://app:s3cret@db.internal:5432/jobs?schema=tenant_a&sslmode=disable")
    assert isinstance(store, PostgresStore)
    assert store.schema == "tenant_a"
    assert "s3cret" not in repr(store)
    assert "sslmode=disable" in repr(store)
    other = open_store("postgres://db/jobs")
    assert isinstance(other, PostgresStore)
    assert other.schema == "durapod"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"schema": "Bad-Name"}, "schema"),
        ({"schema": "x" * 60}, "schema"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": float("nan")}, "ttl_seconds"),
        ({"min_size": 5, "max_size": 2}, "min_size"),
        ({"max_size": 0}, "max_size"),
        ({"max_size": 1}, "max_size"),  # the LISTEN connection would take the only one
    ],
)
def test_bad_settings_are_refused_naming_them(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        PostgresStore("postgresql://localhost/db", **kwargs)  # type: ignore[arg-type]


async def test_an_unreachable_server_is_a_typed_error() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(StoreError):
        await store.get("job")
    await store.close()


async def test_one_batch_writes_many_jobs_steps_and_refuses_only_the_stale_ones(postgres_url: str) -> None:
    """Step appends queued together run as one statement: each caller still gets its own answer, and the
    events of a refused step are not logged."""
    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore)
    try:
        for n in range(6):
            await running_job(store, f"j{n}")
        await store.append_step(step("j1", 0))
        batches = store.batches
        records = [step("j0", 0), step("j1", 0), step("j2", 0, epoch=7), step("j3", 0), step("missing", 0)]
        results = await asyncio.gather(
            *(store.append_step(record, events=[{"seq": 100, "type": "step", "index": 0}]) for record in records),
            return_exceptions=True,
        )
        assert store.batches == batches + 1  # all five in one batch
        assert results[0] is None and results[3] is None
        assert isinstance(results[1], StaleOwnerError) and "journaled" in str(results[1])
        assert isinstance(results[2], StaleOwnerError) and "another worker" in str(results[2])
        assert isinstance(results[4], JobNotFound)
        for job_id, logged in (("j0", True), ("j1", False), ("j2", False), ("j3", True)):
            assert [event["seq"] for event in await store.read_events(job_id)] == ([100] if logged else [])
        assert [record.index for record in await store.read_steps("j2")] == []
    finally:
        await store.close()


async def test_writes_of_one_job_queued_together_keep_their_order(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        job = await running_job(store, "a")
        done = job.evolve(status=JobStatus.COMPLETED, result="ok")
        # queued in one batch with other jobs' writes: a's steps go before its completion, as they were queued
        results = await asyncio.gather(
            store.append_step(step("a", 0)),
            store.create(make_job("b")),
            store.append_step(step("a", 1)),
            store.save(done, expected_version=job.version),
            store.create(make_job("c")),
            store.save(done.evolve(result="again"), expected_version=job.version),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[3], type(done)) and results[3].steps == 2
        assert isinstance(results[5], VersionConflict)
        stored = await store.get("a")
        assert stored is not None and (stored.status, stored.result) == (JobStatus.COMPLETED, "ok")
        assert {await store.get("b") is not None, await store.get("c") is not None} == {True}
    finally:
        await store.close()


async def test_a_job_saved_claimable_with_no_owner_wakes_waiting_workers(postgres_url: str) -> None:
    """The NOTIFY that a save sends (from its own statement) reaches another store's ``wait_for_work``; the
    wait's timeout is an hour, so without it the test times out."""
    waiting_store, writing_store = open_store(postgres_url), open_store(postgres_url)
    try:
        job = await running_job(writing_store, "job", agent="a")
        await waiting_store.wait_for_work("a", 0.001)  # sets up LISTEN
        work = asyncio.ensure_future(waiting_store.wait_for_work("a", 3600))
        await writing_store.save(
            job.evolve(status=JobStatus.PENDING, owner=None, lease_until=None), expected_version=job.version
        )
        await work
        claimed = await waiting_store.claim("job", "w2", lease_until=NOW.replace(year=NOW.year + 1), now=NOW)
        assert claimed is not None and claimed.owner == "w2"
    finally:
        await waiting_store.close()
        await writing_store.close()


async def test_a_store_with_a_pool_of_two_writes_without_holding_a_connection(postgres_url: str) -> None:
    """With room for only the listener's connection and one more, the writer takes a connection from the
    pool for each batch (holding one would leave reads none)."""
    schema = postgres_url.rpartition("schema=")[2]
    store = PostgresStore(postgres_url.partition("?")[0], schema=schema, min_size=1, max_size=2)

    async def twice(text: str) -> str:
        return text * 2

    try:
        await store.wait_for_work("twice", 0.001)  # the listener holds one of the two from now on
        async with DurableAgent(twice, store) as durable:
            jobs = await asyncio.gather(*(durable.run(f"job-{n}", f"x{n}") for n in range(5)))
        assert [(job.status, job.result) for job in jobs] == [(JobStatus.COMPLETED, f"x{n}x{n}") for n in range(5)]
        stored = await store.get("job-4")
        assert stored is not None and stored.result == "x4x4"
    finally:
        await store.close()


async def test_two_stores_on_one_schema_see_each_others_jobs_and_migrate_once(postgres_url: str) -> None:
    first, second = open_store(postgres_url), open_store(postgres_url)
    try:
        # both migrate at once: the advisory lock lets one create the tables and the other find them
        await asyncio.gather(first.get("x"), second.get("x"))
        async with Client(first) as client:
            created = await client.submit("job-1", "in", agent="a")
        assert await second.get("job-1") == created
    finally:
        await first.close()
        await second.close()


async def test_finished_jobs_expire_after_ttl_seconds_of_the_runtimes_clock(postgres_url: str) -> None:
    """A job is deleted ``ttl_seconds`` after it ended by the clock the runtime was given: on a FakeClock
    it stays until the clock has moved past its ttl (the machine's wall clock, later than the FakeClock's
    start, never enters)."""
    schema = postgres_url.rpartition("schema=")[2]
    base = postgres_url.partition("?")[0]
    store = PostgresStore(base, schema=schema, ttl_seconds=60)
    clock = FakeClock()

    async def echo(text: str, ctx: JobContext) -> str:
        return await ctx.step("echo", str.upper, text)

    try:
        async with DurableAgent(echo, store, clock=clock) as durable:
            await durable.run("old", "x")
            await durable.run("same-moment", "y")  # its write could run the delete: "old" has not expired
            assert await store.get("old") is not None
            assert len(await store.read_steps("old")) == 1
            await clock.advance(61)
            await durable.run("new", "z")
            assert await store.get("old") is None
            assert await store.read_steps("old") == []
            assert await store.get("same-moment") is None
            assert await store.get("new") is not None
    finally:
        await store.close()


async def test_two_schedulers_on_one_postgres_create_one_job_per_tick(postgres_url: str) -> None:
    first, second = open_store(postgres_url), open_store(postgres_url)
    try:
        created = await run_two_schedulers(first, second, 60)
    finally:
        await first.close()
        await second.close()
    assert created == sorted(fire_job_id("tick", START + timedelta(seconds=s)) for s in range(1, 61))


async def test_notify_wakes_a_waiting_worker_and_lease_keeper_at_once(postgres_url: str) -> None:
    """``wait_for_work`` and ``wait_for_control`` return on NOTIFY from another store's write, long before
    their timeout (an hour: without the notification the test times out)."""
    waiting_store, writing_store = open_store(postgres_url), open_store(postgres_url)
    try:
        await waiting_store.wait_for_control(0.001)
        # a first short wait sets up LISTEN; a notification from then on is kept until it is awaited
        await waiting_store.wait_for_work("a", 0.001)
        async with Client(writing_store) as client:
            work = asyncio.ensure_future(waiting_store.wait_for_work("a", 3600))
            await client.submit("job", "x", agent="a")
            await work
            control = asyncio.ensure_future(waiting_store.wait_for_control(3600))
            # what a pause of a job running in another process leaves for its owner
            await writing_store.request_control(ControlRequest("job", ControlKind.PAUSE, utcnow()))
            await control
    finally:
        await waiting_store.close()
        await writing_store.close()


async def _submit(url: str, count: int) -> None:
    async with Client(open_store(url)) as client:
        for index in range(count):
            await client.submit(f"job-{index:03d}", f"in{index}", agent="crash")


async def _wait_all(url: str, count: int) -> dict[str, tuple[JobStatus, object, int]]:
    async with Client(open_store(url), poll_interval=0.2) as client:
        jobs: dict[str, tuple[JobStatus, object, int]] = {}
        for index in range(count):
            job = await client.wait(f"job-{index:03d}", timeout=240)
            jobs[job.id] = (job.status, job.result, job.steps)
        return jobs


def _check(jobs: dict[str, tuple[JobStatus, object, int]], count: int) -> None:
    assert len(jobs) == count
    for index in range(count):
        assert jobs[f"job-{index:03d}"] == (JobStatus.COMPLETED, expected_result(f"in{index}"), STEPS)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_loses_nothing_and_reruns_no_journaled_step(
    postgres_url: str, tmp_path: Path
) -> None:
    count = 120
    fleet = Fleet(postgres_url, tmp_path / "side.db", concurrency=20, lease_ttl=2.0)
    asyncio.run(_submit(postgres_url, count))
    rng = random.Random(4321)
    killed: set[int] = set()
    try:
        target = 0
        for _ in range(3):
            worker = fleet.start("crash-worker")  # the same worker id: reclaims its jobs at once
            target += rng.randint(50, 150)
            fleet.wait_for_executions(target)
            worker.kill()
            killed.add(worker.pid)
        final = fleet.start("crash-worker")
        jobs = asyncio.run(_wait_all(postgres_url, count))
        assert final.terminate() == 0
    finally:
        fleet.stop_all()
    _check(jobs, count)
    report = audit(fleet.executions(), killed)
    assert report.unexplained_reruns == []
    assert report.two_owners == []
    journals = asyncio.run(read_journals(postgres_url, [f"job-{index:03d}" for index in range(count)]))
    assert stale_commits(fleet.rows("ran"), journals) == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_three_workers_one_killed_and_replaced(postgres_url: str, tmp_path: Path) -> None:
    count = 150
    fleet = Fleet(postgres_url, tmp_path / "side.db", concurrency=20, lease_ttl=2.0, step_delay=0.05)
    asyncio.run(_submit(postgres_url, count))
    try:
        workers = [fleet.start(f"worker-{n}") for n in range(3)]
        victim = workers[1]
        fleet.wait_for_executions(20, pid=victim.pid)
        victim.kill()
        fleet.start("worker-3")  # a replacement joins
        jobs = asyncio.run(_wait_all(postgres_url, count))
        for worker in fleet.workers:
            if not worker.killed:
                assert worker.terminate() == 0
    finally:
        fleet.stop_all()
    _check(jobs, count)
    report = audit(fleet.executions(), {victim.pid})
    assert report.unexplained_reruns == []
    assert report.two_owners == []
    pids = {row[2] for row in fleet.executions()}
    assert victim.pid in pids  # the killed worker had jobs (the others, its replacement among them, finished them)
