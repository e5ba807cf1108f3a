"""Streams without gaps on every store: many subscribers under load, custom events, abandoned output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from durapod import (
    CustomEvent,
    DurableAgent,
    Event,
    JobContext,
    JobStatus,
    JobStatusEvent,
    MemoryStore,
    SQLiteStore,
    StepRestartedEvent,
    Store,
    TokenEvent,
    _stream,
)
from durapod.actors.eventlog import EventLog, Flusher
from durapod.events import parse_event

WAIT = 30.0
JOBS = 30
TOKENS = 300
SUBSCRIBERS = 5
#: a subscriber that started when the first one had seen this many more events than the one before it
STAGGER = 60


def output(events: list[Event]) -> str:
    """The agent's text as a consumer rebuilds it: tokens, minus the output a ``step_restarted`` voids."""
    tokens: list[TokenEvent] = []
    for event in events:
        if isinstance(event, StepRestartedEvent):
            tokens = [token for token in tokens if token.seq < event.from_seq]
        elif isinstance(event, TokenEvent):
            tokens.append(event)
    return "".join(token.token for token in tokens)


async def test_every_subscriber_sees_every_event_once_in_order_under_load(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small live queues: subscribers fall behind the batches they are handed and catch up from the log,
    # over and over, while later batches are being written.
    monkeypatch.setattr(_stream, "SUBSCRIBER_BUFFER", 16)

    async def talker(text: str, ctx: JobContext) -> str:
        for index in range(TOKENS):
            await ctx.emit_token(f"{index} ")
            await asyncio.sleep(0)  # a model streams: other tasks (and the worker's flusher) run meanwhile
        return text

    async def subscriber(durable: DurableAgent, job_id: str, starts: list[asyncio.Event], number: int) -> list[int]:
        await starts[number].wait()
        seqs: list[int] = []
        async for event in durable.stream(job_id):
            seqs.append(event.seq)
            for _ in range(number):  # later subscribers are slower: they fall behind and catch up
                await asyncio.sleep(0)
            if number == 0:  # the first subscriber starts the others, one after another, mid-stream
                later = len(seqs) // STAGGER
                if later < SUBSCRIBERS:
                    starts[later].set()
        return seqs

    async with DurableAgent(talker, store) as durable:
        followers: dict[str, list[asyncio.Task[list[int]]]] = {}
        for job in range(JOBS):
            job_id = f"job-{job}"
            starts = [asyncio.Event() for _ in range(SUBSCRIBERS)]
            starts[0].set()
            followers[job_id] = [
                asyncio.create_task(subscriber(durable, job_id, starts, number)) for number in range(SUBSCRIBERS)
            ]
            await durable.start(job_id, job_id)
        async with asyncio.timeout(WAIT * 2):
            seen = {job_id: await asyncio.gather(*tasks) for job_id, tasks in followers.items()}
        for job_id, subscribers in seen.items():
            logged = [parse_event(data).seq for data in await store.read_events(job_id)]
            assert len(logged) == TOKENS + 3  # running, the tokens, done, completed
            assert logged == list(range(len(logged)))
            for number, seqs in enumerate(subscribers):
                assert seqs == logged, f"subscriber {number} of {job_id} saw {_gaps(seqs, logged)}"


def _gaps(seqs: list[int], logged: list[int]) -> str:
    missing = sorted(set(logged) - set(seqs))
    twice = len(seqs) - len(set(seqs))
    return f"{len(seqs)} events, missing {missing[:10]}, {twice} repeated"


async def test_custom_events_stream_with_their_data(store: Store) -> None:
    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.emit({"type": "progress", "done": 1, "of": 2})
        await ctx.emit(CustomEvent(type="phase", data={"name": "draft", "data": [1]}))
        await ctx.emit_token(text)
        return text

    async with DurableAgent(agent, store) as durable:
        live = [event async for event in durable.run_stream("j", "x")]
        logged = [event async for event in durable.stream("j")]
    assert live == logged
    customs = [event for event in live if isinstance(event, CustomEvent)]
    assert [(event.type, event.data) for event in customs] == [
        ("progress", {"done": 1, "of": 2}),
        ("phase", {"name": "draft", "data": [1]}),
    ]
    assert [event.seq for event in customs] == [1, 2] and all(event.job_id == "j" for event in customs)
    assert isinstance(live[-1], JobStatusEvent) and live[-1].job.status is JobStatus.COMPLETED


async def test_a_generator_agent_yields_custom_events(store: Store) -> None:
    async def agent(text: str) -> AsyncIterator[object]:
        yield {"type": "progress", "stage": "start"}
        yield text

    async with DurableAgent(agent, store) as durable:
        events = [event async for event in durable.run_stream("j", "hi")]
    custom = events[1]
    assert isinstance(custom, CustomEvent) and (custom.type, custom.data) == ("progress", {"stage": "start"})
    assert output(events) == "hi"


async def test_emitting_a_built_in_type_with_wrong_fields_is_refused() -> None:
    refused: list[str] = []

    async def agent(text: str, ctx: JobContext) -> str:
        for bad in ({"type": "token", "text": "no token field"}, {"type": "step_restarted"}):
            with pytest.raises(TypeError, match=str(bad["type"])):
                await ctx.emit(bad)
            refused.append(str(bad["type"]))
        return text

    async with DurableAgent(agent, MemoryStore()) as durable:
        job = await durable.run("j", "x")
        events = [event async for event in durable.stream("j")]
    assert job.status is JobStatus.COMPLETED
    assert refused == ["token", "step_restarted"]
    assert [event.type for event in events] == ["job_status", "done", "job_status"]


def test_a_custom_event_cannot_take_a_built_in_type() -> None:
    with pytest.raises(ValueError, match="built-in"):
        CustomEvent(type="token", data={"token": "x"})


async def test_a_paused_plain_agent_voids_its_partial_output_when_resumed(store: Store) -> None:
    runs = 0
    started = asyncio.Event()

    async def writer(text: str) -> AsyncIterator[str]:
        nonlocal runs
        runs += 1
        yield f"run{runs}-a "
        if runs == 1:
            started.set()
            await asyncio.Event().wait()  # paused here: a plain agent is interrupted at once
        yield f"run{runs}-b"

    async with DurableAgent(writer, store) as durable:
        await durable.start("j", "x")
        async with asyncio.timeout(WAIT):
            await started.wait()
        paused = await durable.pause("j")
        assert paused.status is JobStatus.PAUSED
        await durable.resume("j")
        job = await durable.wait("j", timeout=WAIT)
    events = [parse_event(data) for data in await store.read_events("j")]  # (a stream stops at "paused")
    assert job.status is JobStatus.COMPLETED
    restarted = [event for event in events if isinstance(event, StepRestartedEvent)]
    first_token = next(event for event in events if isinstance(event, TokenEvent))
    assert len(restarted) == 1 and (restarted[0].index, restarted[0].from_seq) == (0, first_token.seq)
    assert output(events) == "run2-a run2-b"


async def test_output_after_the_last_step_is_voided_but_journaled_steps_are_kept(store: Store) -> None:
    calls = 0

    async def agent(text: str, ctx: JobContext) -> str:
        nonlocal calls
        calls += 1
        await ctx.emit_token("draft ")
        draft = await ctx.step("draft", str.upper, text)
        await ctx.emit_token(f"try{calls} ")
        if calls == 1:
            raise RuntimeError("the model timed out")
        return draft

    async with DurableAgent(agent, store, retry_delay=0.0, jitter=0.0) as durable:
        job = await durable.run("j", "x")
        events = [event async for event in durable.stream("j")]
    assert job.status is JobStatus.COMPLETED
    restarted = [event for event in events if isinstance(event, StepRestartedEvent)]
    assert len(restarted) == 1 and restarted[0].index == 1
    assert output(events) == "draft try2 "


async def test_events_are_published_only_once_written_and_dropped_when_they_cannot_be(tmp_path: Path) -> None:
    published: list[int] = []
    store = SQLiteStore(tmp_path / "events.db")
    flusher = Flusher()
    log = EventLog("j", store, lambda job_id, event: published.append(parse_event(event).seq), flusher, fresh=True)
    for token in "abc":
        log.append({"type": "token", "token": token})
    assert published == []  # buffered: nobody sees an event before it is in the store
    await log.flush()
    assert published == [0, 1, 2]
    log.append({"type": "token", "token": "d"})
    await store.close()
    await log.close()  # the actor stops (it crashed): the write fails, the unseen event is dropped
    await flusher.close()
    assert published == [0, 1, 2]
    reopened = SQLiteStore(tmp_path / "events.db")
    try:
        after = EventLog("j", reopened, lambda job_id, event: None, Flusher(), fresh=False)
        await after.load()
        assert after.next_seq == 3  # the next execution numbers on from the log: seq 3 was never seen
    finally:
        await reopened.close()


async def test_no_step_restarted_when_a_journaled_step_lost_its_step_event() -> None:
    """A process that died between journaling a step and logging its event: the tokens since the last
    logged step hold that step's output, which is not streamed again, so none is declared void."""
    store = MemoryStore()
    await store.append_events(
        "j",
        [
            {"type": "job_status", "seq": 0, "job_id": "j", "job": {"id": "j", "agent": "a"}},
            {"type": "token", "seq": 1, "job_id": "j", "token": "a"},
            {"type": "step", "seq": 2, "job_id": "j", "name": "s", "index": 0},
            {"type": "token", "seq": 3, "job_id": "j", "token": "b"},
        ],
    )
    for journaled, expected in (([0], [(1, 3)]), ([0, 1], [])):
        log = EventLog("j", store, lambda job_id, event: None, Flusher(), fresh=False)
        await log.load()
        log.restart_step(journaled)
        restarted = [parse_event(event) for event in await log.take()]
        assert [(event.index, event.from_seq) for event in restarted if isinstance(event, StepRestartedEvent)] == (
            expected
        )


async def test_output_streamed_before_a_step_is_logged_with_the_step(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's journal write carries the events streamed before it: a worker killed right after the step
    was kept (before any flush of its log) loses none of them, though the replay never runs that step again.
    The worker's periodic flush is switched off here, so only the step's write can have logged them."""
    monkeypatch.setattr(Flusher, "mark", lambda self, log: None)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def park() -> str:
        inside.set()
        await release.wait()
        return "parked"

    async def streams(text: str, ctx: JobContext) -> str:
        for token in ("a", "b", "c"):
            await ctx.emit_token(token)
        await ctx.step("first", lambda: "one")
        return await ctx.step("second", park)

    async with DurableAgent(streams, store, name="streams") as durable:
        await durable.start("job", "x")
        await inside.wait()  # "first" is journaled; nothing else wrote the log since the job started
        logged = await store.read_events("job")
        assert [event["token"] for event in logged if event.get("type") == "token"] == ["a", "b", "c"]
        assert [record.name for record in await store.read_steps("job")] == ["first"]
        release.set()
        done = await durable.wait("job")
    assert done.status is JobStatus.COMPLETED
    seqs = [event["seq"] for event in await store.read_events("job")]
    assert seqs == list(range(len(seqs)))  # no gap, nothing twice
