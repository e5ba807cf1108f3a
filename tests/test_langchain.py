"""LangChain chat models and tools as journaled steps: run once, streamed, replayed from their dicts."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

from durapod import Budget, DurableAgent, JobContext, JobStatus, MemoryStore
from durapod.events import TokenEvent, ToolCallEvent, ToolResultEvent
from durapod.integrations.langchain import DurableChatModel, DurableTools
from durapod.stores.base import Store


def _tool_calls(*calls: tuple[str, str, dict[str, object]]) -> dict[str, object]:
    """Tool calls in the raw (OpenAI) form that GenericFakeChatModel streams through."""
    return {
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for call_id, name, args in calls
        ]
    }


class Probe:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.tool_running = asyncio.Event()
        self.release = asyncio.Event()


def build(probe: Probe) -> tuple[GenericFakeChatModel, list[BaseTool]]:
    replies = [
        AIMessage(
            content="Checking both.",
            additional_kwargs=_tool_calls(("c1", "lookup_ticket", {"ticket": 9}), ("c2", "history", {"who": "ada"})),
        ),
        AIMessage(content="Ticket 9 is refunded."),
    ]

    def counted() -> Iterator[AIMessage]:
        for reply in replies:
            probe.calls["model"] += 1
            yield reply

    @tool
    async def lookup_ticket(ticket: int) -> str:
        """Look a ticket up."""
        probe.calls["lookup_ticket"] += 1
        probe.tool_running.set()
        await probe.release.wait()
        return f"ticket {ticket}: open, 30 EUR"

    @tool
    def history(who: str) -> str:
        """A customer's orders."""
        probe.calls["history"] += 1
        return f"{who}: 3 orders"

    return GenericFakeChatModel(messages=counted()), [lookup_ticket, history]


def make_agent(probe: Probe):  # type: ignore[no-untyped-def]
    model, tools = build(probe)

    async def support(question: str, ctx: JobContext) -> str:
        llm = DurableChatModel(model.bind(tools=[t.name for t in tools]), ctx)
        runner = DurableTools(tools, ctx)
        messages: list[BaseMessage] = [HumanMessage(question)]
        while True:
            reply = await llm.ainvoke(messages)
            messages.append(reply)
            if not reply.tool_calls:
                assert all(isinstance(message, BaseMessage) for message in messages)
                return reply.text
            results = await runner.run(reply.tool_calls)
            assert all(isinstance(result, ToolMessage) for result in results)
            messages += results

    return support


async def test_model_and_tool_calls_run_once_across_a_pause(store: Store) -> None:
    probe = Probe()
    async with DurableAgent(make_agent(probe), store) as durable:
        await durable.start("s", "Refund ticket 9")
        await probe.tool_running.wait()
        await durable.pause("s", wait=False)
        probe.release.set()
        paused = await durable.wait("s", timeout=10)
        assert paused.status is JobStatus.PAUSED
        events = [event async for event in durable.stream("s")]
        done = await durable.resume("s")
        events += [event async for event in durable.stream("s", after=events[-1].seq)]
        steps = await durable.steps("s")
    assert done.status is JobStatus.COMPLETED
    assert done.result == "Ticket 9 is refunded."
    assert probe.calls == {"model": 2, "lookup_ticket": 1, "history": 1}
    assert [record.name for record in steps] == ["chat model", "tool lookup_ticket", "tool history", "chat model"]
    first = steps[0].result
    assert isinstance(first, dict)
    assert first["type"] == "ai"  # LangChain's own dict form
    tokens = "".join(event.token for event in events if isinstance(event, TokenEvent))
    assert tokens == "Checking both.Ticket 9 is refunded."
    calls = {event.tool_call_id: event for event in events if isinstance(event, ToolCallEvent)}
    assert calls["c1"].name == "lookup_ticket"
    assert calls["c1"].arguments == {"ticket": 9}
    results = {event.tool_call_id: event.result for event in events if isinstance(event, ToolResultEvent)}
    assert results == {"c1": "ticket 9: open, 30 EUR", "c2": "ada: 3 orders"}


async def test_reported_usage_counts_and_a_budget_stops_the_next_call() -> None:
    usage = {"input_tokens": 30, "output_tokens": 20, "total_tokens": 50}
    replies = iter([AIMessage(content=f"reply {number}", usage_metadata=usage) for number in range(5)])
    made: Counter[str] = Counter()

    def counted() -> Iterator[AIMessage]:
        for reply in replies:
            made["model"] += 1
            yield reply

    model = GenericFakeChatModel(messages=counted())

    async def chatty(prompt: str, ctx: JobContext) -> str:
        llm = DurableChatModel(model, ctx, stream=False)  # the fake model reports usage only when not streaming
        messages: list[BaseMessage] = [HumanMessage(prompt)]
        for _ in range(5):
            messages.append(await llm.ainvoke(messages))
        return messages[-1].text

    async with DurableAgent(chatty, MemoryStore(), budget=Budget(tokens=120)) as durable:
        job = await durable.run("u", "hi")
    assert job.error_type == "BudgetExceeded"
    assert made["model"] == 3  # 50 + 50 < 120 allows a third call; 150 allows no fourth
    assert job.usage == {"tokens": 150, "requests": 3}
    assert "reply 0" in json.dumps((await durable.steps("u"))[0].result)
