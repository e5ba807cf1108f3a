"""One bad record never breaks the rest: too-deep input is refused at the door, and a corrupt stored record
(an unknown field, bad JSON) is reported for its own job only, on real SQLite files and real Redis keys."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from durapod import Client, CorruptRecord, DurableAgent, InvalidInput, JobContext, MemoryStore, PostgresStore
from durapod._control import apply_control
from durapod.cli import main
from durapod.lowlevel.clock import SYSTEM_CLOCK
from durapod.models import MAX_JSON_DEPTH, ControlKind, utcnow
from durapod.stores.base import ControlRequest, Store
from durapod.stores.redis import RedisStore
from durapod.stores.sqlite import SQLiteStore
from durapod.testing import capture_logs


def nested(depth: int) -> Any:
    """A JSON value ``depth`` deep: ``nested(2) == [[0]]``."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


async def echo(text: Any, ctx: JobContext) -> Any:
    return text


# -- too deep: refused before anything is written -----------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 200, 255, 5_000])
@pytest.mark.parametrize("what", ["input", "metadata"])
async def test_too_deep_input_or_metadata_is_refused_before_anything_is_written(
    store: Store, what: str, depth: int
) -> None:
    value = nested(depth)
    input_value, metadata = (value, None) if what == "input" else (None, {"deep": value})
    client = Client(store)
    with pytest.raises(InvalidInput) as submitted:
        await client.submit("deep-1", input_value, metadata=metadata)
    assert submitted.value.what == what
    assert f"more than {MAX_JSON_DEPTH} deep" in str(submitted.value)
    async with DurableAgent(echo, store, name="echo") as durable:
        with pytest.raises(InvalidInput) as started:
            await durable.start("deep-2", input_value, metadata=metadata)
        assert started.value.what == what
    assert await store.get("deep-1") is None
    assert await store.get("deep-2") is None
    assert (await store.list()).jobs == []


async def test_input_and_metadata_at_the_depth_limit_are_stored_and_read_back(store: Store) -> None:
    deepest = nested(MAX_JSON_DEPTH)
    client = Client(store)
    await client.submit("at-limit", deepest, metadata={"deep": nested(MAX_JSON_DEPTH - 1)})
    job = await client.status("at-limit")
    assert job is not None
    assert job.input == deepest
    assert job.metadata == {"deep": nested(MAX_JSON_DEPTH - 1)}
    assert [listed.id for listed in await client.list()] == ["at-limit"]


# -- a corrupt record is that job's problem alone -----------------------------------------------------


def unknown_field(record: str) -> str:
    data = json.loads(record)
    data["surprise"] = 1
    return json.dumps(data)


def bad_json(record: str) -> str:
    return record[: len(record) // 2]


CORRUPTIONS = {"unknown-field": unknown_field, "bad-json": bad_json}


async def fill(client: Client) -> None:
    """Six jobs, oldest first: good-0, bad-1, good-2, bad-3, bad-4, good-5 (the bad ones are spoiled later)."""
    for index, job_id in enumerate(["good-0", "bad-1", "good-2", "bad-3", "bad-4", "good-5"]):
        await client.submit(job_id, {"n": index}, metadata={"team": "a"})


async def check_only_the_bad_jobs_suffer(client: Client) -> None:
    with capture_logs() as logs:
        assert [job.id for job in await client.list()] == ["good-5", "good-2", "good-0"]
        assert [job.id for job in await client.list(metadata={"team": "a"})] == ["good-5", "good-2", "good-0"]
        # pages stay full although bad records sit between the good ones
        seen: list[str] = []
        page = await client.page(limit=1)
        while True:
            assert len(page.jobs) <= 1
            seen += [job.id for job in page.jobs]
            if page.next_cursor is None:
                break
            page = await client.page(limit=1, cursor=page.next_cursor)
        assert seen == ["good-5", "good-2", "good-0"]
    skipped = {entry["job_id"] for entry in logs if entry["event"] == "corrupt job record skipped in a listing"}
    assert skipped == {"bad-1", "bad-3", "bad-4"}
    assert all(entry["log_level"] == "warning" for entry in logs if entry.get("job_id") in skipped)
    for job_id in ("bad-1", "bad-3", "bad-4"):
        with pytest.raises(CorruptRecord) as raised:
            await client.status(job_id)
        assert raised.value.key == job_id
    good = await client.status("good-2")
    assert good is not None and good.input == {"n": 2}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS), ids=list(CORRUPTIONS))
async def test_a_corrupt_sqlite_row_is_skipped_by_listings_and_named_by_status(tmp_path: Path, corrupt: str) -> None:
    path = tmp_path / "jobs.db"
    async with Client(SQLiteStore(path)) as client:
        await fill(client)
        conn = sqlite3.connect(path)  # another connection, as another process would write the file
        try:
            for job_id in ("bad-1", "bad-3", "bad-4"):
                (record,) = conn.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
                conn.execute("UPDATE jobs SET record = ? WHERE id = ?", (CORRUPTIONS[corrupt](record), job_id))
            conn.commit()
        finally:
            conn.close()
        await check_only_the_bad_jobs_suffer(client)


@pytest.mark.redis
@pytest.mark.parametrize("corrupt", list(CORRUPTIONS), ids=list(CORRUPTIONS))
async def test_a_corrupt_redis_record_is_skipped_by_listings_and_named_by_status(redis_url: str, corrupt: str) -> None:
    store = RedisStore.from_url(redis_url, key_prefix=f"rec-{uuid.uuid4().hex[:8]}:")
    async with Client(store) as client:
        await fill(client)
        admin = Redis.from_url(redis_url)
        try:
            for job_id in ("bad-1", "bad-3", "bad-4"):
                key = f"{store.key_prefix}job:{{{job_id}}}"
                record = await admin.hget(key, "record")
                assert isinstance(record, bytes)
                await admin.hset(key, "record", CORRUPTIONS[corrupt](record.decode()))
        finally:
            await admin.aclose()
        await check_only_the_bad_jobs_suffer(client)


def test_cli_ls_lists_the_others_and_show_names_the_corrupt_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cli.db"

    async def prepare() -> None:
        async with Client(SQLiteStore(path)) as client:
            await fill(client)

    asyncio.run(prepare())
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE jobs SET record = '{not json' WHERE id = 'bad-1'")
        (record,) = conn.execute("SELECT record FROM jobs WHERE id = 'bad-3'").fetchone()
        conn.execute("UPDATE jobs SET record = ? WHERE id = 'bad-3'", (unknown_field(record),))
        conn.commit()
    finally:
        conn.close()
    url = f"sqlite:///{path}"
    code = main(["--store", url, "ls"])
    out = capsys.readouterr().out
    assert code == 0
    for job_id in ("good-0", "good-2", "good-5", "bad-4"):
        assert job_id in out
    assert "bad-1" not in out and "bad-3" not in out
    for job_id in ("bad-1", "bad-3"):
        code = main(["--store", url, "show", job_id])
        err = capsys.readouterr().err
        assert code == 1
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("durapod: error: corrupt record"), err
        assert repr(job_id) in lines[0]


# -- error messages: verbatim by default, or what redact_errors makes of them ---------------------------


async def leaky(text: Any, ctx: JobContext) -> Any:
    raise RuntimeError(f"GET https://api.example.com/?token=SECRET-{text} failed")


def names_only(exc: BaseException) -> str:
    return f"{type(exc).__name__} (details withheld)"


def broken(exc: BaseException) -> str:
    raise KeyError("oops")


@pytest.mark.parametrize(
    ("redact", "expected"),
    [
        (None, "GET https://api.example.com/?token=SECRET-1 failed"),
        (names_only, "RuntimeError (details withheld)"),
        (broken, "RuntimeError (redact_errors raised KeyError)"),
    ],
    ids=["verbatim-by-default", "redacted", "broken-hook-stores-the-class-name"],
)
async def test_redact_errors_decides_the_stored_error_text(store: Store, redact: Any, expected: str) -> None:
    async with DurableAgent(leaky, store, name="leaky", max_retries=1, retry_delay=0.01, redact_errors=redact) as d:
        job = await asyncio.wait_for(d.run("job-1", 1), timeout=20)
    assert job.status == "failed"
    assert job.error == expected
    assert job.error_type == "RuntimeError"
    errors = [event for event in await store.read_events("job-1") if event.get("type") == "error"]
    assert [event["error"] for event in errors] == [expected, expected]  # the retried attempt and the last
    if redact is not None:
        assert "SECRET" not in json.dumps(await store.read_events("job-1"))
        assert "SECRET" not in (await store.get("job-1") or job).model_dump_json()


async def test_an_error_message_with_a_lone_surrogate_is_stored_on_every_store(store: Store) -> None:
    async def odd(text: Any, ctx: JobContext) -> Any:
        raise ValueError("bad byte \udcff here")

    async with DurableAgent(odd, store, name="odd", max_retries=0) as durable:
        job = await asyncio.wait_for(durable.run("job-1"), timeout=20)
    assert job.status == "failed"
    assert job.error == "bad byte ? here"


def test_redact_errors_must_be_callable() -> None:
    with pytest.raises(TypeError, match="redact_errors"):
        DurableAgent(echo, SQLiteStore(":memory:"), redact_errors="no")  # type: ignore[arg-type]


# -- noise: pause quickly followed by cancel prints nothing --------------------------------------------

PAUSE_THEN_CANCEL = """
import asyncio, collections, gc, os, sys, tempfile
from durapod import DurableAgent, MemoryStore, SQLiteStore

async def tick():
    await asyncio.sleep(0.0005)
    return 1

async def busy(text, ctx):
    for index in range(500):
        await asyncio.gather(ctx.step(f"a{index}", tick), ctx.step(f"b{index}", tick))
        await ctx.emit_token("x")
    return "done"

async def main(kind, pairs):
    store = MemoryStore() if kind == "memory" else SQLiteStore(os.path.join(tempfile.mkdtemp(), "jobs.db"))
    ended = collections.Counter()
    async with DurableAgent(busy, store, name="busy", pause_timeout=0.001) as durable:
        for index in range(pairs):
            await durable.start(f"job-{index}", index)
            for _ in range(index % 7):  # the pause lands at different points of the first steps
                await asyncio.sleep(0)
            pause = asyncio.ensure_future(durable.pause(f"job-{index}", wait=index % 2 == 0))
            for _ in range(index % 3):
                await asyncio.sleep(0)
            cancel = asyncio.ensure_future(durable.cancel(f"job-{index}"))
            await asyncio.gather(pause, cancel, return_exceptions=True)
            job = await durable.status(f"job-{index}")
            ended[job.status.value] += 1
    await store.close()
    print(dict(ended))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
gc.collect()  # a task whose exception nobody retrieved is reported when it is collected
"""


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_pause_quickly_followed_by_cancel_prints_nothing(kind: str) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", PAUSE_THEN_CANCEL, kind, "300"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout.replace("'", '"')) == {"cancelled": 300}


# -- control requests: typed at the store API, garbage in a store dropped with a warning -----------------


async def a_job(store: Store, job_id: str = "job-1") -> None:
    await Client(store).submit(job_id, "x")


async def test_a_control_request_of_unknown_kind_is_refused_at_the_store_api(store: Store) -> None:
    await a_job(store)
    now = utcnow()
    for kind in ("explode", "", "PAUSE", "resume "):
        with pytest.raises(ValueError, match=f"invalid control request kind {kind!r} for job 'job-1'"):
            ControlRequest("job-1", kind, now)  # type: ignore[arg-type]
    assert ControlRequest("job-1", "resume", now).kind is ControlKind.RESUME  # type: ignore[arg-type]
    # a request whose kind was changed after it was made is refused by the store itself: nothing is written
    tampered = ControlRequest("job-1", ControlKind.PAUSE, now)
    object.__setattr__(tampered, "kind", "explode")
    with pytest.raises(ValueError, match="'explode'"):
        await store.request_control(tampered)
    with pytest.raises(ValueError, match="'explode'"):
        await apply_control(store, "job-1", "explode", SYSTEM_CLOCK)
    assert await store.take_controls(["job-1"]) == []
    # every real kind is recorded and handed over, resume too
    for kind in ControlKind:
        await store.request_control(ControlRequest("job-1", kind, now))
    assert [request.kind for request in await store.take_controls(["job-1"])] == list(ControlKind)


async def write_garbage_controls(store: Store, request: pytest.FixtureRequest, job_id: str, kinds: list[str]) -> None:
    """Control requests of ``kinds`` written straight into the store, as a bug or another program might."""
    moment = utcnow()
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            conn.executemany(
                "INSERT INTO controls (job_id, kind, payload, requested_at) VALUES (?, ?, 'null', ?)",
                [(job_id, kind, index) for index, kind in enumerate(kinds)],
            )
        return
    if isinstance(store, PostgresStore):
        import asyncpg

        connection = await asyncpg.connect(request.getfixturevalue("postgres_url").partition("?")[0])
        try:
            await connection.executemany(
                f'INSERT INTO "{store.schema}".controls (job_id, kind, payload, requested_at) VALUES ($1, $2, $3, $4)',
                [(job_id, kind, "null", index) for index, kind in enumerate(kinds)],
            )
        finally:
            await connection.close()
        return
    assert isinstance(store, RedisStore)
    admin = Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        for kind in kinds:
            entry = {"kind": kind, "requested_at": moment.isoformat(), "payload": None}
            await admin.rpush(f"{store.key_prefix}controls:{{{job_id}}}", json.dumps(entry))
    finally:
        await admin.aclose()


async def test_control_requests_of_unknown_kind_found_in_a_store_are_dropped_with_a_warning(
    store: Store, request: pytest.FixtureRequest
) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("a MemoryStore holds typed requests only (refused at the door, see the test above)")
    await a_job(store)
    await write_garbage_controls(store, request, "job-1", ["explode", "cancel!", ""])
    await store.request_control(ControlRequest("job-1", ControlKind.PAUSE, utcnow()))
    with capture_logs() as logs:
        taken = await store.take_controls(["job-1"])
    assert [(request.job_id, request.kind) for request in taken] == [("job-1", ControlKind.PAUSE)]
    ignored = [entry for entry in logs if entry["event"] == "control request ignored"]
    assert sorted(entry["kind"] for entry in ignored) == ["", "cancel!", "explode"]
    assert all(entry["job_id"] == "job-1" and entry["log_level"] == "warning" for entry in ignored)
    assert await store.take_controls(["job-1"]) == []  # dropped for good, not handed out again
    job = await store.get("job-1")
    assert job is not None and job.status == "pending"  # garbage never cancels a job
