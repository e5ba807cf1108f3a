"""A LangChain support agent made durable: the chat model and the tools are journaled steps.

- ``DurableChatModel(model, ctx)``: each model call is a step that streams ``token`` events and journals
  the ``AIMessage`` in LangChain's own dict form; ``DurableTools(tools, ctx)``: each tool call is a
  step (the reply's calls run concurrently), logged as ``tool_call``/``tool_result`` events.
- The agent is typed: it takes a ``Ticket`` and returns a ``Resolution`` (validated at ``run``, stored
  as JSON, returned typed), and asks a human with ``ctx.interrupt(prompt, answer=Approval)``: a resume
  value that is not an ``Approval`` (``{"aproved": true}``) is refused and the job stays paused.

The model is LangChain's ``GenericFakeChatModel`` with scripted replies: no network, no API key. Run it
with ``python examples/support_ticket_langchain.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from durapod import DurableAgent, InvalidInput, JobContext, MemoryStore
from durapod.integrations.langchain import DurableChatModel, DurableTools

ran: Counter[str] = Counter()  # how many times the model and each tool really ran


class Ticket(BaseModel):
    """The job's input."""

    number: int
    text: str


class Approval(BaseModel):
    """A human's answer."""

    approved: bool


class Resolution(BaseModel):
    """The job's result."""

    ticket: int
    reply: str
    refunded: bool


def scripted_replies() -> Iterator[AIMessage]:
    """Stands in for an LLM: look the ticket and the customer up at once, then answer."""
    calls = [
        {"id": "lookup", "name": "lookup_ticket", "args": {"number": 456}},
        {"id": "history", "name": "customer_history", "args": {"customer": "ada"}},
    ]
    raw = [
        {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
        }
        for call in calls
    ]
    for reply in [
        AIMessage(content="Let me check.", additional_kwargs={"tool_calls": raw}),
        AIMessage(content="A refund of 30 EUR is due."),
    ]:
        ran["model"] += 1
        yield reply


@tool
async def lookup_ticket(number: int) -> str:
    """The ticket as the help desk has it."""
    ran["lookup_ticket"] += 1
    return f"ticket #{number}: open, 30 EUR"


@tool
async def customer_history(customer: str) -> str:
    """The customer's past orders."""
    ran["customer_history"] += 1
    return f"{customer}: 3 orders, no refunds"


chat_model = GenericFakeChatModel(messages=scripted_replies())
TOOLS = [lookup_ticket, customer_history]


async def support(ticket: Ticket, ctx: JobContext) -> Resolution:
    """The usual tool loop, with durable model and tool calls, then a human approves the refund."""
    llm = DurableChatModel(chat_model.bind(tools=[t.name for t in TOOLS]), ctx)
    tools = DurableTools(TOOLS, ctx)
    messages: list[BaseMessage] = [HumanMessage(f"Ticket #{ticket.number}: {ticket.text}")]
    while True:
        reply = await llm.ainvoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        messages += await tools.run(reply.tool_calls)
    approval = await ctx.interrupt(f"Refund ticket #{ticket.number}? {reply.text}", answer=Approval)
    refunded = await ctx.step("refund", lambda: approval.approved)
    return Resolution(ticket=ticket.number, reply=reply.text, refunded=refunded)


async def main() -> None:
    """Run the ticket until it waits for approval, try a typo, approve it, and show what ran."""
    async with DurableAgent(support, MemoryStore()) as durable:
        job = await durable.run("ticket-456", Ticket(number=456, text="Refund please"))
        print(f"1. {job.status}, waiting for: {job.waiting_for}")
        try:
            await durable.resume("ticket-456", {"aproved": True})
        except InvalidInput:
            still = await durable.status("ticket-456")
            print(f"2. a typo in the answer is refused; the job is still {still.status if still else None}")
        job = await durable.resume("ticket-456", {"approved": True})
        print(f"3. approved: {job.status} -> {job.result!r}")
        steps = [record.name for record in await durable.steps("ticket-456")]
    print(f"journal: {steps}")
    print(f"each model call and tool call ran once: {dict(sorted(ran.items()))}")


if __name__ == "__main__":
    asyncio.run(main())
