"""Streaming: an async generator agent yields tokens; every token is persisted to the job's event log.

With ``durable.run_stream(id, input)`` the events (``token``, ``step``, ``done``...) arrive as they are
produced and persisted. Without it (older versions), ``run`` waits for the result and the job's event
log still holds every token.

Run it with ``python examples/streaming.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from durapod import DurableAgent, MemoryStore
from durapod.testing import ScriptedLLM

llm = ScriptedLLM(["Invoice #42: 1,250 EUR for 5 seats, due on May 1. Approved for payment."], token_delay=0.01)


async def invoice_writer(request: str) -> AsyncIterator[str]:
    """An async generator agent: it yields the LLM's tokens as they come."""
    async for token in llm.stream(f"Summarise this request: {request}"):
        yield token


async def main() -> None:
    """Stream one job's tokens."""
    store = MemoryStore()
    async with DurableAgent(invoice_writer, store) as durable:
        streaming: Any = durable  # typed loosely: this example also runs on versions without run_stream
        if hasattr(DurableAgent, "run_stream"):
            print("streaming: ", end="", flush=True)
            async for event in streaming.run_stream("job_8", "Process invoice"):
                if event.type == "token":
                    print(event.token, end="", flush=True)
            print()
            job = await durable.status("job_8")
            assert job is not None
        else:
            print("run_stream is coming in a later version of durapod: running the job and reading its event log")
            job = await durable.run("job_8", "Process invoice")
        tokens = [event["token"] for event in await store.read_events("job_8") if event.get("type") == "token"]
        print(f"job {job.id}: {job.status} -> {job.result!r}")
        print(f"{len(tokens)} tokens persisted in the job's event log: {tokens[:4]}...")


if __name__ == "__main__":
    asyncio.run(main())
