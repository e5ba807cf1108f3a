"""A worker killed mid-stream: another continues the job, and a consumer resumes with no gap."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from durapod import Client, Event, JobStatus, SQLiteStore, TokenEvent, open_store
from tests.test_stream_gaps import output
from tests.workers.stream_worker import WORDS, expected_text

pytestmark = pytest.mark.slow

WORKER = Path(__file__).parent / "workers" / "stream_worker.py"
ROOT = Path(__file__).parent.parent


EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def start_worker(url: str, worker_id: str, *options: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(WORKER), url, worker_id, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


async def read_until_tokens(client: Client, job_id: str, count: int) -> list[Event]:
    seen: list[Event] = []
    async for event in client.stream(job_id):
        seen.append(event)
        if sum(isinstance(e, TokenEvent) for e in seen) >= count:
            return seen
    raise AssertionError("the job ended before the consumer saw enough tokens")


def read_live_until_tokens(process: subprocess.Popen[str], count: int) -> list[Event]:
    """The events a live subscriber inside the worker process printed, up to its ``count``-th token."""
    assert process.stdout is not None
    seen: list[Event] = []
    while sum(isinstance(event, TokenEvent) for event in seen) < count:
        line = process.stdout.readline()
        assert line, "the worker stopped before its subscriber saw enough tokens"
        kind, _, body = line.partition(" ")
        if kind == "event":
            seen.append(EVENT.validate_json(body))
    return seen


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that worker processes share: an SQLite file, or the session's redis-server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stream.db'}"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.mark.timeout(120)
def test_a_live_subscriber_never_sees_a_seq_that_recovery_reuses(store_url: str) -> None:
    """A subscriber in the worker's own process reads live events; the worker is SIGKILLed mid-stream.
    Every seq it saw keeps its event in the log written by the recovering worker, and a consumer that
    resumes after the last seq it saw gets the rest with no gap, voiding the abandoned partial output."""
    url = store_url

    async def submit() -> None:
        async with Client(open_store(url)) as client:
            await client.submit("story", "tell me", agent="storyteller")

    asyncio.run(submit())
    first = start_worker(url, "first", "--watch", "story")
    try:
        seen = read_live_until_tokens(first, 25)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        second = start_worker(url, "second")

        async def after_the_kill() -> tuple[list[Event], list[Event], JobStatus]:
            async with Client(open_store(url), poll_interval=0.05) as client:
                rest = [event async for event in client.stream("story", after=seen[-1].seq)]
                logged = [event async for event in client.stream("story")]
                job = await client.wait("story", timeout=60)
                return rest, logged, job.status

        rest, logged, status = asyncio.run(after_the_kill())
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=30)

    assert status is JobStatus.COMPLETED
    by_seq = {event.seq: event for event in logged}
    for event in seen:
        assert by_seq.get(event.seq) == event, f"seq {event.seq} was seen live as {event!r}, logged differently"
    events = seen + rest
    assert [event.seq for event in events] == list(range(len(events)))  # no gap, no duplicate
    assert events == logged
    assert output(events) == expected_text()


@pytest.mark.timeout(120)
def test_a_consumer_resumes_after_a_worker_is_killed_mid_stream(tmp_path: Path) -> None:
    db = tmp_path / "stream.db"
    url = f"sqlite:///{db}"

    async def submit() -> None:
        async with Client(SQLiteStore(db)) as client:
            await client.submit("story", "tell me", agent="storyteller")

    asyncio.run(submit())
    # held after 25 tokens, mid-chunk: the kill lands before the chunk's checkpoint, however late the
    # consumer sees the 25th token
    first = start_worker(url, "first", "--hold-after", "25")
    try:

        async def before_the_kill() -> list[Event]:
            async with Client(SQLiteStore(db), poll_interval=0.02) as client:
                return await read_until_tokens(client, "story", 25)

        seen = asyncio.run(before_the_kill())
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        second = start_worker(url, "second")

        async def after_the_kill() -> tuple[list[Event], JobStatus, object]:
            async with Client(SQLiteStore(db), poll_interval=0.05) as client:
                rest = [event async for event in client.stream("story", after=seen[-1].seq)]
                job = await client.wait("story", timeout=60)
                return rest, job.status, job.result

        rest, status, result = asyncio.run(after_the_kill())
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    finally:
        for process in (first,):
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=30)

    assert status is JobStatus.COMPLETED
    assert result == expected_text()
    events = seen + rest
    assert [event.seq for event in events] == list(range(len(events)))  # no gap, no duplicate
    tokens = [event for event in events if isinstance(event, TokenEvent)]
    fresh = [event.token for event in tokens if not event.replayed]
    replayed = [event.token for event in tokens if event.replayed]
    # every word was streamed once as new; words past the last checkpoint are streamed again, marked
    assert "".join(fresh) == expected_text()
    assert len(fresh) == WORDS
    assert replayed, "the replaying execution re-emitted nothing"
    assert all(token in fresh for token in replayed)
    assert output(events) == expected_text()  # the step_restarted event voids the dead execution's partial output
