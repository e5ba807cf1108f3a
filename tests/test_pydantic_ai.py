"""pydantic-ai agents made durable: each model request and tool call a journaled step, run exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import AgentStreamEvent, ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

from durapod import Budget, Client, DurableAgent, Job, JobStatus, MemoryStore, SQLiteStore
from durapod.events import TokenEvent, ToolCallEvent, ToolResultEvent
from durapod.integrations.pydantic_ai import PydanticAIAgent, ToolApproval
from durapod.stores.base import Store

WAIT = 10.0
ROOT = Path(__file__).parent.parent
WORKER = Path(__file__).parent / "workers" / "pydantic_ai_worker.py"


class Resolution(BaseModel):
    ticket: int
    action: str


class Probe:
    """Counts every model request and tool call the fakes really make; holds a tool at a gate."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lookup_started = asyncio.Event()
        self.history_done = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()


def _tool_results(messages: list[ModelMessage]) -> int:
    return sum(
        1
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if part.part_kind == "tool-return"
    )


def build_agent(probe: Probe) -> Agent[None, Resolution]:
    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        probe.calls["model"] += 1
        if _tool_results(messages) == 0:
            yield {
                0: DeltaToolCall("lookup_ticket", json.dumps({"ticket": 42}), tool_call_id="call-lookup"),
                1: DeltaToolCall("customer_history", json.dumps({"customer": "ada"}), tool_call_id="call-history"),
            }
            return
        yield "Refunding "
        yield "ticket 42."
        yield {0: DeltaToolCall("final_result", json.dumps({"ticket": 42, "action": "refund"}), tool_call_id="out")}

    agent: Agent[None, Resolution] = Agent(FunctionModel(stream_function=stream), output_type=Resolution)

    @agent.tool_plain
    async def lookup_ticket(ticket: int) -> dict[str, object]:
        probe.calls["lookup_ticket"] += 1
        probe.lookup_started.set()
        await probe.release.wait()
        return {"ticket": ticket, "status": "open", "amount": 30}

    @agent.tool_plain
    async def customer_history(customer: str) -> list[str]:
        probe.calls["customer_history"] += 1
        probe.history_done.set()
        return [f"{customer}: 3 orders"]

    return agent


async def test_two_parallel_tools_paused_mid_tool_and_resumed_run_once(store: Store) -> None:
    probe = Probe()
    probe.release.clear()
    async with DurableAgent(build_agent(probe), store) as durable:
        await durable.start("t", "Handle ticket 42")
        await probe.lookup_started.wait()
        await probe.history_done.wait()
        asked = await durable.pause("t", wait=False)
        assert asked.status is JobStatus.RUNNING  # the tool in flight finishes and is journaled first
        probe.release.set()
        paused = await durable.wait("t", timeout=WAIT)
        assert paused.status is JobStatus.PAUSED
        names = [record.name for record in await durable.steps("t")]
        assert names[0] == "model request"
        assert sorted(names[1:]) == ["tool customer_history", "tool lookup_ticket"]
        events = [event async for event in durable.stream("t")]  # up to the pause
        done = await durable.resume("t")
        events += [event async for event in durable.stream("t", after=events[-1].seq)]
    assert done.status is JobStatus.COMPLETED
    assert isinstance(done.result, Resolution)
    assert done.result == Resolution(ticket=42, action="refund")
    assert probe.calls == {"model": 2, "lookup_ticket": 1, "customer_history": 1}
    kinds = Counter(event.type for event in events)
    assert kinds["tool_call"] == 2
    assert kinds["tool_result"] == 2
    tokens = "".join(event.token for event in events if isinstance(event, TokenEvent))
    assert tokens == "Refunding ticket 42."
    calls = {event.tool_call_id: event for event in events if isinstance(event, ToolCallEvent)}
    assert calls["call-lookup"].name == "lookup_ticket"
    assert calls["call-lookup"].arguments == {"ticket": 42}
    results = {event.tool_call_id: event for event in events if isinstance(event, ToolResultEvent)}
    assert results["call-history"].result == ["ada: 3 orders"]
    assert done.usage is not None
    assert done.usage["requests"] == 2
    assert done.usage["tokens"] > 0


async def test_detected_without_an_adapter_and_named_by_the_agent() -> None:
    probe = Probe()
    agent = build_agent(probe)
    agent.name = "support"
    durable = DurableAgent(agent, MemoryStore())
    assert durable.name == "support"
    assert isinstance(durable.agent, PydanticAIAgent)


def build_refund_agent(probe: Probe) -> Agent[None, str]:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        probe.calls["model"] += 1
        if _tool_results(messages) == 0:
            return ModelResponse(parts=[ToolCallPart("refund", {"amount": 30}, tool_call_id="call-refund")])
        last = messages[-1]
        assert isinstance(last, ModelRequest)
        return ModelResponse(parts=[TextPart(f"done: {last.parts[0].content}")])  # type: ignore[union-attr]

    agent = Agent(FunctionModel(respond), output_type=str)

    @agent.tool_plain(requires_approval=True)
    async def refund(amount: int) -> str:
        probe.calls["refund"] += 1
        return f"refunded {amount}"

    return agent


async def test_a_tool_that_needs_approval_pauses_until_resumed(store: Store) -> None:
    probe = Probe()
    async with DurableAgent(build_refund_agent(probe), store) as durable:
        paused = await durable.run("r", "refund ticket 42")
        assert paused.status is JobStatus.PAUSED
        assert paused.waiting_for is not None
        assert paused.waiting_for.startswith("approve refund(")
        assert probe.calls == {"model": 1}
        done = await durable.resume("r", True)
        assert (await durable.run("d", "refund ticket 43")).status is JobStatus.PAUSED
        refused = await durable.resume("d", ToolApproval(approved=False, message="over limit"))  # type: ignore[arg-type]
    assert done.result == "done: refunded 30"
    assert refused.result == "done: over limit"
    assert probe.calls == {"model": 4, "refund": 1}


async def test_test_model_runs_and_a_budget_stops_the_next_request() -> None:
    agent = Agent(TestModel(custom_output_text="hello there"), output_type=str)

    @agent.tool_plain
    async def ping() -> str:
        return "pong"

    async with DurableAgent(agent, MemoryStore()) as durable:
        job = await durable.run("ok", "hi")
        assert job.result == "hello there"
        assert job.usage is not None
        over = await durable.run("over", "hi", budget=Budget(requests=1))
    assert over.status is JobStatus.FAILED
    assert over.error_type == "BudgetExceeded"
    assert [record.name for record in await durable.steps("over")] == ["model request"]  # no step after it


def test_an_adapter_needs_a_pydantic_ai_agent() -> None:
    with pytest.raises(TypeError):
        PydanticAIAgent(object())  # type: ignore[arg-type]


# -- a real worker process killed mid-run -------------------------------------------------------


def _start_worker(url: str, side: Path, *, hang: bool) -> subprocess.Popen[str]:
    arguments = [sys.executable, str(WORKER), url, str(side), "support-worker"] + (["--hang"] if hang else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        _, err = process.communicate(timeout=30)
        raise RuntimeError(f"worker did not start: {line!r} {err[-2000:]}")
    return process


def _executions(side: Path) -> list[str]:
    if not side.exists():
        return []
    conn = sqlite3.connect(side, timeout=30.0)
    try:
        return [row[0] for row in conn.execute("SELECT kind FROM executions ORDER BY seq")]
    except sqlite3.OperationalError:  # the worker has not made the table yet
        return []
    finally:
        conn.close()


async def _steps(db: Path) -> list[str]:
    async with Client(SQLiteStore(db)) as client:
        return [record.name for record in await client.steps("ticket-7")]


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.timeout(120)
def test_sigkilled_mid_tool_call_and_continued_by_another_process_repeats_nothing_journaled(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    side = tmp_path / "side.db"
    url = f"sqlite:///{db}"

    async def submit() -> None:
        async with Client(SQLiteStore(db)) as client:
            await client.submit("ticket-7", "Handle ticket 7", agent="support")

    asyncio.run(submit())
    first = _start_worker(url, side, hang=True)
    try:
        _wait_until(lambda: "lookup_ticket" in _executions(side), "the tool to start")
        _wait_until(lambda: "tool customer_history" in asyncio.run(_steps(db)), "the other tool to be journaled")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    journaled = asyncio.run(_steps(db))
    assert journaled == ["model request", "tool customer_history"]  # lookup_ticket was in flight
    second = _start_worker(url, side, hang=False)  # the same worker id: takes the job over at once
    try:

        async def settled() -> Job:
            async with Client(SQLiteStore(db), poll_interval=0.05) as client:
                return await client.wait("ticket-7", timeout=60)

        job = asyncio.run(settled())
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=60)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"ticket": 7, "action": "refund"}  # a Client has no agent: JSON
    ran = Counter(_executions(side))
    # journaled before the kill: never again; in flight at the kill (lookup_ticket): once more
    assert ran == {"model-0": 1, "customer_history": 1, "lookup_ticket": 2, "model-2": 1}
    # in journal order: the calls keep the places the model's response gave them
    assert asyncio.run(_steps(db)) == ["model request", "tool lookup_ticket", "tool customer_history", "model request"]


async def test_an_event_stream_handler_sees_the_journaled_responses() -> None:
    probe = Probe()
    seen: list[str] = []

    async def handler(ctx: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
        async for event in events:
            seen.append(type(event).__name__)

    adapter = PydanticAIAgent(build_agent(probe), event_stream_handler=handler, name="handled")
    async with DurableAgent(adapter, MemoryStore()) as durable:
        job = await durable.run("h", "Handle ticket 42")
        tokens = [event.token async for event in durable.stream("h") if isinstance(event, TokenEvent)]
    assert isinstance(job.result, Resolution)
    assert job.agent == "handled"
    assert probe.calls == {"model": 2, "lookup_ticket": 1, "customer_history": 1}  # streamed requests: once each
    assert "PartStartEvent" in seen
    assert "FunctionToolCallEvent" in seen
    assert "".join(tokens) == "Refunding ticket 42."


def build_looping_agent(probe: Probe, *, fail_once: bool = False) -> Agent[None, str]:
    """Three requests of 50 tokens each: two ask for a tool, the third answers."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        probe.calls["model"] += 1
        usage = RequestUsage(input_tokens=30, output_tokens=20)
        done = _tool_results(messages)
        if done < 2:
            return ModelResponse(parts=[ToolCallPart("step", {"n": done}, tool_call_id=f"s{done}")], usage=usage)
        return ModelResponse(parts=[TextPart("finished")], usage=usage)

    agent = Agent(FunctionModel(respond), output_type=str)

    @agent.tool_plain
    async def step(n: int) -> str:
        probe.calls[f"step {n}"] += 1
        if fail_once and n == 1 and probe.calls["step 1"] == 1:
            raise RuntimeError("flaky tool")
        return f"step {n} done"

    return agent


async def test_a_retry_replays_the_journaled_requests_and_tool_calls() -> None:
    probe = Probe()
    async with DurableAgent(build_looping_agent(probe, fail_once=True), MemoryStore(), retry_delay=0.0) as durable:
        job = await durable.run("r", "go")
    assert job.status is JobStatus.COMPLETED
    assert job.attempts == 2
    assert job.result == "finished"
    # the failed call ran twice; what was journaled before it (two requests, step 0) ran once
    assert probe.calls == {"model": 3, "step 0": 1, "step 1": 2}
    assert job.usage == {"tokens": 150, "requests": 3}


async def test_a_token_budget_pauses_and_continues_once_raised(store: Store) -> None:
    probe = Probe()
    budget = Budget(tokens=100, on_exceeded="pause")
    async with DurableAgent(build_looping_agent(probe), store, budget=budget) as durable:
        paused = await durable.run("b", "go")
        assert paused.status is JobStatus.PAUSED
        assert probe.calls == {"model": 2, "step 0": 1}  # nothing past the budget: not even the tool call
        assert paused.usage == {"tokens": 100, "requests": 2}
        done = await durable.resume("b", Budget(tokens=1_000))  # type: ignore[arg-type]
    assert done.result == "finished"
    assert probe.calls == {"model": 3, "step 0": 1, "step 1": 1}
    assert done.usage == {"tokens": 150, "requests": 3}
