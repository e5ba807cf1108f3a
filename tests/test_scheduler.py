"""Scheduled jobs: cron parsing, DST, overlap and catch-up policies, several schedulers, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durapod import DurableAgent, JobStatus, MemoryStore, RedisStore, SQLiteStore, Store
from durapod.schedules import CronSchedule, fire_job_id
from durapod.testing import FakeClock

START = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Let the event loop run until ``condition()`` holds.

    The schedulers' clock is fake, but SQLite and Redis answer in real time (their own threads and
    sockets), so this waits on the real clock, with a generous bound for a busy machine.
    """
    try:
        async with asyncio.timeout(timeout):
            while not await condition():  # noqa: ASYNC110 - the store offers nothing to wait on
                await asyncio.sleep(0.0005)
    except TimeoutError:
        raise AssertionError("condition not reached") from None


async def scheduled_ids(store: Store, schedule: str = "tick") -> list[str]:
    page = await store.list(metadata={"schedule": schedule})
    return sorted(job.id for job in page.jobs)


async def tick(clock: FakeClock, durable: DurableAgent, seconds: float = 1.0) -> None:
    """Advance the fake clock and let the scheduler finish the tick (its state records the next fire)."""
    await clock.advance(seconds)
    now = clock.utcnow()

    async def settled() -> bool:
        states = await durable.schedules()
        return all(state.paused or (state.next_fire is not None and state.next_fire > now) for state in states)

    await until(settled)
    for _ in range(50):
        await asyncio.sleep(0)


def test_invalid_cron_and_timezone_raise_value_error_naming_them() -> None:
    async def agent(text: str) -> str:
        return text

    with pytest.raises(ValueError, match="'61 \\* \\* \\* \\*'"):
        DurableAgent(agent, MemoryStore(), schedule="61 * * * *")
    with pytest.raises(ValueError, match="'Mars/Olympus'"):
        DurableAgent(agent, MemoryStore(), schedule="@hourly", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="invalid cron expression 'every day'"):
        CronSchedule("every day")


def test_fire_times_across_dst_changes_in_paris() -> None:
    daily = CronSchedule("30 2 * * *", "Europe/Paris")
    spring = daily.fires_between(datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
    # 02:30 does not exist on 29 March: it fires at 03:00 local (01:00 UTC), once.
    assert spring == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    autumn = daily.fires_between(datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 27, tzinfo=UTC))
    # 02:30 happens twice on 25 October: a daily job fires once.
    assert autumn == [
        datetime(2026, 10, 24, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]
    hourly = CronSchedule("0 * * * *", "Europe/Paris")
    hours = hourly.fires_between(datetime(2026, 10, 24, 23, 30, tzinfo=UTC), datetime(2026, 10, 25, 2, 30, tzinfo=UTC))
    # an hourly job fires in both 02:00 hours: they are different hours
    assert hours == [datetime(2026, 10, 25, h, 0, tzinfo=UTC) for h in range(3)]
    assert CronSchedule("@hourly").next_after(START) == START + timedelta(hours=1)
    seconds = CronSchedule("*/15 * * * * *")
    assert seconds.next_after(START) == START + timedelta(seconds=15)
    assert fire_job_id("nightly", datetime(2026, 1, 5, 8, tzinfo=UTC)) == "nightly:2026-01-05T08:00:00Z"


@pytest.mark.parametrize(
    ("overlap", "expected_jobs"),
    [("skip", 1), ("allow", 5), ("queue", 5)],
)
async def test_every_second_schedule_with_a_slow_agent(overlap: str, expected_jobs: int) -> None:
    clock = FakeClock(START)
    release = asyncio.Event()
    running = 0
    peak = 0

    async def slow(text: str) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return text

    store = MemoryStore()
    async with DurableAgent(slow, store, name="slow", clock=clock) as durable:
        await durable.schedule("tick", "* * * * * *", overlap=overlap)  # type: ignore[arg-type]
        durable.start_scheduler()
        for _ in range(5):
            await tick(clock, durable)
        created = await scheduled_ids(store)
        if overlap == "skip":
            assert len(created) == 1
        elif overlap == "allow":
            assert len(created) == 5
            assert peak == 5
        else:
            assert len(created) == 1  # the other four wait in the schedule's queue
            (state,) = await durable.schedules()
            assert len(state.queued) == 4
        release.set()
        for _ in range(8):
            await tick(clock, durable)
        await durable.stop_scheduler()
        jobs = [await durable.wait(job_id, timeout=5) for job_id in await scheduled_ids(store)]
    if overlap == "queue":
        first_five = sorted(jobs, key=lambda job: job.id)[:5]
        assert peak == 1  # never two at once
        assert [job.metadata["fire_time"] for job in first_five] == [
            (START + timedelta(seconds=s)).isoformat() for s in range(1, 6)
        ]
    assert all(job.status is JobStatus.COMPLETED for job in jobs)
    first_ticks = [(START + timedelta(seconds=s)).isoformat() for s in range(1, 6)]
    assert len([job for job in jobs if job.metadata["fire_time"] in first_ticks]) == expected_jobs


@pytest.mark.parametrize(("catch_up", "expected_missed"), [("none", 0), ("latest", 1), ("all", 9)])
async def test_catch_up_after_a_ten_tick_outage(catch_up: str, expected_missed: int) -> None:
    clock = FakeClock(START)

    async def agent(text: str) -> str:
        return text

    store = MemoryStore()
    async with DurableAgent(agent, store, name="catch", clock=clock) as durable:
        await durable.schedule("tick", "* * * * * *", catch_up=catch_up, overlap="allow")  # type: ignore[arg-type]
        durable.start_scheduler()
        await tick(clock, durable)
        before = await scheduled_ids(store)
        assert before == [fire_job_id("tick", START + timedelta(seconds=1))]
        await durable.stop_scheduler()
        await clock.advance(10.0)  # ten ticks while no scheduler runs
        durable.start_scheduler()
        await tick(clock, durable, 0.0)
        after = await scheduled_ids(store)
    new = sorted(set(after) - set(before))
    on_time = fire_job_id("tick", START + timedelta(seconds=11))  # the tick that is due right now
    assert on_time in new
    missed = [job_id for job_id in new if job_id != on_time]
    assert len(missed) == expected_missed
    if catch_up == "latest":
        assert missed == [fire_job_id("tick", START + timedelta(seconds=10))]


async def run_two_schedulers(store_a: Store, store_b: Store, ticks: int) -> list[str]:
    clock = FakeClock(START)

    async def agent(text: str) -> str:
        return text

    first = DurableAgent(agent, store_a, name="shared", clock=clock, worker_id="a")
    second = DurableAgent(agent, store_b, name="shared", clock=clock, worker_id="b")
    async with first, second:
        # overlap "allow": every tick must make its job even if the previous one is still running;
        # catch_up "all": a tick the fake clock jumps past before a busy scheduler reaches it still fires
        await first.schedule("tick", "* * * * * *", overlap="allow", catch_up="all")
        await second.schedule("tick", "* * * * * *", overlap="allow", catch_up="all")
        first.start_scheduler()
        second.start_scheduler()
        for _ in range(ticks):
            await tick(clock, first)
        await first.stop_scheduler()
        await second.stop_scheduler()
        return await scheduled_ids(store_a)


async def test_two_schedulers_on_one_store_create_one_job_per_tick() -> None:
    store = MemoryStore()
    created = await run_two_schedulers(store, store, 100)
    assert created == sorted(fire_job_id("tick", START + timedelta(seconds=s)) for s in range(1, 101))


async def test_a_scheduler_restart_in_the_middle_of_a_tick_neither_loses_nor_repeats_it() -> None:
    clock = FakeClock(START)
    entered = asyncio.Event()
    block = True
    calls: list[datetime] = []

    async def on_schedule(fire_time: datetime) -> str:
        calls.append(fire_time)
        if block:
            entered.set()
            await asyncio.Event().wait()  # the scheduler is stopped while it waits here
        return fire_time.isoformat()

    async def agent(text: str) -> str:
        return text

    store = MemoryStore()
    async with DurableAgent(agent, store, name="r", clock=clock) as durable:
        await durable.schedule("tick", "*/10 * * * * *", on_schedule)
        durable.start_scheduler()
        await clock.advance(10.0)
        await asyncio.wait_for(entered.wait(), 5)
        await durable.stop_scheduler()  # mid-tick: on_schedule started, the job is not created yet
        assert await scheduled_ids(store) == []
        block = False
        durable.start_scheduler()
        await tick(clock, durable, 0.5)
        assert await scheduled_ids(store) == [fire_job_id("tick", START + timedelta(seconds=10))]
        await durable.stop_scheduler()  # after the tick: restarting again must not repeat it
        durable.start_scheduler()
        await tick(clock, durable, 0.2)
        assert await scheduled_ids(store) == [fire_job_id("tick", START + timedelta(seconds=10))]
        job = await durable.wait(fire_job_id("tick", START + timedelta(seconds=10)), timeout=5)
    assert job.input == (START + timedelta(seconds=10)).isoformat()


async def test_on_schedule_failures_are_recorded_and_do_not_stop_the_scheduler() -> None:
    clock = FakeClock(START)
    calls = 0

    def on_schedule() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("upstream down")
        return "ok"

    async def agent(text: str) -> str:
        return text

    store = MemoryStore()
    async with DurableAgent(agent, store, name="f", clock=clock, schedule="* * * * * *", on_schedule=on_schedule) as d:
        d.start_scheduler()
        d.start_scheduler()  # idempotent
        await tick(clock, d)
        (state,) = await d.schedules()
        assert state.name == "default"
        assert state.last_error == "RuntimeError: upstream down"
        await tick(clock, d)
        (state,) = await d.schedules()
        assert state.last_error is None
        assert await scheduled_ids(store, "default") == [fire_job_id("default", START + timedelta(seconds=2))]
        await d.stop_scheduler()


async def test_named_schedules_are_listed_paused_resumed_and_removed() -> None:
    clock = FakeClock(START)

    async def agent(text: str) -> str:
        return text

    store = MemoryStore()
    async with DurableAgent(agent, store, name="n", clock=clock) as durable:
        await durable.schedule("tick", "* * * * * *")
        await durable.schedule("hourly", "@hourly", timezone="Europe/Paris")
        names = [state.name for state in await durable.schedules()]
        assert names == ["hourly", "tick"]
        hourly = next(state for state in await durable.schedules() if state.name == "hourly")
        assert hourly.next_fire == START + timedelta(hours=1)
        durable.start_scheduler()
        await durable.pause_schedule("tick")
        await tick(clock, durable)
        await tick(clock, durable)
        assert await scheduled_ids(store) == []
        await durable.resume_schedule("tick")
        await tick(clock, durable)
        assert await scheduled_ids(store) == [fire_job_id("tick", START + timedelta(seconds=3))]
        assert await durable.remove_schedule("tick")
        assert not await durable.remove_schedule("tick")
        await tick(clock, durable)
        assert len(await scheduled_ids(store)) == 1
        with pytest.raises(KeyError):
            await durable.pause_schedule("tick")
        with pytest.raises(ValueError, match="invalid overlap policy 'sometimes'"):
            await durable.schedule("x", "@hourly", overlap="sometimes")  # type: ignore[arg-type]
        await durable.stop_scheduler()
        assert not durable.is_scheduling


async def test_two_schedulers_on_one_sqlite_file_create_one_job_per_tick(tmp_path: Path) -> None:
    first, second = SQLiteStore(tmp_path / "jobs.db"), SQLiteStore(tmp_path / "jobs.db")
    try:
        created = await run_two_schedulers(first, second, 100)
    finally:
        await first.close()
        await second.close()
    assert created == sorted(fire_job_id("tick", START + timedelta(seconds=s)) for s in range(1, 101))


@pytest.mark.redis
async def test_two_schedulers_on_one_redis_create_one_job_per_tick(redis_url: str) -> None:
    first, second = RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)
    try:
        created = await run_two_schedulers(first, second, 100)
    finally:
        await first.close()
        await second.close()
    assert created == sorted(fire_job_id("tick", START + timedelta(seconds=s)) for s in range(1, 101))
