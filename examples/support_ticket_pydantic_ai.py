"""A pydantic-ai support agent made durable in one line: two tools, a refund that needs approval.

- ``DurableAgent(agent, store)`` takes the ``pydantic_ai.Agent`` as it is: every model request and every
  tool call (the two parallel ones included) becomes a journaled step, so after a crash, a pause or a
  retry nothing that was journaled runs again.
- The refund tool is declared ``requires_approval=True``: the job pauses waiting for a human;
  ``resume(id, True)`` approves it (``False`` or ``ToolApproval(approved=False, message=...)`` denies).
- The result comes back as the agent's ``output_type`` (a pydantic model); the store holds its JSON.
- Text streams as ``token`` events, tool calls as ``tool_call``/``tool_result`` events.

The model is pydantic-ai's ``FunctionModel`` scripted below: no network, no API key. Swap in
``"openai:gpt-4o"`` (or any model) and nothing else changes. Run it with
``python examples/support_ticket_pydantic_ai.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durapod import DurableAgent, MemoryStore

ran: Counter[str] = Counter()  # how many times the model and each tool really ran


class Resolution(BaseModel):
    """What the agent decided."""

    ticket: int
    action: str
    refunded: int


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Stands in for an LLM: look the ticket and the customer up at once, refund, then conclude."""
    ran["model"] += 1
    returned = [part for message in messages if isinstance(message, ModelRequest) for part in message.parts]
    tool_results = [part for part in returned if part.part_kind == "tool-return"]
    if not tool_results:
        return ModelResponse(
            parts=[
                ToolCallPart("lookup_ticket", {"ticket": 456}, tool_call_id="lookup"),
                ToolCallPart("customer_history", {"customer": "ada"}, tool_call_id="history"),
            ]
        )
    if len(tool_results) == 2:
        return ModelResponse(parts=[ToolCallPart("refund", {"ticket": 456, "amount": 30}, tool_call_id="refund")])
    return ModelResponse(
        parts=[
            TextPart("Refunded 30 EUR on ticket #456."),
            ToolCallPart("final_result", {"ticket": 456, "action": "refund", "refunded": 30}, tool_call_id="out"),
        ]
    )


support = Agent(FunctionModel(scripted_model), output_type=Resolution, name="support")


@support.tool_plain
async def lookup_ticket(ticket: int) -> dict[str, object]:
    """The ticket as the help desk has it."""
    ran["lookup_ticket"] += 1
    return {"ticket": ticket, "status": "open", "amount": 30}


@support.tool_plain
async def customer_history(customer: str) -> list[str]:
    """The customer's past orders."""
    ran["customer_history"] += 1
    return [f"{customer}: 3 orders, no refunds"]


@support.tool_plain(requires_approval=True)
async def refund(ticket: int, amount: int) -> str:
    """Refund the customer (a human approves first)."""
    ran["refund"] += 1
    return f"refunded {amount} EUR on #{ticket}"


async def main() -> None:
    """Run the ticket until it waits for approval, approve it, and show what ran."""
    async with DurableAgent(support, MemoryStore()) as durable:
        job = await durable.run("ticket-456", "The customer asks for a refund on ticket #456")
        print(f"1. {job.status}, waiting for: {job.waiting_for}")
        events = [event async for event in durable.stream("ticket-456")]  # the log up to the pause
        job = await durable.resume("ticket-456", True)
        print(f"2. approved: {job.status} -> {job.result!r}")
        print(f"   result type: {type(job.result).__name__}; usage: {job.usage}")
        events += [event async for event in durable.stream("ticket-456", after=events[-1].seq)]
    print(f"each model request and tool call ran once: {dict(sorted(ran.items()))}")
    kinds = Counter(event.type for event in events)
    print(f"events: token={kinds['token']} tool_call={kinds['tool_call']} tool_result={kinds['tool_result']}")


if __name__ == "__main__":
    asyncio.run(main())
