"""RedisStore alone: key layout, indexes, expiry, scripts, corrupt records, URLs, faults and concurrency.

The store contract itself (what every store does) is in ``tests/test_store_contract.py``. These tests run
on the session's real ``redis-server`` (see ``tests/redis_fixtures.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from durapod.errors import CorruptRecord, InvalidInput, StoreError, StoreUnavailable, VersionConflict
from durapod.models import ControlKind, Job, JobStatus, StepRecord, utcnow
from durapod.schedules import ScheduleState
from durapod.stores import open_store
from durapod.stores._redis_compat import _connection_getter, _is_stale
from durapod.stores.base import ControlRequest
from durapod.stores.redis import RedisStore
from durapod.testing import capture_logs

pytestmark = pytest.mark.redis

NOW = utcnow()
LIVE = NOW + timedelta(seconds=60)
EXPIRED = NOW - timedelta(seconds=60)


def make_job(job_id: str, *, created: float = 0.0, **fields: object) -> Job:
    moment = NOW + timedelta(seconds=created)
    return Job(id=job_id, created_at=moment, updated_at=moment, **fields)


def step(job_id: str, index: int, *, epoch: int = 1, result: str = "r") -> StepRecord:
    return StepRecord(
        job_id=job_id, index=index, name=f"s{index}", result=result, attempt=1, epoch=epoch, recorded_at=NOW
    )


async def running_job(
    store: RedisStore, job_id: str, owner: str = "w1", *, created: float = 0.0, **fields: object
) -> Job:
    await store.create(make_job(job_id, created=created, **fields))
    claimed = await store.claim(job_id, owner, lease_until=LIVE, now=NOW)
    assert claimed is not None
    return await store.save(claimed.evolve(status=JobStatus.RUNNING), expected_version=claimed.version)


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client on the test database, to look at and tamper with what the store wrote."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def ttls(admin: Redis, store: RedisStore, job_id: str) -> list[int]:
    """TTL of the job's hash, journal, events and controls (-2: no such key, -1: no TTL)."""
    tag = f"{{{job_id}}}"
    prefix = store.key_prefix
    return [await admin.ttl(f"{prefix}{kind}:{tag}") for kind in ("job", "steps", "events", "controls")]


def text(value: object) -> str:
    """A reply of the admin client as str."""
    assert isinstance(value, bytes | str), value
    return value.decode() if isinstance(value, bytes) else value


async def index_members(admin: Redis, key: str) -> list[str]:
    """The job ids an index holds, in its order."""
    return [text(member).split(":", 1)[1] for member in await admin.zrange(key, 0, -1)]


# -- key layout and indexes --------------------------------------------------------------------------


async def test_every_key_of_a_job_shares_its_hash_tag_and_the_prefix(redis_store: RedisStore, admin: Redis) -> None:
    for job_id in ("a", "job:{odd}", "ünï"):
        await running_job(redis_store, job_id)
        await redis_store.append_step(step(job_id, 0))
        await redis_store.append_events(job_id, [{"seq": 0, "type": "token"}])
        await redis_store.request_control(ControlRequest(job_id, ControlKind.PAUSE, NOW))
        keys = [f"{redis_store.key_prefix}{kind}:{{{job_id}}}" for kind in ("job", "steps", "events", "controls")]
        assert [await admin.exists(key) for key in keys] == [1, 1, 1, 1]
        assert len({key_slot(key.encode()) for key in keys}) == 1
    every_key = [text(key) for key in await admin.keys("*")]
    assert every_key
    assert all(key.startswith(redis_store.key_prefix) for key in every_key)


async def test_list_and_claim_orphans_never_scan_the_keyspace(redis_store: RedisStore, admin: Redis) -> None:
    for n in range(30):
        await redis_store.create(make_job(f"j{n:02}", created=n, agent="a" if n % 2 else "b", metadata={"n": n % 3}))
    await admin.config_resetstat()
    assert len((await redis_store.list()).jobs) == 30
    assert len((await redis_store.list(status=[JobStatus.PENDING, JobStatus.FAILED], limit=7)).jobs) == 7
    assert len((await redis_store.list(agent="a", metadata={"n": 1})).jobs) == 5
    page = await redis_store.list(limit=4)
    assert page.next_cursor is not None
    assert len((await redis_store.list(limit=4, cursor=page.next_cursor)).jobs) == 4
    assert len(await redis_store.claim_orphans("a", "w1", lease_until=LIVE, now=NOW, limit=100)) == 15
    stats = await admin.info("commandstats")
    assert not {"cmdstat_keys", "cmdstat_scan"} & set(stats)


async def test_claim_orphans_reads_only_claimable_jobs(redis_store: RedisStore, admin: Redis) -> None:
    for n in range(20):
        await running_job(redis_store, f"busy{n}", "w2", created=n)  # live leases held by another worker
    await redis_store.create(make_job("queued", created=30))
    await admin.config_resetstat()
    claimed = await redis_store.claim_orphans(None, "w1", lease_until=LIVE, now=NOW, limit=10)
    assert [job.id for job in claimed] == ["queued"]
    stats = await admin.info("commandstats")
    # one claim script for the one candidate: the jobs another worker holds are not even visited
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert stats["cmdstat_hmget"]["calls"] == 1  # the one in that script


async def test_indexes_follow_status_agent_and_leases(redis_store: RedisStore, admin: Redis) -> None:
    prefix = redis_store.key_prefix
    await redis_store.create(make_job("a", agent="triage"))
    assert await index_members(admin, f"{prefix}ready:triage") == ["a"]
    assert await index_members(admin, f"{prefix}status:pending") == ["a"]
    claimed = await redis_store.claim("a", "w1", lease_until=LIVE, now=NOW)
    assert claimed is not None
    assert await index_members(admin, f"{prefix}ready:triage") == []
    assert (
        await admin.zscore(f"{prefix}leased:triage", text((await admin.zrange(f"{prefix}leased", 0, 0))[0])) is not None
    )
    assert await redis_store.release("a", "w1")
    assert await index_members(admin, f"{prefix}ready") == ["a"]
    done = await redis_store.save(claimed.evolve(status=JobStatus.COMPLETED), expected_version=claimed.version)
    assert done.lease_until is None
    for key in ("ready", "ready:triage", "leased", "leased:triage", "status:pending"):
        assert await index_members(admin, prefix + key) == [], key
    assert await index_members(admin, f"{prefix}status:completed") == ["a"]
    assert await redis_store.delete("a")
    assert [text(key) for key in await admin.keys(prefix + "*")] == []


async def test_list_skips_and_removes_index_entries_of_missing_jobs(redis_store: RedisStore, admin: Redis) -> None:
    prefix = redis_store.key_prefix
    await redis_store.create(make_job("real", created=1))
    # an entry whose job is gone (expired, or lost by a failover), newer than the real job
    ghost = f"{(2**62):018d}"[:18] + ":ghost"
    await admin.zadd(f"{prefix}created", {ghost: 0})
    assert [job.id for job in (await redis_store.list(limit=1)).jobs] == ["real"]
    assert await admin.zscore(f"{prefix}created", ghost) is None


async def test_two_prefixes_in_one_database_do_not_see_each_other(redis_url: str) -> None:
    first, second = RedisStore.from_url(redis_url, key_prefix="one:"), RedisStore.from_url(redis_url, key_prefix="two:")
    try:
        await first.create(make_job("a"))
        assert await second.get("a") is None
        assert (await second.list()).jobs == []
        assert await second.claim_orphans(None, "w", lease_until=LIVE, now=NOW, limit=5) == []
        assert len((await first.list()).jobs) == 1
    finally:
        await first.close()
        await second.close()


# -- expiry -----------------------------------------------------------------------------------------


@pytest.fixture
async def ttl_store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_url, key_prefix=f"ttl-{uuid.uuid4().hex[:6]}:", ttl_seconds=3600)
    try:
        yield store
    finally:
        await store.close()


async def test_only_finished_jobs_expire(ttl_store: RedisStore, admin: Redis) -> None:
    job = await running_job(ttl_store, "a")
    await ttl_store.append_step(step("a", 0))
    await ttl_store.append_events("a", [{"seq": 0}])
    await ttl_store.request_control(ControlRequest("a", ControlKind.PAUSE, NOW))
    assert await ttls(admin, ttl_store, "a") == [-1, -1, -1, -1]
    paused = await ttl_store.save(job.evolve(status=JobStatus.PAUSED), expected_version=job.version)
    assert await ttls(admin, ttl_store, "a") == [-1, -1, -1, -1]
    done = await ttl_store.save(paused.evolve(status=JobStatus.CANCELLED), expected_version=paused.version)
    assert all(3500 < ttl <= 3600 for ttl in await ttls(admin, ttl_store, "a"))
    # what is written to a finished job expires with it
    await ttl_store.append_events("a", [{"seq": 1}])
    assert 3500 < await admin.ttl(f"{ttl_store.key_prefix}events:{{a}}") <= 3600
    assert done.status is JobStatus.CANCELLED


async def test_a_failed_job_that_runs_again_loses_its_ttl(ttl_store: RedisStore, admin: Redis) -> None:
    job = await running_job(ttl_store, "a")
    await ttl_store.append_step(step("a", 0))
    failed = await ttl_store.save(job.evolve(status=JobStatus.FAILED, error="boom"), expected_version=job.version)
    assert all(ttl > 0 for ttl in await ttls(admin, ttl_store, "a") if ttl != -2)
    rerun = await ttl_store.save(
        failed.evolve(status=JobStatus.PENDING, owner="w1", epoch=failed.epoch + 1, lease_until=LIVE),
        expected_version=failed.version,
    )
    assert rerun.status is JobStatus.PENDING
    assert [ttl for ttl in await ttls(admin, ttl_store, "a") if ttl != -2] == [-1, -1]
    assert await admin.zcard(f"{ttl_store.key_prefix}expiry") == 0


async def test_expired_jobs_leave_the_indexes(redis_url: str, admin: Redis) -> None:
    store = RedisStore.from_url(redis_url, key_prefix="short:", ttl_seconds=0.2)
    try:
        for job_id in ("old1", "old2"):
            job = await running_job(store, job_id, agent="x")
            await store.save(job.evolve(status=JobStatus.COMPLETED), expected_version=job.version)
        await asyncio.sleep(0.4)
        assert await store.get("old1") is None
        # every job that finishes clears the index entries of a few expired ones
        job = await running_job(store, "new", agent="x", created=5)
        await store.save(job.evolve(status=JobStatus.COMPLETED), expected_version=job.version)
        for key in ("created", "status:completed", "agent:x"):
            assert await index_members(admin, f"short:{key}") == ["new"], key
        assert [job.id for job in (await store.list(status=[JobStatus.COMPLETED])).jobs] == ["new"]
    finally:
        await store.close()


def test_constructor_validates_its_arguments() -> None:
    client = Redis.from_url("redis://127.0.0.1:6379/0")  # never connects
    with pytest.raises(ValueError, match="ttl_seconds"):
        RedisStore(client, ttl_seconds=0)
    with pytest.raises(ValueError, match="'fast'"):
        RedisStore(client, durability="fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        RedisStore("redis://localhost")  # type: ignore[arg-type]
    store = RedisStore(client, key_prefix="p:", ttl_seconds=10)
    assert (store.key_prefix, store.ttl_seconds, store.durability) == ("p:", 10, "normal")
    assert repr(store) == "RedisStore('redis://127.0.0.1:6379/0', key_prefix='p:')"


# -- scripts ------------------------------------------------------------------------------------------


async def test_operations_survive_a_flushed_script_cache(redis_store: RedisStore, admin: Redis) -> None:
    job = await running_job(redis_store, "a")
    await admin.script_flush()
    await redis_store.append_step(step("a", 0))
    await admin.script_flush()
    # a batch of many scripts at once, all refused with NOSCRIPT, then loaded and run again in order
    results = await asyncio.gather(
        redis_store.save(job.evolve(attempts=1), expected_version=job.version),
        *(redis_store.create(make_job(f"b{n}", created=n)) for n in range(20)),
        redis_store.append_step(step("a", 1)),
        return_exceptions=True,
    )
    assert not [result for result in results if isinstance(result, BaseException)]
    stored = await redis_store.get("a")
    assert stored is not None
    assert (stored.attempts, stored.steps) == (1, 2)
    assert len((await redis_store.list()).jobs) == 21


async def test_a_script_error_is_a_store_error_for_that_call_only(redis_store: RedisStore, admin: Redis) -> None:
    await redis_store.create(make_job("good"))
    await redis_store.create(make_job("bad"))
    # a key of the wrong type makes the script fail inside Redis
    await admin.delete(f"{redis_store.key_prefix}steps:{{bad}}")
    await admin.set(f"{redis_store.key_prefix}steps:{{bad}}", "not a list")
    results = await asyncio.gather(redis_store.read_steps("bad"), redis_store.get("good"), return_exceptions=True)
    assert isinstance(results[0], StoreError)
    assert "WRONGTYPE" in str(results[0])
    assert isinstance(results[1], Job)


# -- corrupt records ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        "{not json",
        "[1, 2]",
        '{"id": "other", "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z"}',
        '{"id": "bad"}',
    ],
    ids=["not-json", "not-an-object", "another-id", "missing-fields"],
)
async def test_a_corrupt_record_names_its_job_and_the_rest_works(
    redis_store: RedisStore, admin: Redis, garbage: str
) -> None:
    good = await running_job(redis_store, "good", created=0)
    await redis_store.create(make_job("bad", created=1))
    await redis_store.create(make_job("queued", created=2))
    await admin.hset(f"{redis_store.key_prefix}job:{{bad}}", "record", garbage)
    with pytest.raises(CorruptRecord) as from_get:
        await redis_store.get("bad")
    assert from_get.value.key == "bad"
    # a listing skips it (and logs it) instead of failing for every job
    assert [job.id for job in (await redis_store.list()).jobs] == ["queued", "good"]
    with pytest.raises(CorruptRecord):
        await redis_store.create(make_job("bad"))
    if garbage != '{"id": "bad"}':  # what Lua can check is refused before anything is written
        with pytest.raises(CorruptRecord) as from_claim:
            await redis_store.claim("bad", "w9", lease_until=LIVE, now=NOW)
        assert from_claim.value.key == "bad"
        assert text(await admin.hget(f"{redis_store.key_prefix}job:{{bad}}", "version")) == "0"
    # the other jobs still work, and so does a listing that does not reach the bad one
    assert await redis_store.get("good") == good
    assert [job.id for job in (await redis_store.list(limit=1)).jobs] == ["queued"]
    await redis_store.append_step(step("good", 0))
    claimed = await redis_store.claim_orphans(None, "w2", lease_until=LIVE, now=NOW, limit=10)
    assert [job.id for job in claimed] == ["queued"]
    assert await redis_store.delete("bad") is True
    assert [job.id for job in (await redis_store.list()).jobs] == ["queued", "good"]


async def test_corrupt_steps_events_and_controls_name_their_keys(redis_store: RedisStore, admin: Redis) -> None:
    await running_job(redis_store, "a")
    prefix = redis_store.key_prefix
    await admin.hset(f"{prefix}steps:{{a}}", "0", "garbage")  # the journal: a hash by index
    await admin.zadd(f"{prefix}events:{{a}}", {"[1]": 0})
    await admin.rpush(f"{prefix}controls:{{a}}", '{"kind": "pause"}')
    with pytest.raises(CorruptRecord) as from_steps:
        await redis_store.read_steps("a")
    assert from_steps.value.key == "a/steps/0"
    with pytest.raises(CorruptRecord) as from_events:
        await redis_store.read_events("a")
    assert from_events.value.key == "a/events/0"
    with pytest.raises(CorruptRecord) as from_controls:
        await redis_store.take_controls(["a"])
    assert from_controls.value.key == "a/controls"


async def test_events_keep_the_first_of_a_seq_and_refuse_bad_ones(redis_store: RedisStore) -> None:
    await redis_store.create(make_job("a"))
    await redis_store.append_events("a", [{"seq": 0, "text": "first"}])
    await redis_store.append_events("a", [{"seq": 0, "text": "again"}, {"seq": 1, "text": "next"}])
    assert await redis_store.read_events("a") == [{"seq": 0, "text": "first"}, {"seq": 1, "text": "next"}]
    for bad in ({"type": "token"}, {"seq": "1"}, {"seq": True}, {"seq": 2, "x": float("nan")}):
        with pytest.raises(InvalidInput):
            await redis_store.append_events("a", [{"seq": 2}, bad])
    assert len(await redis_store.read_events("a")) == 2


# -- URLs, clients and faults -------------------------------------------------------------------------


async def test_from_url_with_a_user_a_password_and_a_database(redis_url: str, admin: Redis) -> None:
    user = f"durapod-{uuid.uuid4().hex[:6]}"
    await admin.acl_setuser(user, enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"], commands=["+@all"])
    host_port = redis_url.removeprefix("redis://").rsplit("/", 1)[0]
    store = RedisStore.from_url(f"redis://{user}:s3cret@{host_port}/3")
    try:
        assert "s3cret" not in repr(store)
        assert repr(store).endswith("/3', key_prefix='durapod:')")
        await store.create(make_job("a"))
        assert await store.get("a") is not None
        db3 = Redis.from_url(f"redis://{host_port}/3")
        try:
            assert await db3.exists("durapod:job:{a}") == 1
            await db3.flushdb()
        finally:
            await db3.aclose()
        assert await admin.exists("durapod:job:{a}") == 0
    finally:
        await store.close()
    wrong = RedisStore.from_url(f"redis://{user}:nope@{host_port}/3")
    try:
        with pytest.raises(StoreError) as caught:
            await wrong.get("a")
        assert "nope" not in str(caught.value)
    finally:
        await wrong.close()
        await admin.acl_deluser(user)


async def test_open_store_builds_a_redis_store(redis_url: str) -> None:
    store = open_store(redis_url)
    try:
        assert isinstance(store, RedisStore)
        await store.create(make_job("a"))
        assert await store.get("a") is not None
    finally:
        await store.close()


async def test_a_client_that_decodes_responses_works_too(redis_url: str) -> None:
    store = RedisStore(Redis.from_url(redis_url, decode_responses=True), key_prefix="decoded:")
    try:
        job = await running_job(store, "a", metadata={"k": "v"})
        await store.append_step(step("a", 0, result="é"))
        assert [record.result for record in await store.read_steps("a")] == ["é"]
        assert [found.id for found in (await store.list(metadata={"k": "v"})).jobs] == ["a"]
        assert await store.renew_leases("w1", ["a"], lease_until=LIVE) == {"a"}
        done = await store.save(job.evolve(status=JobStatus.COMPLETED), expected_version=job.version)
        assert await store.get("a") == done
    finally:
        await store.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_unreachable_server_is_store_unavailable_naming_it() -> None:
    port = free_port()
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    try:
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
            await store.create(make_job("a"))
        with pytest.raises(StoreUnavailable):
            await store.get("a")
        with pytest.raises(StoreUnavailable):
            await store.list()
    finally:
        await store.close()


async def test_the_store_reconnects_after_the_server_dropped_it(redis_store: RedisStore, admin: Redis) -> None:
    await redis_store.create(make_job("a"))
    await admin.client_kill_filter(_type="normal", skipme=True)
    await asyncio.sleep(0.05)
    # the dropped connection is noticed before the next write, so nothing is lost
    await redis_store.create(make_job("b"))
    assert {job.id for job in (await redis_store.list()).jobs} == {"a", "b"}


async def test_an_idle_connection_closed_by_the_server_timeout_is_replaced(
    redis_store: RedisStore, admin: Redis
) -> None:
    before = text((await admin.config_get("timeout"))["timeout"])
    await redis_store.create(make_job("a"))
    await admin.config_set("timeout", 1)
    try:
        await asyncio.sleep(2.5)
        await redis_store.create(make_job("b"))
    finally:
        await admin.connection_pool.disconnect()  # its own idle connection was closed too
        await admin.config_set("timeout", before)
    assert len((await redis_store.list()).jobs) == 2


async def test_close_sends_what_is_queued_and_later_calls_fail(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, key_prefix="closing:")
    writes = [asyncio.ensure_future(store.create(make_job(f"j{n}", created=n))) for n in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert all(write.result()[1] for write in writes)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get("j0")
    reopened = RedisStore.from_url(redis_url, key_prefix="closing:")
    try:
        assert len((await reopened.list()).jobs) == 50
    finally:
        await reopened.close()


async def test_full_durability_falls_back_on_a_server_without_waitaof(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, key_prefix="full:", durability="full")
    try:
        with capture_logs() as logs:
            job = await running_job(store, "a")
            await store.append_step(step("a", 0))
            await store.save(job.evolve(status=JobStatus.COMPLETED), expected_version=job.version)
        info = await store.client.info("server")
        if tuple(int(part) for part in str(info["redis_version"]).split(".")[:2]) < (7, 2):
            assert [log["event"] for log in logs if "WAITAOF" in log["event"]] != []
        stored = await store.get("a")
        assert stored is not None
        assert (stored.status, stored.steps) == (JobStatus.COMPLETED, 1)
    finally:
        await store.close()


# -- concurrency and throughput ---------------------------------------------------------------------


async def test_fifty_concurrent_writers_one_winner_per_version(redis_store: RedisStore) -> None:
    job, _ = await redis_store.create(make_job("a"))
    for version in range(5):
        results = await asyncio.gather(
            *(redis_store.save(job.evolve(input=f"{version}-{n}"), expected_version=version) for n in range(50)),
            return_exceptions=True,
        )
        winners = [result for result in results if isinstance(result, Job)]
        assert len(winners) == 1
        losers = [result for result in results if not isinstance(result, Job)]
        assert all(isinstance(loser, VersionConflict) and loser.actual == version + 1 for loser in losers)
        job = winners[0]
        assert await redis_store.get("a") == job


async def test_throughput_smoke(redis_store: RedisStore) -> None:
    async def one(n: int) -> None:
        job = await running_job(redis_store, f"job-{n:03}", created=n)
        for index in range(3):
            await redis_store.append_step(step(job.id, index, result=str(n)))
        done = await redis_store.save(job.evolve(status=JobStatus.COMPLETED, result=n), expected_version=job.version)
        assert done.steps == 3

    pending = iter(range(300))

    async def worker() -> None:
        for n in pending:
            await one(n)

    await asyncio.gather(*(worker() for _ in range(50)))
    completed = await redis_store.list(status=[JobStatus.COMPLETED])
    assert len(completed.jobs) == 300
    assert all(job.result == int(job.id[4:]) and job.steps == 3 for job in completed.jobs)


# -- waking workers ----------------------------------------------------------------------------------


async def test_wait_for_work_wakes_when_a_job_becomes_claimable(redis_store: RedisStore) -> None:
    await redis_store.wait_for_work("triage", 0.01)  # subscribes
    loop = asyncio.get_running_loop()

    async def waited(agent: str, timeout: float) -> float:
        started = loop.time()
        await redis_store.wait_for_work(agent, timeout)
        return loop.time() - started

    waiting = asyncio.ensure_future(waited("triage", 5.0))
    await asyncio.sleep(0.05)
    await redis_store.create(make_job("a", agent="triage"))
    assert await waiting < 2.0
    # a job for any agent wakes every agent's workers; another agent's job does not
    waiting = asyncio.ensure_future(waited("triage", 5.0))
    await asyncio.sleep(0.05)
    await redis_store.create(make_job("b", agent=""))
    assert await waiting < 2.0
    waiting = asyncio.ensure_future(waited("triage", 0.3))
    await asyncio.sleep(0.05)
    await redis_store.create(make_job("c", agent="billing"))
    assert await waiting >= 0.25
    # a released lease makes its job claimable again
    await redis_store.wait_for_work("billing", 0.01)
    claimed = await redis_store.claim("c", "w1", lease_until=LIVE, now=NOW)
    assert claimed is not None
    waiting = asyncio.ensure_future(waited("billing", 5.0))
    await asyncio.sleep(0.05)
    assert await redis_store.release("c", "w1")
    assert await waiting < 2.0


async def test_wait_for_work_without_a_server_just_waits() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await store.wait_for_work("x", 0.1)
        assert loop.time() - started >= 0.09
    finally:
        await store.close()


async def test_wait_for_work_stays_cancellable_when_the_subscribe_loses_the_cancel(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a socket_timeout (redis-py 8's default) redis-py sends through asyncio.wait_for, which on Python
    # 3.11 returns normally when the caller is cancelled as the send completes. A worker's serve loop,
    # cancelled while it subscribed, then never stopped.
    subscribe = PubSub.subscribe

    async def losing_the_cancel(self: PubSub, *args: Any, **kwargs: Any) -> None:
        await subscribe(self, *args, **kwargs)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # what asyncio.wait_for does then: the send's result, not the cancel

    monkeypatch.setattr(PubSub, "subscribe", losing_the_cancel)
    waiting = asyncio.ensure_future(redis_store.wait_for_work("triage", 5.0))
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert waiting.cancelled()


# -- schedules ---------------------------------------------------------------------------------------


def schedule(agent: str, name: str, version: int = 1, cron: str = "* * * * *") -> ScheduleState:
    return ScheduleState(agent=agent, name=name, cron=cron, created_at=NOW, updated_at=NOW, version=version)


async def test_schedules_are_compare_and_set(redis_store: RedisStore) -> None:
    first = await redis_store.save_schedule(schedule("a", "daily"), expected_version=None)
    assert await redis_store.get_schedule("a", "daily") == first
    with pytest.raises(VersionConflict) as caught:
        await redis_store.save_schedule(schedule("a", "daily"), expected_version=None)
    assert caught.value.actual == 1
    changed = await redis_store.save_schedule(schedule("a", "daily", 2, "0 * * * *"), expected_version=1)
    with pytest.raises(VersionConflict):
        await redis_store.save_schedule(schedule("a", "daily", 2), expected_version=1)
    with pytest.raises(VersionConflict):
        await redis_store.save_schedule(schedule("a", "ghost", 2), expected_version=1)
    await redis_store.save_schedule(schedule("b", "hourly"), expected_version=None)
    await redis_store.save_schedule(schedule("a", "weekly"), expected_version=None)
    assert [(state.agent, state.name) for state in await redis_store.list_schedules()] == [
        ("a", "daily"),
        ("a", "weekly"),
        ("b", "hourly"),
    ]
    assert await redis_store.list_schedules("a") == [changed, schedule("a", "weekly")]
    assert await redis_store.delete_schedule("a", "daily") is True
    assert await redis_store.delete_schedule("a", "daily") is False
    assert await redis_store.get_schedule("a", "daily") is None


# -- redis-py releases ---------------------------------------------------------------------------------
# The suite runs on the newest redis-py and on the lowest admitted one (``make test-redis-lowest``); these
# check the choices made for the releases in between on stand-ins of their objects.


async def test_a_command_name_goes_to_get_connection_only_where_it_is_required() -> None:
    class Before53:  # redis-py before 5.3: get_connection(command_name, *keys, **options)
        async def get_connection(self, command_name: str, *keys: Any, **options: Any) -> str:
            return f"given {command_name}"

    class From53:  # 5.3 on: a command name is deprecated (a warning, an error in this suite)
        async def get_connection(self, command_name: str | None = None, *keys: Any, **options: Any) -> str:
            assert command_name is None and not keys
            return "given nothing"

    given: list[object] = [await _connection_getter(cast(Any, pool))() for pool in (Before53(), From53())]
    assert given == ["given EVALSHA", "given nothing"]


@pytest.mark.parametrize(
    ("answer", "stale"),
    [
        (False, False),
        (True, True),
        (b"", True),
        (b"+", True),
        (RedisConnectionError("gone"), True),
        (RedisError("Buffer is closed."), True),
    ],
    ids=["idle", "data", "eof-before-5.0.8", "byte-before-5.0.8", "broken", "disconnected-before-8.0"],
)
async def test_an_idle_connection_is_stale_when_closed_or_holding_data(answer: object, stale: bool) -> None:
    async def probe() -> object:
        if isinstance(answer, Exception):
            raise answer
        return answer

    class Before8:  # can_read_destructive only
        can_read_destructive = staticmethod(probe)

    class From8:  # can_read, and can_read_destructive deprecated
        can_read = staticmethod(probe)

        async def can_read_destructive(self) -> bool:
            raise AssertionError("deprecated since redis-py 8.0")

    assert await _is_stale(cast(Any, Before8())) is stale
    assert await _is_stale(cast(Any, From8())) is stale


# -- helpers used above -------------------------------------------------------------------------------


def test_index_members_order_like_created_at_then_id() -> None:
    from durapod.stores._redis_codec import _member

    moments = [datetime(1, 1, 2, tzinfo=UTC), NOW - timedelta(days=20000), NOW, NOW + timedelta(days=2_500_000)]
    members = [_member(moment, job_id) for moment in moments for job_id in ("a", "b", "ab")]
    assert sorted(members) == [
        _member(moment, job_id) for moment, job_id in sorted((m, j) for m in moments for j in ("a", "b", "ab"))
    ]
    assert all(len(member.split(":", 1)[0]) == 18 for member in members)
