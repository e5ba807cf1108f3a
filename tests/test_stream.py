"""Streaming with persistence: run_stream, stream(after=), slow and vanishing consumers, replays."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from durapod import (
    DoneEvent,
    DurableAgent,
    ErrorEvent,
    Event,
    Job,
    JobContext,
    JobStatus,
    JobStatusEvent,
    MemoryStore,
    SQLiteStore,
    StepEvent,
    StepRestartedEvent,
    TokenEvent,
    ToolCallEvent,
)
from durapod.events import parse_event
from durapod.testing import ScriptedLLM

WAIT = 10.0


def assert_contiguous(events: list[Event], start: int = 0) -> None:
    assert [event.seq for event in events] == list(range(start, start + len(events)))


async def test_run_stream_yields_status_tokens_and_done_in_order() -> None:
    llm = ScriptedLLM(["Your invoice is paid"])

    async def agent(prompt: str) -> AsyncIterator[str]:
        async for token in llm.stream(prompt):
            yield token

    store = MemoryStore()
    async with DurableAgent(agent, store) as durable:
        events = [event async for event in durable.run_stream("j", "Process invoice")]
    assert_contiguous(events)
    assert isinstance(events[0], JobStatusEvent)
    assert events[0].job.status is JobStatus.RUNNING
    tokens = [event.token for event in events if isinstance(event, TokenEvent)]
    assert "".join(tokens) == "Your invoice is paid"
    assert isinstance(events[-2], DoneEvent)
    assert events[-2].content == "Your invoice is paid"
    assert isinstance(events[-1], JobStatusEvent)
    assert events[-1].job.status is JobStatus.COMPLETED
    assert all(event.job_id == "j" for event in events)
    logged = [parse_event(data) for data in await store.read_events("j")]
    assert logged == events


async def test_a_consumer_that_breaks_early_does_not_stop_the_job() -> None:
    async def agent(prompt: str) -> AsyncIterator[str]:
        for index in range(50):
            await asyncio.sleep(0)
            yield f"t{index} "

    store = MemoryStore()
    async with DurableAgent(agent, store) as durable:
        seen = []
        async for event in durable.run_stream("j", "x"):
            seen.append(event)
            if len(seen) == 3:
                break
        job = await durable.wait("j", timeout=WAIT)
        assert job.status is JobStatus.COMPLETED
        assert job.result == "".join(f"t{index} " for index in range(50))
        full = [event async for event in durable.stream("j")]
    assert_contiguous(full)
    assert full[:3] == seen
    assert sum(isinstance(event, TokenEvent) for event in full) == 50


async def test_a_plain_agent_still_streams_status_and_done() -> None:
    async def plain(text: str) -> str:
        return text.upper()

    async with DurableAgent(plain, MemoryStore()) as durable:
        events = [event async for event in durable.run_stream("j", "abc")]
    assert [event.type for event in events] == ["job_status", "done", "job_status"]
    assert isinstance(events[1], DoneEvent) and events[1].content == "ABC"


async def test_run_stream_honours_retries() -> None:
    calls = 0

    async def flaky(text: str) -> AsyncIterator[str]:
        nonlocal calls
        calls += 1
        yield f"attempt{calls} "
        if calls == 1:
            raise RuntimeError("first attempt fails")
        yield "ok"

    async with DurableAgent(flaky, MemoryStore(), retry_delay=0.0, jitter=0.0) as durable:
        events = [event async for event in durable.run_stream("j", "x")]
    assert_contiguous(events)
    kinds = [event.type for event in events]
    assert kinds == [
        "job_status",
        "token",
        "error",
        "job_status",
        "job_status",
        "step_restarted",
        "token",
        "token",
        "done",
        "job_status",
    ]
    error = events[2]
    assert isinstance(error, ErrorEvent)
    assert error.will_retry and error.error == "first attempt fails" and error.error_type == "RuntimeError"
    retry_status = events[3]
    assert isinstance(retry_status, JobStatusEvent) and retry_status.job.status is JobStatus.PENDING
    restarted = events[5]  # the first attempt's output is void: the second streams its own
    assert isinstance(restarted, StepRestartedEvent) and (restarted.index, restarted.from_seq) == (0, 1)
    final = events[-1]
    assert isinstance(final, JobStatusEvent) and final.job.result == "attempt2 ok"


async def test_an_agent_that_yields_an_error_event_fails_the_job() -> None:
    async def reporting(text: str) -> AsyncIterator[object]:
        yield "partial "
        yield ErrorEvent(error="upstream refused", error_type="UpstreamError")

    async with DurableAgent(reporting, MemoryStore(), max_retries=0) as durable:
        events = [event async for event in durable.run_stream("j", "x")]
        job = await durable.status("j")
    assert job is not None
    assert job.status is JobStatus.FAILED
    assert (job.error, job.error_type) == ("upstream refused", "UpstreamError")
    assert isinstance(events[-2], ErrorEvent) and not events[-2].will_retry
    assert isinstance(events[-1], JobStatusEvent) and events[-1].job.status is JobStatus.FAILED


async def test_stream_attaches_after_a_sequence_number_and_follows_live_events() -> None:
    release = asyncio.Event()

    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.emit(ToolCallEvent(name="search", arguments={"q": text}))
        await ctx.emit_token("a")
        await release.wait()
        await ctx.emit_token("b")
        return "ab"

    async with DurableAgent(agent, MemoryStore()) as durable:
        await durable.start("j", "query")
        first = durable.stream("j")
        seen = [await anext(first) for _ in range(3)]  # status, tool_call, token a
        await first.aclose()
        assert isinstance(seen[1], ToolCallEvent) and seen[1].arguments == {"q": "query"}
        follower = asyncio.create_task(_collect(durable.stream("j", after=seen[-1].seq)))
        await asyncio.sleep(0)
        release.set()
        rest = await asyncio.wait_for(follower, WAIT)
    assert_contiguous(rest, start=3)
    assert [event.type for event in rest] == ["token", "done", "job_status"]


async def test_a_slow_subscriber_never_blocks_the_agent_and_misses_nothing() -> None:
    tokens = 3000  # more than a subscriber's buffer

    async def chatty(text: str) -> AsyncIterator[str]:
        for index in range(tokens):
            yield f"{index},"

    async with DurableAgent(chatty, MemoryStore()) as durable:
        stream = durable.run_stream("j", "x")
        first = await anext(stream)  # subscribed, then stops reading while the agent runs on
        job = await durable.wait("j", timeout=WAIT)
        assert job.status is JobStatus.COMPLETED
        rest = [event async for event in stream]
    events = [first, *rest]
    assert_contiguous(events)
    assert sum(isinstance(event, TokenEvent) for event in events) == tokens


async def test_events_of_replayed_steps_are_not_emitted_again() -> None:
    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.emit_token("before ")
        await ctx.step("draft", str.upper, text)
        answer = await ctx.interrupt("approve?")
        await ctx.emit_token(f"after:{answer}")
        return "done"

    async with DurableAgent(agent, MemoryStore()) as durable:
        paused = [event async for event in durable.run_stream("j", "x")]
        assert paused[-1].type == "job_status"
        assert [e.type for e in paused] == ["job_status", "token", "step", "interrupt", "job_status"]
        assert isinstance(paused[2], StepEvent) and paused[2].result == "X"
        await durable.resume("j", "yes")
        rest = await _collect(durable.stream("j", after=paused[-1].seq))
    assert_contiguous(rest, start=len(paused))
    tokens = [event.token for event in rest if isinstance(event, TokenEvent)]
    assert tokens == ["after:yes"]  # "before " was emitted during the replay and is not repeated


async def test_a_recovered_job_marks_events_it_repeats_as_replayed() -> None:
    store = MemoryStore()
    now_job = await _crashed_job(store, "j")
    await store.append_events(
        "j",
        [
            {"type": "job_status", "job": now_job.model_dump(mode="json"), "job_id": "j", "seq": 0},
            {"type": "token", "token": "Hel", "job_id": "j", "seq": 1},
            {"type": "token", "token": "lo", "job_id": "j", "seq": 2},
        ],
    )

    async def agent(text: str) -> AsyncIterator[str]:
        for token in ["Hel", "lo", " world"]:
            yield token

    async with DurableAgent(agent, store, name="agent") as durable:
        job = await durable.wait("j", timeout=WAIT)
        events = [event async for event in durable.stream("j")]
    assert job.status is JobStatus.COMPLETED and job.result == "Hello world"
    assert_contiguous(events)
    tokens = [(event.token, event.replayed) for event in events if isinstance(event, TokenEvent)]
    assert tokens == [("Hel", False), ("lo", False), ("Hel", True), ("lo", True), (" world", False)]


async def _crashed_job(store: MemoryStore, job_id: str) -> Job:
    from durapod.models import utcnow

    now = utcnow()
    job = Job(
        id=job_id,
        agent="agent",
        input="x",
        status=JobStatus.RUNNING,
        created_at=now,
        updated_at=now,
        version=2,
        owner="dead",
        lease_until=now - timedelta(seconds=5),
        epoch=1,
        attempts=1,
    )
    await store.create(job)
    return job


async def _collect(stream: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in stream]


async def test_stream_of_an_unknown_job_raises() -> None:
    async def agent(text: str) -> str:
        return text

    from durapod import JobNotFound

    async with DurableAgent(agent, MemoryStore()) as durable:
        with pytest.raises(JobNotFound):
            await anext(durable.stream("missing"))


async def test_step_and_status_events_are_derived_from_the_writes_that_carry_them(tmp_path: Path) -> None:
    """A 3-step job's log reads job_status, step x3, done, job_status, live and from the store alike; the
    step events come from the journal and the status events from the job writes: the SQLite ``events``
    table holds only the first status change (kept there when the job's record was replaced) and the done
    event; the last status change is the job's row itself."""

    async def agent(job_input: str, ctx: JobContext) -> str:
        for index in range(3):
            await ctx.step(f"s{index}", asyncio.sleep, 0, f"r{index}")
        return "ok"

    store = SQLiteStore(tmp_path / "jobs.db")
    async with DurableAgent(agent, store) as durable:
        live = [event async for event in durable.run_stream("j", "in")]
    logged = [parse_event(data) for data in await store.read_events("j")]
    await store.close()
    assert logged == live
    assert [event.type for event in live] == ["job_status", "step", "step", "step", "done", "job_status"]
    assert_contiguous(live)
    steps = [event for event in live if isinstance(event, StepEvent)]
    assert [(event.name, event.index, event.result) for event in steps] == [
        ("s0", 0, "r0"),
        ("s1", 1, "r1"),
        ("s2", 2, "r2"),
    ]
    final = live[-1]
    assert isinstance(final, JobStatusEvent) and final.job.status is JobStatus.COMPLETED and final.job.result == "ok"
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as conn:
        rows = [json.loads(record)["type"] for (record,) in conn.execute("SELECT record FROM events ORDER BY seq")]
        journal = [
            json.loads(record)["event_seq"] for (record,) in conn.execute("SELECT record FROM steps ORDER BY idx")
        ]
        (status_seq,) = conn.execute("SELECT status_seq FROM jobs WHERE id = 'j'").fetchone()
    assert rows == ["job_status", "done"]
    assert status_seq == final.seq == 5
    assert journal == [1, 2, 3]
