"""The store contract (``durapod/stores/base.py``): every store passes every test here.

The ``store`` fixture (``tests/conftest.py``) runs each contract test once per store kind. Tests at the
end of the file are about SQLiteStore alone: persistence, corrupt rows, several instances on one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import JsonValue

from durapod.errors import (
    CorruptRecord,
    InvalidInput,
    JobNotFound,
    StaleOwnerError,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)
from durapod.models import SETTLED, ControlKind, Job, JobStatus, StepRecord, utcnow
from durapod.schedules import ScheduleState
from durapod.stores import sqlite as sqlite_module
from durapod.stores._sqlite_schema import _MIGRATIONS
from durapod.stores.base import ControlRequest, Store, WorkerRecord, encode_cursor
from durapod.stores.sqlite import SQLiteStore

NOW = utcnow()
LIVE = NOW + timedelta(seconds=60)  # a lease that has not expired at NOW
EXPIRED = NOW - timedelta(seconds=60)  # a lease that expired before NOW
LATER = NOW + timedelta(seconds=600)
SETTLED_STATUSES = sorted(SETTLED)


def at(seconds: float) -> datetime:
    """A time ``seconds`` after NOW: distinct, increasing creation times for ordering tests."""
    return NOW + timedelta(seconds=seconds)


def make_job(job_id: str, *, created: float = 0.0, **fields: object) -> Job:
    return Job(id=job_id, created_at=at(created), updated_at=at(created), **fields)


def step(job_id: str, index: int, *, epoch: int = 1, result: JsonValue = None, name: str = "") -> StepRecord:
    return StepRecord(
        job_id=job_id, index=index, name=name or f"step-{index}", result=result, attempt=1, epoch=epoch, recorded_at=NOW
    )


async def running_job(
    store: Store,
    job_id: str,
    owner: str = "w1",
    *,
    lease_until: datetime = LIVE,
    created: float = 0.0,
    **fields: object,
) -> Job:
    """A job claimed by ``owner`` (epoch 1) and saved as running."""
    await store.create(make_job(job_id, created=created, **fields))
    claimed = await store.claim(job_id, owner, lease_until=lease_until, now=NOW)
    assert claimed is not None
    return await store.save(claimed.evolve(status=JobStatus.RUNNING), expected_version=claimed.version)


async def ids(store: Store, **filters: object) -> list[str]:
    page = await store.list(**filters)  # type: ignore[arg-type]
    return [job.id for job in page.jobs]


def test_the_stores_follow_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)


# -- create / get ---------------------------------------------------------------------------------------


async def test_create_stores_the_job_and_get_returns_it(store: Store) -> None:
    job = make_job("a", agent="triage", input={"ticket": 456}, metadata={"team": "support"})
    stored, created = await store.create(job)
    assert created is True
    assert stored == job
    assert await store.get("a") == job


async def test_create_of_an_existing_id_returns_the_stored_job_and_false(store: Store) -> None:
    first = make_job("a", input="first")
    await store.create(first)
    stored, created = await store.create(make_job("a", input="second", created=5))
    assert created is False
    assert stored == first
    assert (await store.get("a")) == first


async def test_create_with_a_status_seq_logs_the_created_job_only_when_it_is_created(store: Store) -> None:
    job = make_job("a", status=JobStatus.RUNNING, attempts=1, version=2, owner="w1", lease_until=LIVE, epoch=1)
    stored, created = await store.create(job, status_seq=0)
    assert created is True and stored == job
    logged = await store.read_events("a")
    assert [(event["type"], event["seq"], event["job_id"]) for event in logged] == [("job_status", 0, "a")]
    assert Job.model_validate(logged[0]["job"]) == job
    again, created = await store.create(make_job("a", input="other"), status_seq=0)
    assert created is False and again == job
    assert await store.read_events("a") == logged
    with pytest.raises(InvalidInput):
        await store.create(make_job("b"), status_seq="0")  # type: ignore[arg-type]
    assert await store.get("b") is None


async def test_get_of_a_missing_job_is_none(store: Store) -> None:
    assert await store.get("nope") is None


async def test_values_round_trip(store: Store) -> None:
    value: JsonValue = {"text": "héllo ✓ 日本", "n": 3, "x": 1.5, "ok": True, "none": None, "list": [1, [2, {"a": []}]]}
    job = make_job("a", input=value, metadata={"nested": value}, owner="w", lease_until=LIVE, epoch=3, attempts=2)
    await store.create(job)
    assert await store.get("a") == job


# -- save -------------------------------------------------------------------------------------------


async def test_save_with_the_right_version_writes_the_job(store: Store) -> None:
    job, _ = await store.create(make_job("a"))
    changed = job.evolve(status=JobStatus.PAUSED, waiting_for="approve?", inputs=["x"])
    saved = await store.save(changed, expected_version=0)
    assert saved == changed
    assert saved.version == 1
    assert await store.get("a") == saved
    again = await store.save(saved.evolve(status=JobStatus.CANCELLED), expected_version=1)
    assert (await store.get("a")) == again
    assert again.version == 2


async def test_save_with_a_stale_expected_version_is_a_conflict(store: Store) -> None:
    job, _ = await store.create(make_job("a"))
    winner = await store.save(job.evolve(input="winner"), expected_version=0)
    with pytest.raises(VersionConflict) as caught:
        await store.save(job.evolve(input="loser"), expected_version=0)
    assert (caught.value.job_id, caught.value.expected, caught.value.actual) == ("a", 0, 1)
    assert await store.get("a") == winner


@pytest.mark.parametrize("version", [0, 2, 5])
async def test_save_of_a_job_whose_version_is_not_expected_plus_one_is_a_conflict(store: Store, version: int) -> None:
    job, _ = await store.create(make_job("a"))
    with pytest.raises(VersionConflict):
        await store.save(job.model_copy(update={"version": version, "input": "x"}), expected_version=0)
    assert await store.get("a") == job


async def test_save_of_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound) as caught:
        await store.save(make_job("ghost").evolve(), expected_version=0)
    assert caught.value.job_id == "ghost"
    assert await store.get("ghost") is None


async def test_save_keeps_the_stored_lease_for_the_same_owner_and_epoch(store: Store) -> None:
    job = await running_job(store, "a", lease_until=LIVE)
    assert await store.renew_leases("w1", ["a"], lease_until=LATER) == {"a"}
    # the job actor still holds the old lease_until: its write must not shorten the renewed lease
    saved = await store.save(job.evolve(attempts=1), expected_version=job.version)
    assert saved.lease_until == LATER
    stored = await store.get("a")
    assert stored is not None
    assert stored.lease_until == LATER
    assert stored.attempts == 1


@pytest.mark.parametrize("status", SETTLED_STATUSES)
async def test_save_clears_the_lease_when_the_job_settles(store: Store, status: JobStatus) -> None:
    job = await running_job(store, "a", lease_until=LIVE)
    saved = await store.save(job.evolve(status=status), expected_version=job.version)
    assert saved.lease_until is None
    stored = await store.get("a")
    assert stored is not None
    assert stored.lease_until is None
    assert stored.status == status


@pytest.mark.parametrize("change", ["owner", "epoch"])
async def test_save_takes_the_new_lease_when_owner_or_epoch_changed(store: Store, change: str) -> None:
    job = await running_job(store, "a", lease_until=LIVE)
    update: dict[str, object] = {"owner": "w2"} if change == "owner" else {"epoch": job.epoch + 1}
    saved = await store.save(job.evolve(lease_until=LATER, **update), expected_version=job.version)
    assert saved.lease_until == LATER
    stored = await store.get("a")
    assert stored is not None
    assert stored.lease_until == LATER
    assert (stored.owner, stored.epoch) == (saved.owner, saved.epoch)


async def test_the_store_owns_the_steps_count(store: Store) -> None:
    job = await running_job(store, "a")
    await store.append_step(step("a", 0))
    await store.append_step(step("a", 1))
    saved = await store.save(job.evolve(steps=99), expected_version=job.version)
    assert saved.steps == 2
    stored = await store.get("a")
    assert stored is not None
    assert stored.steps == 2


async def test_concurrent_saves_of_one_version_have_exactly_one_winner(store: Store) -> None:
    job, _ = await store.create(make_job("a"))
    results = await asyncio.gather(
        *(store.save(job.evolve(input=f"writer-{n}"), expected_version=0) for n in range(20)),
        return_exceptions=True,
    )
    winners = [result for result in results if isinstance(result, Job)]
    assert len(winners) == 1
    assert all(isinstance(result, VersionConflict) for result in results if not isinstance(result, Job))
    assert await store.get("a") == winners[0]


async def test_a_refused_write_does_not_undo_the_others_written_with_it(store: Store) -> None:
    jobs = [(await store.create(make_job(f"j{n}", created=n)))[0] for n in range(30)]
    # every third save is stale; they all run at once, so a group commit mixes them in one batch
    results = await asyncio.gather(
        *(store.save(job.evolve(input="new"), expected_version=1 if n % 3 == 0 else 0) for n, job in enumerate(jobs)),
        return_exceptions=True,
    )
    for n, result in enumerate(results):
        stored = await store.get(f"j{n}")
        assert stored is not None
        if n % 3 == 0:
            assert isinstance(result, VersionConflict)
            assert (stored.version, stored.input) == (0, None)
        else:
            assert isinstance(result, Job)
            assert (stored.version, stored.input) == (1, "new")


async def test_a_cancelled_caller_leaves_the_store_working(store: Store) -> None:
    job, _ = await store.create(make_job("a"))
    task = asyncio.ensure_future(store.save(job.evolve(input="maybe"), expected_version=0))
    await asyncio.sleep(0)  # the save has started (and, for some stores, finished)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stored = await store.get("a")
    assert stored is not None
    # the write happened or not, never half: the next compare-and-set decides on what is stored
    assert (stored.version, stored.input) in {(0, None), (1, "maybe")}
    saved = await store.save(stored.evolve(input="next"), expected_version=stored.version)
    assert await store.get("a") == saved


# -- list -------------------------------------------------------------------------------------------


async def test_list_is_newest_first_by_created_at_then_id(store: Store) -> None:
    for job_id, created in [("b", 1), ("a", 3), ("c", 2), ("d", 3), ("e", 0)]:
        await store.create(make_job(job_id, created=created))
    page = await store.list()
    assert [job.id for job in page.jobs] == ["d", "a", "c", "b", "e"]
    assert page.next_cursor is None


async def test_list_of_an_empty_store_is_empty(store: Store) -> None:
    page = await store.list(limit=10)
    assert page.jobs == []
    assert page.next_cursor is None


async def test_list_returns_the_jobs_as_stored(store: Store) -> None:
    job = await running_job(store, "a")
    await store.append_step(step("a", 0))
    assert await store.renew_leases("w1", ["a"], lease_until=LATER) == {"a"}
    (listed,) = (await store.list()).jobs
    assert listed == await store.get("a")
    assert (listed.steps, listed.lease_until, listed.version) == (1, LATER, job.version)


async def test_list_filters_by_one_or_several_statuses(store: Store) -> None:
    statuses = [JobStatus.PENDING, JobStatus.PAUSED, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.PAUSED]
    for n, status in enumerate(statuses):
        await store.create(make_job(f"j{n}", created=n, status=status))
    assert await ids(store, status=[JobStatus.PAUSED]) == ["j4", "j1"]
    assert await ids(store, status={JobStatus.FAILED, JobStatus.PENDING}) == ["j3", "j0"]
    assert await ids(store, status=[JobStatus.CANCELLED]) == []
    assert await ids(store, status=[]) == []


async def test_list_filters_by_agent(store: Store) -> None:
    for n, agent in enumerate(["triage", "billing", "triage", ""]):
        await store.create(make_job(f"j{n}", created=n, agent=agent))
    assert await ids(store, agent="triage") == ["j2", "j0"]
    assert await ids(store, agent="billing", status=[JobStatus.PENDING]) == ["j1"]
    assert await ids(store, agent="nobody") == []


async def test_list_filters_by_metadata_all_given_keys_equal(store: Store) -> None:
    metadatas: list[dict[str, JsonValue]] = [
        {"team": "support", "tier": 1},
        {"team": "support", "tier": 2},
        {"team": "sales", "tier": 1},
        {},
        {"team": "support", "tier": "1", "tags": ["a", "b"], "a.b": "dotted", 'we"ird': {"x": [1]}},
    ]
    for n, metadata in enumerate(metadatas):
        await store.create(make_job(f"j{n}", created=n, metadata=metadata))
    assert await ids(store, metadata={"team": "support"}) == ["j4", "j1", "j0"]
    assert await ids(store, metadata={"team": "support", "tier": 1}) == ["j0"]
    assert await ids(store, metadata={"tier": "1"}) == ["j4"]
    assert await ids(store, metadata={"tags": ["a", "b"]}) == ["j4"]
    assert await ids(store, metadata={"tags": ["b", "a"]}) == []
    assert await ids(store, metadata={"a.b": "dotted"}) == ["j4"]
    assert await ids(store, metadata={'we"ird': {"x": [1]}}) == ["j4"]
    assert await ids(store, metadata={"team": "nobody"}) == []
    assert await ids(store, metadata={"missing": None}) == []
    assert await ids(store, metadata={}) == ["j4", "j3", "j2", "j1", "j0"]


async def test_list_pages_give_every_job_exactly_once_in_order(store: Store) -> None:
    for n in range(25):
        await store.create(make_job(f"job-{n:02}", created=n))
    expected = [f"job-{n:02}" for n in reversed(range(25))]
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = await store.list(limit=10, cursor=cursor)
        seen.extend(job.id for job in page.jobs)
        sizes.append(len(page.jobs))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected
    assert sizes == [10, 10, 5]


async def test_list_pages_with_ties_on_created_at_and_filters(store: Store) -> None:
    # three jobs share each creation time: the id breaks the tie, and the cursor must too
    for n in range(12):
        status = JobStatus.PENDING if n % 4 else JobStatus.FAILED
        await store.create(make_job(f"j{n:02}", created=n // 3, status=status, metadata={"team": "support"}))
    everything = await ids(store)
    pending = [job_id for job_id in everything if int(job_id[1:]) % 4]
    for filters in ({}, {"status": [JobStatus.PENDING]}, {"metadata": {"team": "support"}}):
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await store.list(limit=2, cursor=cursor, **filters)
            seen.extend(job.id for job in page.jobs)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == (pending if "status" in filters else everything)


async def test_list_has_no_next_cursor_when_the_page_holds_the_rest(store: Store) -> None:
    for n in range(3):
        await store.create(make_job(f"j{n}", created=n))
    exact = await store.list(limit=3)
    assert len(exact.jobs) == 3
    assert exact.next_cursor is None
    more = await store.list(limit=2)
    assert more.next_cursor is not None
    rest = await store.list(limit=2, cursor=more.next_cursor)
    assert [job.id for job in rest.jobs] == ["j0"]
    assert rest.next_cursor is None


async def test_list_with_a_cursor_of_a_deleted_job_continues_after_it(store: Store) -> None:
    for n in range(4):
        await store.create(make_job(f"j{n}", created=n))
    first = await store.list(limit=2)
    assert [job.id for job in first.jobs] == ["j3", "j2"]
    assert await store.delete("j2")
    assert first.next_cursor == encode_cursor(first.jobs[-1])
    assert await ids(store, limit=5, cursor=first.next_cursor) == ["j1", "j0"]


@pytest.mark.parametrize("cursor", ["not a cursor", "", "e30=", "WzEsMl0="])
async def test_list_with_an_invalid_cursor_raises_value_error(store: Store, cursor: str) -> None:
    await store.create(make_job("a"))
    with pytest.raises(ValueError, match="cursor"):
        await store.list(cursor=cursor)


# -- delete -----------------------------------------------------------------------------------------


async def test_delete_removes_the_job_its_journal_events_and_controls(store: Store) -> None:
    await running_job(store, "a")
    await running_job(store, "b")
    for job_id in ("a", "b"):
        await store.append_step(step(job_id, 0))
        await store.append_events(job_id, [{"seq": 0, "type": "step"}])
        await store.request_control(ControlRequest(job_id, ControlKind.PAUSE, NOW))
    assert await store.delete("a") is True
    assert await store.get("a") is None
    assert await store.read_steps("a") == []
    assert await store.read_events("a") == []
    assert [request.job_id for request in await store.take_controls(["a", "b"])] == ["b"]
    assert await store.delete("a") is False
    # b is untouched
    assert len(await store.read_steps("b")) == 1
    assert len(await store.read_events("b")) == 1
    # the id can be used again, from an empty journal
    await running_job(store, "a")
    await store.append_step(step("a", 0))
    assert [record.index for record in await store.read_steps("a")] == [0]


async def test_delete_of_a_missing_job_is_false(store: Store) -> None:
    assert await store.delete("nope") is False


# -- append_step / read_steps -----------------------------------------------------------------------


async def test_append_step_journals_in_order_and_counts_without_a_new_version(store: Store) -> None:
    job = await running_job(store, "a")
    for index in range(3):
        await store.append_step(step("a", index, result=f"r{index}"))
    journal = await store.read_steps("a")
    assert [(record.index, record.name, record.result) for record in journal] == [
        (0, "step-0", "r0"),
        (1, "step-1", "r1"),
        (2, "step-2", "r2"),
    ]
    stored = await store.get("a")
    assert stored is not None
    assert (stored.steps, stored.version) == (3, job.version)
    # the job actor's next write goes through: append_step did not move the version
    saved = await store.save(job.evolve(status=JobStatus.COMPLETED), expected_version=job.version)
    assert saved.steps == 3


STEP_RESULTS: list[JsonValue] = [
    "text",
    "",
    "unicode ✓ 日本 \u0000 \U0001f600",
    0,
    -7,
    2**53,
    1.5,
    -0.25,
    True,
    False,
    None,
    [],
    {},
    [1, "two", None],
    {"nested": {"list": [1, 2.5, {"deep": [True, None]}], "s": "é"}},
]


@pytest.mark.parametrize("result", STEP_RESULTS)
async def test_step_results_round_trip(store: Store, result: JsonValue) -> None:
    await running_job(store, "a")
    record = step("a", 0, result=result)
    await store.append_step(record)
    (stored,) = await store.read_steps("a")
    assert stored == record
    assert type(stored.result) is type(result)


async def test_append_step_with_a_stale_epoch_is_refused(store: Store) -> None:
    await running_job(store, "a")
    await store.append_step(step("a", 0, epoch=1))
    with pytest.raises(StaleOwnerError) as caught:
        await store.append_step(step("a", 1, epoch=0))
    assert (caught.value.job_id, caught.value.epoch, caught.value.current_epoch) == ("a", 0, 1)
    with pytest.raises(StaleOwnerError):
        await store.append_step(step("a", 1, epoch=2))
    assert [record.index for record in await store.read_steps("a")] == [0]


async def test_append_step_after_another_worker_claimed_the_job_is_refused(store: Store) -> None:
    await running_job(store, "a", "w1", lease_until=EXPIRED)
    taken = await store.claim("a", "w2", lease_until=LIVE, now=NOW)
    assert taken is not None
    assert taken.epoch == 2
    with pytest.raises(StaleOwnerError):
        await store.append_step(step("a", 0, epoch=1))
    await store.append_step(step("a", 0, epoch=2))
    assert [record.epoch for record in await store.read_steps("a")] == [2]


@pytest.mark.parametrize("status", [JobStatus.PENDING, *SETTLED_STATUSES])
async def test_append_step_to_a_job_that_is_not_running_is_refused(store: Store, status: JobStatus) -> None:
    await store.create(make_job("a", status=status, epoch=1))
    with pytest.raises(StaleOwnerError):
        await store.append_step(step("a", 0, epoch=1))
    assert await store.read_steps("a") == []
    stored = await store.get("a")
    assert stored is not None
    assert stored.steps == 0


@pytest.mark.parametrize("index", [0, 1])
async def test_append_step_whose_index_is_journaled_is_refused(store: Store, index: int) -> None:
    await running_job(store, "a")
    await store.append_step(step("a", 0, result="first"))
    await store.append_step(step("a", 1, result="second"))
    with pytest.raises(StaleOwnerError):
        await store.append_step(step("a", index, result="again"))
    assert [record.result for record in await store.read_steps("a")] == ["first", "second"]


async def test_steps_started_together_are_journaled_in_any_order(store: Store) -> None:
    """Steps run concurrently finish in any order: each is journaled at the position it was given."""
    job = await running_job(store, "a")
    await store.append_step(step("a", 2, result="third"))
    await store.append_step(step("a", 0, result="first"))
    assert [(record.index, record.result) for record in await store.read_steps("a")] == [(0, "first"), (2, "third")]
    stored = await store.get("a")
    assert stored is not None
    assert (stored.steps, stored.version) == (2, job.version)
    await store.append_step(step("a", 1, result="second"))
    assert [record.index for record in await store.read_steps("a")] == [0, 1, 2]
    with pytest.raises(StaleOwnerError):
        await store.append_step(step("a", 2, result="again"))


async def test_concurrent_appends_of_one_index_journal_it_once(store: Store) -> None:
    await running_job(store, "a")
    results = await asyncio.gather(
        *(store.append_step(step("a", 0, result=n)) for n in range(10)), return_exceptions=True
    )
    assert sum(result is None for result in results) == 1
    assert all(isinstance(result, StaleOwnerError) for result in results if result is not None)
    assert len(await store.read_steps("a")) == 1


async def test_append_step_to_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.append_step(step("ghost", 0))
    assert await store.read_steps("ghost") == []


async def test_read_steps_of_an_unknown_job_is_empty(store: Store) -> None:
    assert await store.read_steps("nope") == []


async def test_journals_are_per_job(store: Store) -> None:
    await running_job(store, "a")
    await running_job(store, "b", created=1)
    await store.append_step(step("a", 0, result="a0"))
    await store.append_step(step("b", 0, result="b0"))
    await store.append_step(step("a", 1, result="a1"))
    assert [record.result for record in await store.read_steps("a")] == ["a0", "a1"]
    assert [record.result for record in await store.read_steps("b")] == ["b0"]


# -- events -----------------------------------------------------------------------------------------


async def test_events_are_read_in_order_after_a_seq(store: Store) -> None:
    await store.create(make_job("a"))
    events: list[dict[str, JsonValue]] = [
        {"seq": 0, "type": "job_status", "status": "running"},
        {"seq": 1, "type": "token", "text": "héllo"},
    ]
    await store.append_events("a", events)
    await store.append_events("a", [{"seq": 2, "type": "done", "result": {"n": [1, 2.5, None, True]}}])
    everything = await store.read_events("a")
    assert everything == [*events, {"seq": 2, "type": "done", "result": {"n": [1, 2.5, None, True]}}]
    assert [event["seq"] for event in await store.read_events("a", after=0)] == [1, 2]
    assert [event["seq"] for event in await store.read_events("a", after=1)] == [2]
    assert await store.read_events("a", after=2) == []
    assert await store.read_events("other") == []


async def test_save_logs_its_events_only_when_the_write_succeeds(store: Store) -> None:
    job = await running_job(store, "a")
    await store.append_events("a", [{"seq": 0, "type": "token", "token": "hi"}])
    events: list[dict[str, JsonValue]] = [
        {"seq": 0, "type": "token", "token": "again"},
        {"seq": 1, "type": "done", "content": "ok"},
    ]
    with pytest.raises(VersionConflict):
        await store.save(job.evolve(status=JobStatus.COMPLETED), expected_version=job.version + 1, events=events)
    assert [event["seq"] for event in await store.read_events("a")] == [0]
    saved = await store.save(job.evolve(status=JobStatus.COMPLETED), expected_version=job.version, events=events)
    assert saved.status is JobStatus.COMPLETED
    # a logged seq keeps its first event, the new one is added with the write
    assert await store.read_events("a") == [
        {"seq": 0, "type": "token", "token": "hi"},
        {"seq": 1, "type": "done", "content": "ok"},
    ]
    with pytest.raises(InvalidInput):
        await store.save(saved.evolve(), expected_version=saved.version, events=[{"type": "no seq"}])
    stored = await store.get("a")
    assert stored is not None and stored.version == saved.version


async def test_event_appends_with_an_epoch_are_fenced(store: Store) -> None:
    await store.create(make_job("a", epoch=3))
    await store.append_events("a", [{"seq": 0, "type": "token", "token": "x"}], epoch=3)
    for stale in (2, 4, 0):
        with pytest.raises(StaleOwnerError) as info:
            await store.append_events("a", [{"seq": 1, "type": "token", "token": "late"}], epoch=stale)
        assert info.value.job_id == "a"
        assert info.value.current_epoch == 3
    with pytest.raises(StaleOwnerError) as missing:
        await store.append_events("gone", [{"seq": 0, "type": "token", "token": "x"}], epoch=1)
    assert missing.value.current_epoch is None
    assert [event["seq"] for event in await store.read_events("a")] == [0]  # nothing stale was written
    await store.append_events("a", [{"seq": 1, "type": "token", "token": "y"}])  # unfenced: any writer
    assert [event["seq"] for event in await store.read_events("a")] == [0, 1]


async def test_a_journaled_step_gives_the_log_its_step_event_in_seq_order(store: Store) -> None:
    await running_job(store, "a")
    await store.append_events("a", [{"seq": 0, "type": "token", "token": "x"}])
    first = step("a", 0, result={"r": [1, None]}).model_copy(update={"event_seq": 2})
    await store.append_step(first, events=[{"seq": 1, "type": "token", "token": "y"}])
    await store.append_step(step("a", 1, result="no event"))  # no event_seq: nothing derived
    await store.append_events("a", [{"seq": 3, "type": "token", "token": "z"}])
    await store.append_step(step("a", 2, name="last").model_copy(update={"event_seq": 4}))
    derived = {"type": "step", "name": "step-0", "index": 0, "result": {"r": [1, None]}, "job_id": "a", "seq": 2}
    everything = await store.read_events("a")
    assert [event["seq"] for event in everything] == [0, 1, 2, 3, 4]
    assert everything[2] == derived
    assert everything[4] == {"type": "step", "name": "last", "index": 2, "result": None, "job_id": "a", "seq": 4}
    assert await store.read_events("a", after=1) == everything[2:]
    assert await store.read_events("a", after=2) == everything[3:]
    assert await store.read_events("a", after=4) == []
    assert [record.event_seq for record in await store.read_steps("a")] == [2, None, 4]
    assert await store.read_events("other") == []


async def test_a_refused_step_gives_the_log_no_event(store: Store) -> None:
    await running_job(store, "a")
    with pytest.raises(StaleOwnerError):
        await store.append_step(step("a", 0, epoch=7).model_copy(update={"event_seq": 0}))
    assert await store.read_events("a") == []


async def test_an_appended_event_is_read_where_a_step_event_has_its_seq(store: Store) -> None:
    await running_job(store, "a")
    await store.append_step(step("a", 0).model_copy(update={"event_seq": 0}))
    await store.append_events("a", [{"seq": 0, "type": "token", "token": "first"}, {"seq": 1, "type": "token"}])
    assert await store.read_events("a") == [{"seq": 0, "type": "token", "token": "first"}, {"seq": 1, "type": "token"}]


async def test_save_with_a_status_seq_logs_the_written_job_after_its_events(store: Store) -> None:
    job = await running_job(store, "a", metadata={"k": "v"})
    done: dict[str, JsonValue] = {"seq": 0, "type": "done", "content": "ok"}
    completed = job.evolve(status=JobStatus.COMPLETED, result="ok")
    with pytest.raises(VersionConflict):
        await store.save(completed, expected_version=job.version + 1, events=[done], status_seq=1)
    assert await store.read_events("a") == []
    saved = await store.save(completed, expected_version=job.version, events=[done], status_seq=1)
    logged = await store.read_events("a")
    assert logged[0] == done
    assert {key: logged[1][key] for key in ("type", "job_id", "seq")} == {"type": "job_status", "job_id": "a", "seq": 1}
    status = logged[1]["job"]
    assert isinstance(status, dict)
    assert Job.model_validate(status) == completed  # the record as given (the runtime clears a settled lease)
    assert (status["status"], status["result"], status["metadata"]) == ("completed", "ok", {"k": "v"})
    assert saved.status is JobStatus.COMPLETED
    # alone, and after a seq the log holds: logged once
    again = await store.save(saved.evolve(), expected_version=saved.version, status_seq=2)
    await store.save(again.evolve(), expected_version=again.version, status_seq=2)
    assert [(event["seq"], event["type"]) for event in await store.read_events("a", after=0)] == [
        (1, "job_status"),
        (2, "job_status"),
    ]
    versions = [event["job"]["version"] for event in await store.read_events("a", after=0)]  # type: ignore[index,call-overload]
    assert versions == [saved.version, again.version]


async def test_a_later_write_of_the_job_keeps_its_logged_status_event_as_it_was(store: Store) -> None:
    """A job_status event holds the job as that write made it: a takeover, and a save without a status
    change, that come after it change the job, not the event."""
    job = make_job("a", agent="triage", status=JobStatus.RUNNING, attempts=1, version=2, owner="w1")
    job = job.model_copy(update={"lease_until": EXPIRED, "epoch": 1})
    await store.create(job, status_seq=0)
    first = await store.read_events("a")
    [taken] = await store.claim_orphans("triage", "w2", lease_until=LIVE, now=NOW, limit=1)
    assert taken.owner == "w2"
    assert await store.read_events("a") == first
    assert Job.model_validate(first[0]["job"]) == job
    running = await store.save(taken.evolve(attempts=2), expected_version=taken.version, status_seq=1)
    logged = await store.read_events("a")
    with pytest.raises(VersionConflict):  # refused: nothing changes
        await store.save(running.evolve(attempts=9), expected_version=running.version + 5)
    assert await store.read_events("a") == logged
    saved = await store.save(running.evolve(metadata={"k": "v"}), expected_version=running.version)
    assert await store.read_events("a") == logged
    assert Job.model_validate(logged[1]["job"]).metadata == {}
    completed = saved.evolve(status=JobStatus.COMPLETED, lease_until=None, result="ok")
    await store.save(completed, expected_version=saved.version, status_seq=2)
    assert [(event["seq"], event["job"]["attempts"]) for event in await store.read_events("a")] == [  # type: ignore[index,call-overload]
        (0, 1),
        (1, 2),
        (2, 2),
    ]
    assert await store.read_events("a", after=1) == (await store.read_events("a"))[2:]


async def test_appending_no_events_changes_nothing(store: Store) -> None:
    await store.create(make_job("a"))
    await store.append_events("a", [])
    assert await store.read_events("a") == []


# -- claim ------------------------------------------------------------------------------------------


async def test_claim_of_a_job_with_no_owner(store: Store) -> None:
    job, _ = await store.create(make_job("a"))
    claimed = await store.claim("a", "w1", lease_until=LIVE, now=NOW)
    assert claimed is not None
    assert (claimed.owner, claimed.lease_until) == ("w1", LIVE)
    assert (claimed.epoch, claimed.version) == (job.epoch + 1, job.version + 1)
    assert claimed.status == JobStatus.PENDING
    assert claimed.recoveries == 0
    assert await store.get("a") == claimed


@pytest.mark.parametrize(
    ("owner", "lease_until"),
    [(None, None), (None, EXPIRED), ("w2", EXPIRED), ("w2", None), ("w1", EXPIRED)],
    ids=["no-owner", "woke", "expired", "released", "own-expired"],
)
async def test_claim_of_a_free_lease(store: Store, owner: str | None, lease_until: datetime | None) -> None:
    await store.create(make_job("a", owner=owner, lease_until=lease_until, epoch=4, version=7))
    claimed = await store.claim("a", "w1", lease_until=LATER, now=NOW)
    assert claimed is not None
    assert (claimed.owner, claimed.lease_until, claimed.epoch, claimed.version) == ("w1", LATER, 5, 8)


@pytest.mark.parametrize("lease_until", [LIVE, NOW], ids=["live", "expires-at-now"])
async def test_claim_of_a_job_another_worker_holds_is_refused(store: Store, lease_until: datetime) -> None:
    job, _ = await store.create(make_job("a", owner="w2", lease_until=lease_until, epoch=1))
    assert await store.claim("a", "w1", lease_until=LATER, now=NOW) is None
    assert await store.get("a") == job


@pytest.mark.parametrize("status", SETTLED_STATUSES)
async def test_claim_of_a_settled_job_is_refused(store: Store, status: JobStatus) -> None:
    job, _ = await store.create(make_job("a", status=status))
    assert await store.claim("a", "w1", lease_until=LIVE, now=NOW) is None
    assert await store.get("a") == job


async def test_claim_of_a_lease_the_owner_holds_needs_reclaim_own(store: Store) -> None:
    job, _ = await store.create(make_job("a", owner="w1", lease_until=LIVE, epoch=1, version=1))
    assert await store.claim("a", "w1", lease_until=LATER, now=NOW) is None
    assert await store.claim("a", "w2", lease_until=LATER, now=NOW, reclaim_own=True) is None
    assert await store.get("a") == job
    claimed = await store.claim("a", "w1", lease_until=LATER, now=NOW, reclaim_own=True)
    assert claimed is not None
    assert (claimed.owner, claimed.lease_until, claimed.epoch, claimed.version) == ("w1", LATER, 2, 2)


async def test_claim_of_an_unknown_job_is_none(store: Store) -> None:
    assert await store.claim("ghost", "w1", lease_until=LIVE, now=NOW) is None


async def test_claim_of_a_running_job_counts_a_recovery(store: Store) -> None:
    job = await running_job(store, "a", "w1", lease_until=EXPIRED)
    await store.append_step(step("a", 0))
    claimed = await store.claim("a", "w2", lease_until=LIVE, now=NOW)
    assert claimed is not None
    assert claimed.recoveries == job.recoveries + 1 == 1
    assert claimed.status == JobStatus.RUNNING
    assert (claimed.owner, claimed.epoch, claimed.version, claimed.steps) == ("w2", 2, job.version + 1, 1)
    assert await store.get("a") == claimed
    # the old owner's compare-and-set is now stale
    with pytest.raises(VersionConflict):
        await store.save(job.evolve(status=JobStatus.COMPLETED), expected_version=job.version)


# -- claim_orphans ----------------------------------------------------------------------------------


async def test_claim_orphans_oldest_first_up_to_limit(store: Store) -> None:
    for n in (3, 0, 4, 1, 2):
        await store.create(make_job(f"j{n}", created=n, agent="triage"))
    claimed = await store.claim_orphans("triage", "w1", lease_until=LIVE, now=NOW, limit=3)
    assert [job.id for job in claimed] == ["j0", "j1", "j2"]
    for job in claimed:
        assert (job.owner, job.lease_until, job.epoch, job.version) == ("w1", LIVE, 1, 1)
        assert await store.get(job.id) == job
    untouched = await store.get("j3")
    assert untouched is not None
    assert untouched.owner is None
    rest = await store.claim_orphans("triage", "w2", lease_until=LIVE, now=NOW, limit=10)
    assert [job.id for job in rest] == ["j3", "j4"]


async def test_claim_orphans_filters_by_agent_and_none_takes_any_agent(store: Store) -> None:
    for n, agent in enumerate(["triage", "billing", "triage", ""]):
        await store.create(make_job(f"j{n}", created=n, agent=agent))
    billing = await store.claim_orphans("billing", "w1", lease_until=LIVE, now=NOW, limit=10)
    assert [job.id for job in billing] == ["j1"]
    anyone = await store.claim_orphans(None, "w2", lease_until=LIVE, now=NOW, limit=10)
    assert [job.id for job in anyone] == ["j0", "j2", "j3"]


async def test_claim_orphans_skips_live_leases_and_settled_jobs(store: Store) -> None:
    await running_job(store, "live", "w2", lease_until=LIVE, created=0)
    orphan = await running_job(store, "orphan", "w2", lease_until=EXPIRED, created=1)
    await store.create(make_job("queued", created=2))
    for n, status in enumerate(SETTLED_STATUSES):
        await store.create(make_job(f"settled-{status}", created=3 + n, status=status, owner="w2"))
    claimed = await store.claim_orphans(None, "w1", lease_until=LATER, now=NOW, limit=10)
    assert [job.id for job in claimed] == ["orphan", "queued"]
    assert claimed[0].recoveries == orphan.recoveries + 1
    assert claimed[1].recoveries == 0
    live = await store.get("live")
    assert live is not None
    assert live.owner == "w2"


async def test_claim_orphans_retakes_the_owners_live_jobs_only_with_reclaim_own(store: Store) -> None:
    await running_job(store, "a", "w1", lease_until=LIVE)
    assert await store.claim_orphans(None, "w1", lease_until=LATER, now=NOW, limit=10) == []
    assert await store.claim_orphans(None, "w2", lease_until=LATER, now=NOW, limit=10, reclaim_own=True) == []
    claimed = await store.claim_orphans(None, "w1", lease_until=LATER, now=NOW, limit=10, reclaim_own=True)
    assert [(job.id, job.epoch, job.lease_until) for job in claimed] == [("a", 2, LATER)]


async def asleep(store: Store, job_id: str, wake: datetime, *, created: float = 0.0, agent: str = "") -> Job:
    """A job written as a job actor leaves it in ``ctx.sleep``: pending, no owner, a lease until ``wake``."""
    job, _ = await store.create(make_job(job_id, created=created, agent=agent, owner="w0", lease_until=LIVE))
    sleeping = job.evolve(owner=None, lease_until=wake, next_attempt_at=wake, resuming=True, version=job.version + 1)
    return await store.save(sleeping, expected_version=job.version)


async def test_a_sleeping_job_is_claimable_only_once_its_lease_ends(store: Store) -> None:
    job = await asleep(store, "s", LIVE, agent="triage")
    assert (job.owner, job.lease_until) == (None, LIVE)
    assert await store.claim("s", "w1", lease_until=LATER, now=NOW) is None
    assert await store.claim("s", "w1", lease_until=LATER, now=LIVE) is None  # free strictly after
    assert await store.claim_orphans("triage", "w1", lease_until=LATER, now=NOW, limit=10) == []
    woke = LIVE + timedelta(microseconds=1)
    claimed = await store.claim_orphans("triage", "w1", lease_until=LATER, now=woke, limit=10)
    assert [(job.id, job.owner, job.lease_until, job.recoveries) for job in claimed] == [("s", "w1", LATER, 0)]
    assert claimed[0].sleeping_until == LIVE


async def test_next_wake_is_the_earliest_sleeping_lease_not_yet_ended(store: Store) -> None:
    assert await store.next_wake("triage", now=NOW) is None
    await asleep(store, "late", LATER, agent="triage", created=0)
    await asleep(store, "soon", LIVE, agent="triage", created=1)
    await asleep(store, "other", NOW + timedelta(seconds=5), agent="billing", created=2)
    await running_job(store, "held", "w2", lease_until=NOW + timedelta(seconds=1), created=3)  # an owner's lease
    assert await store.next_wake("triage", now=NOW) == LIVE
    assert await store.next_wake(None, now=NOW) == NOW + timedelta(seconds=5)
    assert await store.next_wake("triage", now=LIVE + timedelta(seconds=1)) == LATER  # "soon" is due
    assert await store.next_wake("nobody", now=NOW) is None
    claimed = await store.claim("soon", "w1", lease_until=LATER, now=LIVE + timedelta(seconds=1))
    assert claimed is not None
    assert await store.next_wake("triage", now=NOW) == LATER  # held again: not asleep


async def test_claim_orphans_with_limit_zero_claims_nothing(store: Store) -> None:
    job, _ = await store.create(make_job("a"))
    assert await store.claim_orphans(None, "w1", lease_until=LIVE, now=NOW, limit=0) == []
    assert await store.get("a") == job


# -- renew_leases / release -------------------------------------------------------------------------


async def test_renew_leases_extends_only_the_leases_the_owner_holds(store: Store) -> None:
    mine = await running_job(store, "mine", "w1", created=0)
    await running_job(store, "theirs", "w2", created=1)
    done = await running_job(store, "done", "w1", created=2)
    await store.save(done.evolve(status=JobStatus.COMPLETED), expected_version=done.version)
    await store.create(make_job("queued", created=3))
    claimed_queued = await store.claim("queued", "w1", lease_until=LIVE, now=NOW)
    assert claimed_queued is not None
    held = await store.renew_leases("w1", ["mine", "theirs", "done", "queued", "ghost"], lease_until=LATER)
    assert held == {"mine", "queued"}
    stored = await store.get("mine")
    assert stored is not None
    assert (stored.lease_until, stored.version) == (LATER, mine.version)
    theirs = await store.get("theirs")
    assert theirs is not None
    assert theirs.lease_until == LIVE
    settled = await store.get("done")
    assert settled is not None
    assert settled.lease_until is None


async def test_renew_leases_of_no_ids_is_empty(store: Store) -> None:
    assert await store.renew_leases("w1", [], lease_until=LATER) == set()


async def test_release_clears_the_lease_so_another_worker_may_claim(store: Store) -> None:
    job = await running_job(store, "a", "w1", lease_until=LIVE)
    assert await store.claim("a", "w2", lease_until=LIVE, now=NOW) is None
    assert await store.release("a", "w1") is True
    stored = await store.get("a")
    assert stored is not None
    assert (stored.owner, stored.lease_until, stored.version) == ("w1", None, job.version)
    claimed = await store.claim("a", "w2", lease_until=LIVE, now=NOW)
    assert claimed is not None
    assert claimed.owner == "w2"


async def test_release_by_another_owner_or_of_an_unknown_job_is_false(store: Store) -> None:
    job = await running_job(store, "a", "w1", lease_until=LIVE)
    assert await store.release("a", "w2") is False
    assert await store.get("a") == job
    assert await store.release("ghost", "w1") is False


# -- control requests -------------------------------------------------------------------------------


async def test_take_controls_returns_them_oldest_first_and_removes_them(store: Store) -> None:
    for job_id in ("a", "b", "c"):
        await store.create(make_job(job_id))
    requests = [
        ControlRequest("b", ControlKind.PAUSE, at(2)),
        ControlRequest("a", ControlKind.RESUME, at(3), payload={"text": "go on ✓", "n": [1, 2.5]}),
        ControlRequest("a", ControlKind.PAUSE, at(1)),
        ControlRequest("c", ControlKind.CANCEL, at(0)),
    ]
    for request in requests:
        await store.request_control(request)
    taken = await store.take_controls(["a", "b"])
    assert taken == [requests[2], requests[0], requests[1]]
    assert await store.take_controls(["a", "b"]) == []
    assert await store.take_controls(["c"]) == [requests[3]]
    assert await store.take_controls([]) == []


async def test_request_control_for_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.request_control(ControlRequest("ghost", ControlKind.CANCEL, NOW))
    await store.create(make_job("ghost"))
    assert await store.take_controls(["ghost"]) == []


# -- worker ids -------------------------------------------------------------------------------------


async def test_a_worker_id_is_held_by_one_token_until_its_lease_ends(store: Store) -> None:
    assert await store.register_worker("w1", "first", info="first's", lease_until=LIVE, now=NOW) is None
    # another token is refused while the lease lasts, and told who holds the id
    assert await store.register_worker("w1", "second", info="second's", lease_until=LATER, now=NOW) == "first's"
    # the holder registers again (a restart that kept its token)
    assert await store.register_worker("w1", "first", info="first's again", lease_until=LIVE, now=NOW) is None
    assert await store.register_worker("w1", "second", info="second's", lease_until=LATER, now=NOW) == "first's again"
    # other ids are free
    assert await store.register_worker("w2", "second", info="second's", lease_until=LIVE, now=NOW) is None
    # once the lease ended, anyone may take the id (a lease that ended a minute ago: on every clock)
    assert await store.register_worker("w1", "first", info="first's", lease_until=EXPIRED, now=NOW) is None
    assert await store.register_worker("w1", "second", info="second's", lease_until=LATER, now=NOW) is None
    assert await store.register_worker("w1", "first", info="first's", lease_until=LATER, now=NOW) == "second's"


async def test_a_worker_id_is_taken_over_by_naming_its_holders_token(store: Store) -> None:
    assert await store.register_worker("w1", "gone", info="gone's", lease_until=LATER, now=NOW) is None
    assert await store.register_worker("w1", "new", info="new's", lease_until=LATER, now=NOW, replace="other") == (
        "gone's"
    )
    assert await store.register_worker("w1", "new", info="new's", lease_until=LATER, now=NOW, replace="gone") is None
    assert await store.renew_worker("w1", "gone", lease_until=LATER, now=NOW) is False
    assert await store.renew_worker("w1", "new", lease_until=LATER, now=NOW) is True


async def test_renew_worker_extends_the_holders_claim_only(store: Store) -> None:
    # a claim whose lease has just ended is renewed: held again from then
    assert await store.register_worker("w1", "mine", info="mine", lease_until=EXPIRED, now=NOW) is None
    assert await store.renew_worker("w1", "mine", lease_until=LATER, now=NOW) is True
    assert await store.register_worker("w1", "theirs", info="theirs", lease_until=LATER, now=NOW) == "mine"
    assert await store.renew_worker("w1", "theirs", lease_until=LATER, now=NOW) is False
    assert await store.renew_worker("nobody", "mine", lease_until=LATER, now=NOW) is False


async def test_unregister_worker_frees_the_id_only_for_its_holder(store: Store) -> None:
    assert await store.register_worker("w1", "mine", info="mine", lease_until=LATER, now=NOW) is None
    await store.unregister_worker("w1", "theirs")  # not the holder: nothing changes
    assert await store.register_worker("w1", "theirs", info="theirs", lease_until=LATER, now=NOW) == "mine"
    await store.unregister_worker("w1", "mine")
    assert await store.renew_worker("w1", "mine", lease_until=LATER, now=NOW) is False
    assert await store.register_worker("w1", "theirs", info="theirs", lease_until=LATER, now=NOW) is None
    await store.unregister_worker("nobody", "mine")  # an unknown id: nothing to do


async def test_list_workers_lists_the_live_registrations_by_id(store: Store) -> None:
    assert await store.list_workers(now=NOW) == []
    assert await store.register_worker("w2", "b", info="b's", lease_until=LATER, now=NOW) is None
    assert await store.register_worker("w1", "a", info="a's", lease_until=LIVE, now=NOW) is None
    assert await store.register_worker("lapsed", "c", info="c's", lease_until=EXPIRED, now=NOW) is None
    assert await store.register_worker("gone", "d", info="d's", lease_until=LIVE, now=NOW) is None
    await store.unregister_worker("gone", "d")
    assert await store.list_workers(now=NOW) == [WorkerRecord("w1", "a's", LIVE), WorkerRecord("w2", "b's", LATER)]
    assert await store.renew_worker("lapsed", "c", lease_until=LATER, now=NOW) is True
    assert [record.worker_id for record in await store.list_workers(now=NOW)] == ["lapsed", "w1", "w2"]


async def test_a_registration_whose_lease_ended_over_a_day_ago_is_forgotten(store: Store) -> None:
    long_ago = NOW - timedelta(days=2)
    assert await store.register_worker("crashed", "old", info="old", lease_until=long_ago, now=NOW) is None
    assert await store.register_worker("lapsed", "recent", info="recent", lease_until=EXPIRED, now=NOW) is None
    assert await store.register_worker("w1", "live", info="live", lease_until=LIVE, now=NOW) is None
    # forgotten: its token holds nothing any more; a registration that lapsed a minute ago is kept
    assert await store.renew_worker("crashed", "old", lease_until=LATER, now=NOW) is False
    assert await store.renew_worker("lapsed", "recent", lease_until=LATER, now=NOW) is True
    assert [record.worker_id for record in await store.list_workers(now=NOW)] == ["lapsed", "w1"]


# -- schedules --------------------------------------------------------------------------------------


def schedule(agent: str, name: str, **fields: object) -> ScheduleState:
    fields.setdefault("cron", "*/5 * * * *")
    return ScheduleState(agent=agent, name=name, created_at=NOW, updated_at=NOW, **fields)


async def test_schedules_are_created_read_updated_and_deleted(store: Store) -> None:
    assert await store.get_schedule("triage", "nightly") is None
    created = schedule("triage", "nightly", next_fire=at(60), queued=[at(1), at(2)])
    assert await store.save_schedule(created, expected_version=None) == created
    assert await store.get_schedule("triage", "nightly") == created
    updated = created.model_copy(update={"version": 2, "last_job_id": "nightly:x", "paused": True})
    assert await store.save_schedule(updated, expected_version=1) == updated
    assert await store.get_schedule("triage", "nightly") == updated
    assert await store.delete_schedule("triage", "nightly") is True
    assert await store.get_schedule("triage", "nightly") is None
    assert await store.delete_schedule("triage", "nightly") is False


async def test_save_schedule_is_a_compare_and_set(store: Store) -> None:
    first = schedule("triage", "nightly")
    await store.save_schedule(first, expected_version=None)
    with pytest.raises(VersionConflict):  # it exists already
        await store.save_schedule(schedule("triage", "nightly", cron="0 * * * *"), expected_version=None)
    with pytest.raises(VersionConflict):  # stale
        await store.save_schedule(first.model_copy(update={"version": 3}), expected_version=2)
    with pytest.raises(VersionConflict):  # not one higher
        await store.save_schedule(first.model_copy(update={"version": 3}), expected_version=1)
    with pytest.raises(VersionConflict) as caught:  # missing
        await store.save_schedule(schedule("triage", "ghost", version=2), expected_version=1)
    assert caught.value.actual is None
    assert await store.get_schedule("triage", "nightly") == first
    results = await asyncio.gather(
        *(
            store.save_schedule(first.model_copy(update={"version": 2, "last_job_id": f"j{n}"}), expected_version=1)
            for n in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(result, ScheduleState) for result in results) == 1
    stored = await store.get_schedule("triage", "nightly")
    assert stored is not None
    assert stored.version == 2


async def test_list_schedules_by_agent_and_name(store: Store) -> None:
    for agent, name in [("triage", "b"), ("billing", "z"), ("triage", "a"), ("billing", "a")]:
        await store.save_schedule(schedule(agent, name), expected_version=None)
    assert [(state.agent, state.name) for state in await store.list_schedules()] == [
        ("billing", "a"),
        ("billing", "z"),
        ("triage", "a"),
        ("triage", "b"),
    ]
    assert [state.name for state in await store.list_schedules("triage")] == ["a", "b"]
    assert await store.list_schedules("nobody") == []


async def test_close_is_idempotent(store: Store) -> None:
    await store.create(make_job("a"))
    await store.close()
    await store.close()


# ===================================================================================================
# SQLiteStore alone


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    try:
        yield store
    finally:
        await store.close()


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to the store's file, as another program would open it."""
    return sqlite3.connect(path, isolation_level=None)


async def test_sqlite_everything_survives_close_and_reopen(db_path: Path) -> None:
    first = SQLiteStore(db_path)
    job = await running_job(first, "a", "w1", lease_until=LIVE, metadata={"team": "support"})
    await store_extras(first)
    assert await first.renew_leases("w1", ["a"], lease_until=LATER) == {"a"}
    before = await first.get("a")
    await first.close()

    second = SQLiteStore(db_path)
    try:
        after = await second.get("a")
        assert after == before
        assert after is not None
        assert (after.steps, after.lease_until, after.version) == (2, LATER, job.version)
        assert [record.result for record in await second.read_steps("a")] == ["one", {"two": [2]}]
        assert await second.read_events("a") == [{"seq": 0, "type": "token", "text": "hi"}]
        assert await second.take_controls(["a"]) == [ControlRequest("a", ControlKind.RESUME, NOW, payload="more")]
        assert await ids(second, metadata={"team": "support"}) == ["a"]
        assert await second.get_schedule("triage", "nightly") == schedule("triage", "nightly")
        saved = await second.save(job.evolve(status=JobStatus.COMPLETED), expected_version=job.version)
        assert saved.steps == 2
    finally:
        await second.close()


async def store_extras(store: Store) -> None:
    await store.append_step(step("a", 0, result="one"))
    await store.append_step(step("a", 1, result={"two": [2]}))
    await store.append_events("a", [{"seq": 0, "type": "token", "text": "hi"}])
    await store.request_control(ControlRequest("a", ControlKind.RESUME, NOW, payload="more"))
    await store.save_schedule(schedule("triage", "nightly"), expected_version=None)


async def test_sqlite_writes_are_committed_when_the_call_returns(sqlite_store: SQLiteStore, db_path: Path) -> None:
    job = await running_job(sqlite_store, "a")
    await sqlite_store.append_step(step("a", 0, result="r"))
    conn = raw(db_path)
    try:
        counted = "(SELECT count(*) FROM steps WHERE job_id = 'a')"
        row = conn.execute(f"SELECT status, version, {counted}, owner, epoch FROM jobs WHERE id = 'a'").fetchone()
        assert row == ("running", job.version, 1, "w1", 1)
        assert conn.execute("SELECT count(*) FROM steps WHERE job_id = 'a'").fetchone() == (1,)
    finally:
        conn.close()


async def test_sqlite_file_is_in_wal_mode_with_schema_version_3(sqlite_store: SQLiteStore, db_path: Path) -> None:
    await sqlite_store.create(make_job("a"))
    conn = raw(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (3,)
        assert "status_seq" in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"jobs", "steps", "events", "controls", "workers"} <= tables
        indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"jobs_status", "jobs_agent", "jobs_created"} <= indexes
    finally:
        conn.close()


@pytest.mark.parametrize(
    "garbage",
    [
        "{not json",
        '{"id": "bad"}',
        "[1, 2]",
        '{"id": "other", "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}',
    ],
    ids=["not-json", "missing-fields", "not-an-object", "another-id"],
)
async def test_sqlite_corrupt_record_raises_corrupt_record_and_the_rest_works(
    sqlite_store: SQLiteStore, db_path: Path, garbage: str
) -> None:
    good = await running_job(sqlite_store, "good", lease_until=EXPIRED, created=0)
    await sqlite_store.create(make_job("queued", created=2))
    conn = raw(db_path)
    try:
        conn.execute(
            "INSERT INTO jobs (id, agent, status, created_at, owner, lease_until, epoch, version, steps, record)"
            " VALUES ('bad', '', 'pending', 1, NULL, NULL, 0, 0, 0, ?)",
            (garbage,),
        )
    finally:
        conn.close()
    with pytest.raises(CorruptRecord) as from_get:
        await sqlite_store.get("bad")
    assert from_get.value.key == "bad"
    # a listing skips it (and logs it) instead of failing for every job
    assert await ids(sqlite_store) == ["queued", "good"]
    with pytest.raises(CorruptRecord) as from_claim:
        await sqlite_store.claim("bad", "w9", lease_until=LIVE, now=NOW)
    assert from_claim.value.key == "bad"
    with pytest.raises(CorruptRecord):
        await sqlite_store.create(make_job("bad"))
    # the other jobs still work, and a listing that does not reach the bad row too
    assert await sqlite_store.get("good") == good
    assert await ids(sqlite_store, status=[JobStatus.RUNNING]) == ["good"]
    assert await ids(sqlite_store, limit=1) == ["queued"]
    await sqlite_store.append_step(step("good", 0))
    saved = await sqlite_store.save(good.evolve(attempts=1), expected_version=good.version)
    assert saved.steps == 1
    # claim_orphans skips the bad record (one bad job must not stop every worker) and takes the others
    claimed = await sqlite_store.claim_orphans(None, "w2", lease_until=LIVE, now=NOW, limit=10)
    assert [job.id for job in claimed] == ["good", "queued"]
    assert await sqlite_store.delete("bad") is True
    assert await ids(sqlite_store) == ["queued", "good"]


async def test_sqlite_corrupt_step_and_event_name_their_keys(sqlite_store: SQLiteStore, db_path: Path) -> None:
    await running_job(sqlite_store, "a")
    await sqlite_store.append_step(step("a", 0))
    await sqlite_store.append_events("a", [{"seq": 0}])
    conn = raw(db_path)
    try:
        conn.execute("UPDATE steps SET record = 'garbage'")
        conn.execute("UPDATE events SET record = '[1]'")
    finally:
        conn.close()
    with pytest.raises(CorruptRecord) as from_steps:
        await sqlite_store.read_steps("a")
    assert from_steps.value.key == "a/steps/0"
    with pytest.raises(CorruptRecord) as from_events:
        await sqlite_store.read_events("a")
    assert from_events.value.key == "a/events/0"


async def test_sqlite_a_corrupt_job_row_names_the_job_when_its_status_event_is_read(
    sqlite_store: SQLiteStore, db_path: Path
) -> None:
    job = make_job("a", status=JobStatus.RUNNING, attempts=1, version=2, owner="w1", lease_until=LIVE, epoch=1)
    await sqlite_store.create(job, status_seq=0)
    conn = raw(db_path)
    try:
        conn.execute("UPDATE jobs SET record = 'garbage'")
    finally:
        conn.close()
    with pytest.raises(CorruptRecord) as caught:
        await sqlite_store.read_events("a")
    assert caught.value.key == "a"


async def test_sqlite_two_stores_on_one_file_see_each_other_and_conflict(db_path: Path) -> None:
    left, right = SQLiteStore(db_path), SQLiteStore(db_path)
    try:
        job = await running_job(left, "a", "w1")
        assert await right.get("a") == job
        # both read version n; the first write wins, the second is refused across the two stores
        await right.save(job.evolve(attempts=1), expected_version=job.version)
        with pytest.raises(VersionConflict) as caught:
            await left.save(job.evolve(attempts=2), expected_version=job.version)
        assert caught.value.actual == job.version + 1
        # fencing holds across them too
        await left.append_step(step("a", 0))
        with pytest.raises(StaleOwnerError):
            await right.append_step(step("a", 0))
        taken = await right.claim("a", "w2", lease_until=LIVE, now=LATER)
        assert taken is not None
        with pytest.raises(StaleOwnerError):
            await left.append_step(step("a", 1, epoch=1))
        assert [record.index for record in await left.read_steps("a")] == [0]
        assert await left.get("a") == taken
    finally:
        await left.close()
        await right.close()


async def test_sqlite_opens_a_schema_version_2_file_and_its_logs_read_as_before(db_path: Path) -> None:
    """A file written before status events were derived from the job's row (schema version 2: every
    job_status event a row of ``events``) is migrated when opened, and reads as it did."""
    job = make_job("a", status=JobStatus.RUNNING, attempts=1, version=2, owner="w1", lease_until=LIVE, epoch=1)
    status = {"type": "job_status", "job_id": "a", "seq": 0, "job": job.model_dump(mode="json")}
    conn = raw(db_path)
    try:
        for statements in _MIGRATIONS[:2]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO jobs (id, agent, status, created_at, owner, lease_until, epoch, version, steps, record)"
            " VALUES ('a', ?, 'running', 0, 'w1', ?, 1, 2, 0, ?)",
            (job.agent, int(LIVE.timestamp() * 1_000_000), job.model_dump_json()),
        )
        conn.execute("INSERT INTO events (job_id, seq, record) VALUES ('a', 0, ?)", (json.dumps(status),))
        conn.execute("PRAGMA user_version = 2")
    finally:
        conn.close()
    store = SQLiteStore(db_path)
    try:
        assert await store.read_events("a") == [json.loads(json.dumps(status))]
        stored = await store.get("a")
        assert stored is not None and stored.version == 2
        completed = stored.evolve(status=JobStatus.COMPLETED, lease_until=None, result="ok")
        await store.save(completed, expected_version=stored.version, status_seq=1)
        assert [(event["seq"], event["job"]["status"]) for event in await store.read_events("a")] == [  # type: ignore[index,call-overload]
            (0, "running"),
            (1, "completed"),
        ]
    finally:
        await store.close()
    conn = raw(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    finally:
        conn.close()


async def test_sqlite_refuses_a_newer_schema_naming_the_file(db_path: Path) -> None:
    conn = raw(db_path)
    conn.execute("PRAGMA user_version = 4")
    conn.close()
    store = SQLiteStore(db_path)
    try:
        with pytest.raises(StoreError, match=r"jobs\.db") as caught:
            await store.get("a")
        assert "schema version 4" in str(caught.value)
        with pytest.raises(StoreError, match=r"jobs\.db"):
            await store.create(make_job("a"))
    finally:
        await store.close()


async def test_sqlite_a_file_that_cannot_be_opened_fails_the_operations(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "jobs.db")
    try:
        with pytest.raises(StoreError, match="missing-dir"):
            await store.create(make_job("a"))
    finally:
        await store.close()


async def test_sqlite_operations_after_close_raise_store_error(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.create(make_job("a"))
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get("a")
    with pytest.raises(StoreError, match="closed"):
        await store.create(make_job("b"))
    await store.close()


async def test_sqlite_close_commits_what_is_queued(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    writes = [asyncio.ensure_future(store.create(make_job(f"j{n}", created=n))) for n in range(50)]
    await asyncio.sleep(0)  # every create is queued
    await store.close()
    assert all(write.result()[1] for write in writes)
    reopened = SQLiteStore(db_path)
    try:
        assert len(await ids(reopened)) == 50
    finally:
        await reopened.close()


async def test_sqlite_a_read_asked_for_while_a_write_is_queued_sees_that_write(sqlite_store: SQLiteStore) -> None:
    job, _ = await sqlite_store.create(make_job("a"))
    for n in range(20):
        saving = asyncio.ensure_future(sqlite_store.save(job.evolve(input=f"v{n}"), expected_version=job.version))
        await asyncio.sleep(0)  # the save is queued, not yet committed: the read must wait behind it
        seen = await sqlite_store.get("a")
        job = await saving
        assert seen == job


async def test_sqlite_close_of_an_unused_store(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    await store.close()
    await store.close()
    assert not await asyncio.to_thread(db_path.exists)


async def test_sqlite_a_write_lock_held_too_long_is_store_unavailable(db_path: Path) -> None:
    store = SQLiteStore(db_path, busy_timeout=0.05)
    try:
        await store.create(make_job("a"))
        conn = raw(db_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable, match=r"jobs\.db"):
                await store.create(make_job("b"))
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        await store.create(make_job("b"))
        assert await ids(store) == ["b", "a"]
    finally:
        await store.close()


async def test_sqlite_a_caller_on_a_closed_loop_does_not_stop_the_store(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.create(make_job("a"))

    abandoned: list[asyncio.Future[tuple[Job, bool]]] = []

    def abandon() -> None:
        loop = asyncio.new_event_loop()

        async def start() -> None:
            # queued, then its loop closes before the store answers: the answer must go nowhere quietly
            abandoned.append(asyncio.ensure_future(sqlite_store.create(make_job("b"))))
            await asyncio.sleep(0)

        loop.run_until_complete(start())
        loop.close()

    await asyncio.to_thread(abandon)
    for n in range(3):
        await sqlite_store.create(make_job(f"c{n}"))
    assert {"a", "c0", "c1", "c2"} <= set(await ids(sqlite_store))


async def test_sqlite_event_with_a_seq_already_logged_keeps_the_first(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.create(make_job("a"))
    await sqlite_store.append_events("a", [{"seq": 0, "text": "first"}])
    await sqlite_store.append_events("a", [{"seq": 0, "text": "again"}, {"seq": 1, "text": "next"}])
    assert await sqlite_store.read_events("a") == [{"seq": 0, "text": "first"}, {"seq": 1, "text": "next"}]


@pytest.mark.parametrize("event", [{"type": "token"}, {"seq": "1"}, {"seq": True}, {"seq": 1, "x": float("nan")}])
async def test_sqlite_invalid_events_are_refused_and_nothing_is_written(
    sqlite_store: SQLiteStore, event: dict[str, JsonValue]
) -> None:
    await sqlite_store.create(make_job("a"))
    with pytest.raises(InvalidInput):
        await sqlite_store.append_events("a", [{"seq": 0}, event])
    assert await sqlite_store.read_events("a") == []


async def test_sqlite_in_memory_database(tmp_path: Path) -> None:
    store = SQLiteStore(":memory:")
    try:
        job = await running_job(store, "a")
        await store.append_step(step("a", 0))
        stored = await store.get("a")
        assert stored is not None
        assert (stored.version, stored.steps) == (job.version, 1)
    finally:
        await store.close()


async def test_sqlite_full_durability(db_path: Path) -> None:
    store = SQLiteStore(db_path, durability="full")
    try:
        assert store.durability == "full"
        await running_job(store, "a")
        await store.append_step(step("a", 0))
        assert len(await store.read_steps("a")) == 1
    finally:
        await store.close()


def test_sqlite_constructor_validates_its_arguments(db_path: Path) -> None:
    with pytest.raises(ValueError, match="'fast'"):
        SQLiteStore(db_path, durability="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="-1"):
        SQLiteStore(db_path, busy_timeout=-1)
    store = SQLiteStore("jobs.db")
    assert repr(store) == "SQLiteStore('jobs.db')"
    assert store.path == "jobs.db"


async def test_sqlite_list_refuses_a_negative_limit_and_accepts_one_status(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.create(make_job("a"))
    with pytest.raises(ValueError, match="-1"):
        await sqlite_store.list(limit=-1)
    assert await ids(sqlite_store, status=JobStatus.PENDING) == ["a"]
    with pytest.raises(ValueError, match="bogus"):
        await sqlite_store.list(status=["bogus"])  # type: ignore[list-item]


async def test_sqlite_many_concurrent_jobs_each_get_their_own_result(sqlite_store: SQLiteStore) -> None:
    async def one(n: int) -> int:
        job = await running_job(sqlite_store, f"j{n:03}", created=n)
        for index in range(3):
            await sqlite_store.append_step(step(job.id, index, result=n))
        done = await sqlite_store.save(job.evolve(status=JobStatus.COMPLETED, result=n), expected_version=job.version)
        assert done.steps == 3
        return n

    assert await asyncio.gather(*(one(n) for n in range(200))) == list(range(200))
    completed = await sqlite_store.list(status=[JobStatus.COMPLETED])
    assert len(completed.jobs) == 200
    assert all(job.result == int(job.id[1:]) and job.steps == 3 for job in completed.jobs)


async def test_sqlite_an_operation_failing_midway_does_not_take_the_batch_down(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sqlite_store.create(make_job("victim"))

    def refuses_after_writing(conn: sqlite3.Connection, job_id: str, owner: str) -> bool:
        conn.execute("UPDATE jobs SET owner = 'intruder' WHERE id = ?", (job_id,))
        raise JobNotFound(job_id)  # breaks the rule "refuse before the first write"

    def fails(conn: sqlite3.Connection, job_id: str, owner: str) -> bool:
        conn.execute("UPDATE jobs SET owner = 'intruder' WHERE id = ?", (job_id,))
        raise sqlite3.OperationalError("disk I/O error")

    for broken, error in ((refuses_after_writing, JobNotFound), (fails, StoreError)):
        monkeypatch.setattr(sqlite_module, "_op_release", broken)
        prefix = broken.__name__
        results = await asyncio.gather(
            *(sqlite_store.create(make_job(f"{prefix}-{n}", created=n)) for n in range(5)),
            sqlite_store.release("victim", "w1"),
            *(sqlite_store.create(make_job(f"{prefix}-{n}", created=n)) for n in range(5, 10)),
            return_exceptions=True,
        )
        assert isinstance(results[5], error)
        assert all(isinstance(result, tuple) and result[1] for result in results[:5] + results[6:])
        victim = await sqlite_store.get("victim")
        assert victim is not None
        assert victim.owner is None  # the broken operation's write was undone
        assert len(await ids(sqlite_store)) == 1 + 10 * (1 + (prefix == "fails"))


async def test_sqlite_a_store_dropped_without_close_stops_its_threads(db_path: Path) -> None:
    before = set(threading.enumerate())
    store = SQLiteStore(db_path)
    await store.create(make_job("a"))
    assert await store.get("a") is not None
    started = [thread for thread in threading.enumerate() if thread not in before]
    assert sorted(thread.name for thread in started) == [
        "durapod-sqlite-checkpoint",
        "durapod-sqlite-reader",
        "durapod-sqlite-writer",
    ]
    del store
    gc.collect()
    for thread in started:
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()


def test_a_store_missing_a_method_fails_when_its_class_is_made() -> None:
    """The base class is abstract: a backend that leaves out an operation is refused at once, naming it,
    instead of answering None at run time."""

    async def get(self: Store, job_id: str) -> None:
        return None

    with pytest.raises(TypeError, match=r"does not implement .*claim_orphans.*take_controls"):
        type("Incomplete", (Store,), {"get": get})

    class Partial(Store, abstract=True):  # a base for backends may leave methods to its subclasses
        pass

    assert Partial.__abstractmethods__
