"""Store faults while jobs run (issue 11): nothing re-run, nothing stuck, callers never hang.

The SQLite faults are real: another connection to the job file installs a trigger that makes SQLite
itself refuse the chosen writes (``RAISE(ABORT, ...)``, what the store sees as an I/O error), and drops it
to end the fault. The Redis faults are a real ``redis-server`` stopped and started again, and its
clients' connections killed with ``CLIENT KILL``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pytest_redis.executor import RedisExecutor
from redis import Redis as SyncRedis

from durapod import (
    DurableAgent,
    DurapodError,
    JobContext,
    JobStatus,
    MemoryStore,
    SQLiteStore,
    StoreError,
    StoreUnavailable,
)
from durapod.lowlevel.clock import SystemClock
from durapod.stores.redis import RedisStore
from tests.redis_fixtures import require_redis

WAIT = 30.0
ROOT = Path(__file__).resolve().parent.parent
FSIZE_WORKER = ROOT / "tests" / "workers" / "fsize_worker.py"


class LogWatch(logging.Handler):
    """Sets an event when the ``durapod`` logger emits a record whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.seen = asyncio.Event()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self.seen.set()


@pytest.fixture
def watch_logs() -> Iterator[list[LogWatch]]:
    watches: list[LogWatch] = []
    logger = logging.getLogger("durapod")
    yield watches
    for watch in watches:
        logger.removeHandler(watch)


def watch(watches: list[LogWatch], text: str) -> LogWatch:
    handler = LogWatch(text)
    logging.getLogger("durapod").addHandler(handler)
    watches.append(handler)
    return handler


def refuse(db: Path, name: str, when: str) -> None:
    """Make SQLite refuse writes to the job file (a trigger named ``name``) until :func:`allow`."""
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, 'disk I/O error (injected)'); END")


def allow(db: Path, name: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TRIGGER {name}")


# -- defect 1: a journaled step never runs again after a failed store write --------------------------


async def test_a_failed_write_of_a_failure_reloads_the_journal_and_never_reruns_a_step(
    tmp_path: Path, watch_logs: list[LogWatch]
) -> None:
    """The agent fails after step ``a`` is journaled; writing that failure hits a store error that is not
    "unavailable". The restarted actor reads the job and its journal from the store: ``a`` never runs
    again, the retry completes the job, and ``run()`` returns."""
    db = tmp_path / "jobs.db"
    ran: Counter[str] = Counter()

    async def step_a() -> str:
        ran["a"] += 1
        return "a-done"

    async def agent(text: str, ctx: JobContext) -> str:
        first = await ctx.step("a", step_a)
        if ctx.attempt == 1:
            raise RuntimeError("the model timed out")
        return f"{first}:{text}"

    crashed = watch(watch_logs, "the supervisor restarts the job's actor")
    async with DurableAgent(agent, SQLiteStore(db), retry_delay=0.0, jitter=0.0) as durable:
        await durable.start("warm", "x")  # creates the schema
        await durable.wait("warm", timeout=WAIT)
        ran.clear()
        # the job's failure (its pending retry) cannot be written until the fault ends
        refuse(db, "no_retry", "BEFORE UPDATE OF status ON jobs WHEN NEW.status = 'pending'")
        run = asyncio.create_task(durable.run("j", "x"))
        async with asyncio.timeout(WAIT):
            await crashed.seen.wait()
            while crashed.count < 2:  # restarted once, and failed again: the fault is still there
                crashed.seen.clear()
                await crashed.seen.wait()
        allow(db, "no_retry")
        job = await asyncio.wait_for(run, WAIT)
    assert job.status is JobStatus.COMPLETED
    assert job.result == "a-done:x"
    assert ran["a"] == 1  # journaled once, replayed by every later execution
    assert job.attempts == 2


async def test_a_step_whose_journal_write_fails_does_not_fail_the_job(
    tmp_path: Path, watch_logs: list[LogWatch]
) -> None:
    """Journaling step ``b`` hits a store error: that is the store's failure, not the agent's. The actor
    restarts from the store (``a`` is not run again, ``b`` runs again as it was never journaled), the
    attempt is not counted against ``max_retries``, and the job completes once the fault ends."""
    db = tmp_path / "jobs.db"
    ran: Counter[str] = Counter()

    async def work(name: str) -> str:
        ran[name] += 1
        return f"{name}-done"

    async def agent(text: str, ctx: JobContext) -> str:
        a = await ctx.step("a", work, "a")
        b = await ctx.step("b", work, "b")
        return f"{a}:{b}"

    crashed = watch(watch_logs, "store failed")
    async with DurableAgent(agent, SQLiteStore(db), max_retries=0) as durable:
        await durable.start("warm", "x")
        await durable.wait("warm", timeout=WAIT)
        ran.clear()
        refuse(db, "no_b", "BEFORE INSERT ON steps WHEN NEW.idx = 1")
        run = asyncio.create_task(durable.run("j", "x"))
        async with asyncio.timeout(WAIT):
            await crashed.seen.wait()
        allow(db, "no_b")
        job = await asyncio.wait_for(run, WAIT)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.result == "a-done:b-done"
    assert ran["a"] == 1
    assert ran["b"] >= 2
    assert job.attempts == 1
    # the number the refused step's event had is given back: the log has no gap, one step event each
    store = SQLiteStore(db)
    logged = await store.read_events("j")
    await store.close()
    assert [event["seq"] for event in logged] == list(range(len(logged)))
    assert [event["name"] for event in logged if event["type"] == "step"] == ["a", "b"]


async def test_a_pause_asked_for_while_a_step_cannot_be_journaled_is_carried_out(tmp_path: Path) -> None:
    """A pause waits for the step in flight; that step's journal write then fails. The pause is not lost
    with the failed execution: the job ends paused, and resuming it runs the step again to completion."""
    db = tmp_path / "jobs.db"
    in_step, finish = asyncio.Event(), asyncio.Event()
    ran: Counter[str] = Counter()

    async def slow() -> str:
        ran["slow"] += 1
        in_step.set()
        await finish.wait()
        return "done"

    async def agent(text: str, ctx: JobContext) -> str:
        return await ctx.step("slow", slow)

    async with DurableAgent(agent, SQLiteStore(db), pause_timeout=WAIT) as durable:
        run = asyncio.create_task(durable.run("j", "x"))
        await asyncio.wait_for(in_step.wait(), WAIT)
        refuse(db, "no_steps", "BEFORE INSERT ON steps")
        await durable.pause("j", wait=False)  # told to the actor: it waits for the step in flight
        finish.set()
        assert (await asyncio.wait_for(run, WAIT)).status is JobStatus.PAUSED
        allow(db, "no_steps")
        resumed = await durable.resume("j", timeout=WAIT)
    assert resumed.status is JobStatus.COMPLETED
    assert resumed.result == "done"
    assert ran["slow"] == 2  # its first result was never journaled


def test_a_file_size_limit_on_the_sqlite_file_fails_no_job_and_reruns_no_journaled_step(tmp_path: Path) -> None:
    """A real fault: a worker process whose files may not grow (``RLIMIT_FSIZE``), so every SQLite write
    fails with a full disk while its jobs run, until the limit is lifted. Every job completes, and no
    step that was journaled runs again (each step looks in the journal before it does its work)."""
    completed = subprocess.run(
        [sys.executable, str(FSIZE_WORKER), str(tmp_path / "jobs.db"), "20"],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["statuses"] == ["completed"] * 20
    assert report["reruns"] == []
    assert all(report["executions"][f"j{n:02d}:{name}"] == 1 for n in range(20) for name in ("a", "c"))
    assert all(report["executions"][f"j{n:02d}:b"] >= 2 for n in range(20))  # the fault did hit step b


# -- defects 4 and 3: writes refused for longer than a lease; no caller hangs ------------------------

READ_ONLY = {
    "ro_jobs": "BEFORE UPDATE ON jobs",
    "ro_new_jobs": "BEFORE INSERT ON jobs",
    "ro_steps": "BEFORE INSERT ON steps",
    "ro_events": "BEFORE INSERT ON events",
    "ro_workers": "BEFORE UPDATE ON workers",
}


class GatedSteps:
    """An agent that journals step "a", waits at ``gate``, then journals step "b"; ``ran`` counts each
    step's executions per job, and ``journaled`` is set once every job's step "a" is journaled."""

    def __init__(self, jobs: list[str]) -> None:
        self.jobs = jobs
        self.ran: Counter[tuple[str, str]] = Counter()
        self.gate, self.journaled = asyncio.Event(), asyncio.Event()
        self._past_a: set[str] = set()

    async def work(self, job_id: str, name: str) -> str:
        self.ran[job_id, name] += 1
        return name

    async def agent(self, text: str, ctx: JobContext) -> str:
        a = await ctx.step("a", self.work, ctx.job_id, "a")
        self._past_a.add(ctx.job_id)
        if len(self._past_a) == len(self.jobs):
            self.journaled.set()  # every job's step a is journaled
        await self.gate.wait()
        b = await ctx.step("b", self.work, ctx.job_id, "b")
        return a + b


async def test_writes_refused_beyond_the_lease_then_every_job_finishes_and_no_step_reruns(
    tmp_path: Path, watch_logs: list[LogWatch]
) -> None:
    """Every write fails (as on a file made immutable) for longer than the lease: the lease keeper stops
    the job actors; once the file takes writes again the same worker takes its jobs back, every job
    completes, ``run()`` returns, and no journaled step ran twice. A new job asked for during the fault
    gets the store's error at once."""
    db = tmp_path / "jobs.db"
    jobs = [f"j{n}" for n in range(4)]
    steps = GatedSteps(jobs)
    ran, gate, journaled, agent = steps.ran, steps.gate, steps.journaled, steps.agent

    stopped = watch(watch_logs, "lease renewal keeps failing")
    async with DurableAgent(agent, SQLiteStore(db), lease_ttl=0.6, max_retries=0) as durable:
        runs = [asyncio.create_task(durable.run(job_id, "x")) for job_id in jobs]
        await asyncio.wait_for(journaled.wait(), WAIT)
        for name, when in READ_ONLY.items():
            refuse(db, name, when)
        gate.set()  # step b now runs and cannot be journaled
        await asyncio.wait_for(stopped.seen.wait(), WAIT)
        with pytest.raises(StoreError):
            await durable.run("during", "x")
        assert not any(run.done() for run in runs)
        for name in READ_ONLY:
            allow(db, name)
        done = await asyncio.wait_for(asyncio.gather(*runs), WAIT)
    assert [job.status for job in done] == [JobStatus.COMPLETED] * len(jobs)
    assert all(ran[job_id, "a"] == 1 for job_id in jobs), ran
    assert all(job.attempts == 1 for job in done)


# -- Redis: a private redis-server per test, stopped, started again, its clients killed --------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisExecutor]:
    """A redis-server of this test alone (with an append-only file, so that a restart keeps every job)."""
    require_redis()
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisExecutor(
        "redis-server",
        databases=1,
        redis_timeout=30,
        loglevel="warning",
        host="127.0.0.1",
        port=free_port(),
        appendonly="yes",
        datadir=data,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def url_of(server: RedisExecutor) -> str:
    return f"redis://{server.host}:{server.port}/0"


class LoopErrors:
    """Records what the event loop's exception handler gets ("Task exception was never retrieved")."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, object]] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        self.contexts.append(context)
        loop.default_exception_handler(context)


@pytest.mark.redis
async def test_connections_killed_again_and_again_fail_no_job_and_kill_no_task(own_redis: RedisExecutor) -> None:
    """``CLIENT KILL TYPE normal`` every 20 ms while jobs run: redis-py then raises connection errors
    (and ``AttributeError`` when the connection is torn down mid-send). The store treats every one as
    "unavailable" and its pipeline keeps going: every job completes, each step runs once, and no task dies
    with an exception nobody retrieves."""
    loop = asyncio.get_running_loop()
    errors = LoopErrors()
    loop.set_exception_handler(errors)
    ran: Counter[tuple[str, int]] = Counter()
    jobs = [f"j{n:02d}" for n in range(40)]

    async def work(job_id: str, index: int) -> int:
        ran[job_id, index] += 1
        await asyncio.sleep(0.005)  # the step's own work: the kills land while steps are journaled
        return index

    async def agent(text: str, ctx: JobContext) -> int:
        total = 0
        for index in range(4):
            total += await ctx.step(f"s{index}", work, ctx.job_id, index)
        return total

    stop = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        with SyncRedis(host=own_redis.host, port=own_redis.port) as admin:
            while not stop.wait(0.02):
                kills += int(admin.execute_command("CLIENT", "KILL", "TYPE", "normal"))

    store = RedisStore.from_url(url_of(own_redis))
    thread = threading.Thread(target=killer, name="client-killer")
    try:
        async with DurableAgent(agent, store, max_retries=0) as durable:
            thread.start()
            done = await asyncio.wait_for(asyncio.gather(*(durable.run(job_id, "x") for job_id in jobs)), WAIT)
            stop.set()
            thread.join()
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        await store.close()
        gc.collect()  # an unretrieved task exception is reported when its task is collected
        await asyncio.sleep(0)
        loop.set_exception_handler(None)
    assert kills > 0
    assert [job.status for job in done] == [JobStatus.COMPLETED] * len(jobs), [job.error for job in done]
    assert all(count == 1 for count in ran.values()), [key for key, count in ran.items() if count > 1]
    assert errors.contexts == []


@pytest.mark.redis
async def test_a_connection_killed_mid_send_is_unavailable_and_the_store_goes_on(own_redis: RedisExecutor) -> None:
    """Many calls in flight while their connection is killed over and over: each call either succeeds or
    raises ``StoreUnavailable`` (never another ``StoreError``, never "closed"), and once the kills stop
    the same store serves every call."""
    loop = asyncio.get_running_loop()
    errors = LoopErrors()
    loop.set_exception_handler(errors)
    store = RedisStore.from_url(url_of(own_redis))
    failures: Counter[str] = Counter()
    stop = threading.Event()

    def killer() -> None:
        with SyncRedis(host=own_redis.host, port=own_redis.port) as admin:
            while not stop.wait(0.002):
                admin.execute_command("CLIENT", "KILL", "TYPE", "normal")

    async def caller() -> None:
        for _ in range(40):
            try:
                await store.get("nothing")
            except StoreError as exc:
                failures[type(exc).__name__ if isinstance(exc, StoreUnavailable) else repr(exc)] += 1

    thread = threading.Thread(target=killer, name="client-killer")
    thread.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(200))), WAIT)
    finally:
        stop.set()
        thread.join()
    try:
        assert await asyncio.gather(*(store.get("nothing") for _ in range(100))) == [None] * 100
    finally:
        await store.close()
        gc.collect()
        await asyncio.sleep(0)
        loop.set_exception_handler(None)
    assert failures["StoreUnavailable"] > 0  # the kills did land
    assert set(failures) == {"StoreUnavailable"}, failures
    assert errors.contexts == []


@pytest.mark.redis
async def test_after_an_outage_longer_than_the_lease_the_worker_takes_its_jobs_back(
    own_redis: RedisExecutor, watch_logs: list[LogWatch]
) -> None:
    """Redis is stopped for longer than 2/3 of the lease: the lease keeper stops the job actors (another
    worker could claim the jobs once the leases run out). When Redis is back, the live worker takes its
    own jobs back: ``run()`` returns every job completed, and no journaled step ran again."""
    jobs = [f"j{n}" for n in range(5)]
    steps = GatedSteps(jobs)
    ran, gate, journaled, agent = steps.ran, steps.gate, steps.journaled, steps.agent

    stopped = watch(watch_logs, "lease renewal keeps failing")
    store = RedisStore.from_url(url_of(own_redis))
    try:
        async with DurableAgent(agent, store, lease_ttl=0.9, max_retries=0) as durable:
            runs = [asyncio.create_task(durable.run(job_id, "x")) for job_id in jobs]
            await asyncio.wait_for(journaled.wait(), WAIT)
            own_redis.stop()  # a clean shutdown: the append-only file holds every acknowledged write
            await asyncio.wait_for(stopped.seen.wait(), WAIT)
            own_redis.start()
            gate.set()
            done = await asyncio.wait_for(asyncio.gather(*runs), WAIT)
    finally:
        await store.close()
    assert [job.status for job in done] == [JobStatus.COMPLETED] * len(jobs), [job.error for job in done]
    assert all(ran[job_id, "a"] == 1 and ran[job_id, "b"] == 1 for job_id in jobs), ran


@pytest.mark.redis
async def test_redis_out_of_memory_fails_new_calls_and_running_jobs_continue_after_it(
    own_redis: RedisExecutor, watch_logs: list[LogWatch]
) -> None:
    """``maxmemory`` with ``noeviction`` below what Redis holds: every write is refused with OOM, an error
    that is not "unavailable". A new ``run()`` gets the typed ``StoreError`` at once; the jobs already
    running wait (their actors restart from the store, then the lease keeper stops them) and complete once
    memory is allowed again, with no journaled step run twice."""
    ran: Counter[tuple[str, str]] = Counter()
    gate, journaled = asyncio.Event(), asyncio.Event()
    past_a: set[str] = set()
    jobs = [f"j{n}" for n in range(3)]

    async def work(job_id: str, name: str) -> str:
        ran[job_id, name] += 1
        return name

    async def agent(text: str, ctx: JobContext) -> str:
        a = await ctx.step("a", work, ctx.job_id, "a")
        past_a.add(ctx.job_id)
        if len(past_a) == len(jobs):
            journaled.set()  # every job's step a is journaled
        await gate.wait()
        b = await ctx.step("b", work, ctx.job_id, "b")
        return a + b

    restarted = watch(watch_logs, "the store failed while the job ran")
    stopped = watch(watch_logs, "lease renewal keeps failing")
    store = RedisStore.from_url(url_of(own_redis))
    admin = SyncRedis(host=own_redis.host, port=own_redis.port)
    try:
        async with DurableAgent(agent, store, lease_ttl=0.9, max_retries=0) as durable:
            runs = [asyncio.create_task(durable.run(job_id, "x")) for job_id in jobs]
            await asyncio.wait_for(journaled.wait(), WAIT)
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", "1")  # below what the server uses: every write is refused
            with pytest.raises(StoreError, match="maxmemory"):
                await durable.run("during", "x")
            gate.set()  # step b cannot be journaled now
            await asyncio.wait_for(restarted.seen.wait(), WAIT)
            await asyncio.wait_for(stopped.seen.wait(), WAIT)
            assert not any(run.done() for run in runs)
            admin.config_set("maxmemory", "0")
            done = await asyncio.wait_for(asyncio.gather(*runs), WAIT)
    finally:
        admin.close()
        await store.close()
    assert [job.status for job in done] == [JobStatus.COMPLETED] * len(jobs), [job.error for job in done]
    assert all(ran[job_id, "a"] == 1 for job_id in jobs), ran
    assert all(job.attempts == 1 for job in done)


# -- defect 11: a failed start leaves nothing running ------------------------------------------------


def other_tasks() -> set[asyncio.Task[object]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}


async def plain(text: str) -> str:
    return text


async def assert_failed_start_leaves_nothing(durable: DurableAgent, before: set[asyncio.Task[object]]) -> None:
    assert not durable.is_running
    assert other_tasks() - before == set()
    with pytest.raises(RuntimeError, match="not running"):
        await durable.start("after", "x")


async def test_a_start_that_fails_on_a_closed_store_leaves_nothing_running(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    await store.close()
    durable = DurableAgent(plain, store)
    before = other_tasks()
    with pytest.raises(StoreError):
        async with durable:
            pytest.fail("the worker started on a closed store")
    await assert_failed_start_leaves_nothing(durable, before)


async def test_a_start_whose_schedule_cannot_be_saved_leaves_nothing_running_and_can_start_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    store = SQLiteStore(db)
    async with DurableAgent(plain, store, name="warm"):
        pass  # creates the schema
    refuse(db, "no_schedules", "BEFORE INSERT ON schedules")
    durable = DurableAgent(plain, store, schedule="*/5 * * * *")
    before = other_tasks()
    with pytest.raises(StoreError):
        async with durable:
            pytest.fail("the worker started without its schedule")
    await assert_failed_start_leaves_nothing(durable, before)
    allow(db, "no_schedules")
    async with durable:  # a later start works cleanly
        assert durable.is_running
        job = await durable.run("later", "x")
        assert job.result == "x"
    assert not durable.is_running
    assert other_tasks() - before == set()
    await store.close()


async def test_a_cron_that_never_fires_is_refused_and_leaves_nothing_running() -> None:
    """``0 0 30 2 *`` (February 30th) never fires: refused when the agent is made, or at the latest when
    it starts; either way no worker is left running."""
    before = other_tasks()
    try:
        durable = DurableAgent(plain, MemoryStore(), schedule="0 0 30 2 *")
    except ValueError as exc:
        refused: str | None = str(exc)
    else:
        refused = None
    if refused is not None:
        assert "0 0 30 2 *" in refused
        return
    with pytest.raises((ValueError, DurapodError)):
        async with durable:
            pytest.fail("a schedule that never fires was accepted")
    await assert_failed_start_leaves_nothing(durable, before)


# -- defect 9: lease expiry judged on one clock -------------------------------------------------------


class SkewedClock(SystemClock):
    """The real clock, its wall-clock time ``offset`` seconds off (a host whose clock is wrong)."""

    def __init__(self, offset: float) -> None:
        self.offset = timedelta(seconds=offset)

    def utcnow(self) -> datetime:
        return super().utcnow() + self.offset


@pytest.mark.redis
@pytest.mark.parametrize(("runner_offset", "claimer_offset"), [(0.0, 45.0), (-45.0, 0.0)], ids=["ahead", "behind"])
async def test_workers_whose_clocks_differ_beyond_the_lease_never_both_run_a_step(
    redis_url: str, runner_offset: float, claimer_offset: float
) -> None:
    """Two workers of one agent on one Redis, their clocks 45 s apart with a 1 s lease: the one whose
    clock runs ahead must not take the job the other runs (its lease is alive on the server's clock), so
    the step runs once."""
    prefix = f"skew-{uuid.uuid4().hex[:8]}:"
    started, release = asyncio.Event(), asyncio.Event()
    ran: Counter[str] = Counter()

    async def slow(worker: str) -> str:
        ran["slow"] += 1
        started.set()
        await release.wait()
        return worker

    async def agent(text: str, ctx: JobContext) -> str:
        return await ctx.step("slow", slow, text)

    runner_store = RedisStore.from_url(redis_url, key_prefix=prefix)
    claimer_store = RedisStore.from_url(redis_url, key_prefix=prefix)
    runner = DurableAgent(agent, runner_store, name="skew", lease_ttl=1.0, clock=SkewedClock(runner_offset))
    claimer = DurableAgent(agent, claimer_store, name="skew", lease_ttl=1.0, clock=SkewedClock(claimer_offset))
    try:
        async with runner, claimer:
            run = asyncio.create_task(runner.run("j", "runner"))
            await asyncio.wait_for(started.wait(), WAIT)
            assert await claimer.recover() == 0  # the runner's lease is alive on the server's clock
            release.set()
            job = await asyncio.wait_for(run, WAIT)
    finally:
        await runner_store.close()
        await claimer_store.close()
    assert job.status is JobStatus.COMPLETED
    assert job.result == "runner"
    assert job.recoveries == 0
    assert ran["slow"] == 1


async def test_a_job_the_store_can_no_longer_read_gives_its_caller_the_error(
    tmp_path: Path, watch_logs: list[LogWatch]
) -> None:
    """The job's step cannot be journaled and its record cannot be read back (it was damaged in the
    file): the actor cannot go on, and ``run()`` raises the store's error instead of waiting forever."""
    db = tmp_path / "jobs.db"
    gate, running = asyncio.Event(), asyncio.Event()

    async def agent(text: str, ctx: JobContext) -> str:
        running.set()
        await gate.wait()
        return await ctx.step("a", plain, text)

    restarted = watch(watch_logs, "the store failed while the job ran")
    async with DurableAgent(agent, SQLiteStore(db)) as durable:
        run = asyncio.create_task(durable.run("j", "x"))
        await asyncio.wait_for(running.wait(), WAIT)
        refuse(db, "no_steps", "BEFORE INSERT ON steps")
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE jobs SET record = '{\"id\": \"j\"' WHERE id = 'j'")
        gate.set()
        await asyncio.wait_for(restarted.seen.wait(), WAIT)
        with pytest.raises(StoreError, match="j"):
            await asyncio.wait_for(run, WAIT)
