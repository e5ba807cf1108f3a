"""A worker process serving a pydantic-ai agent, for the SIGKILL test of the pydantic-ai integration.

    python tests/workers/pydantic_ai_worker.py STORE_URL SIDE_DB WORKER_ID [--hang]

The fake model and the two tools record every real execution in a side table (``SIDE_DB``, plain
sqlite3, committed before they return), so the test can tell what ran again after a kill. With
``--hang`` the ``lookup_ticket`` tool never returns: the worker is killed while it runs. Prints
``ready`` once serving; runs until SIGTERM or SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator

from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from durapod import DurableAgent, open_store


class Resolution(BaseModel):
    ticket: int
    action: str


def side_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS executions (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT)")
    return conn


def build_agent(side: sqlite3.Connection, *, hang: bool) -> Agent[None, Resolution]:
    def record(kind: str) -> None:
        side.execute("INSERT INTO executions (kind) VALUES (?)", (kind,))

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        returned = sum(
            1
            for message in messages
            if isinstance(message, ModelRequest)
            for part in message.parts
            if part.part_kind == "tool-return"
        )
        record(f"model-{returned}")
        if returned == 0:
            yield {
                0: DeltaToolCall("lookup_ticket", json.dumps({"ticket": 7}), tool_call_id="lookup"),
                1: DeltaToolCall("customer_history", json.dumps({"customer": "ada"}), tool_call_id="history"),
            }
            return
        yield "Refund for ticket 7."
        yield {0: DeltaToolCall("final_result", json.dumps({"ticket": 7, "action": "refund"}), tool_call_id="out")}

    agent: Agent[None, Resolution] = Agent(
        FunctionModel(stream_function=stream), output_type=Resolution, name="support"
    )

    @agent.tool_plain
    async def lookup_ticket(ticket: int) -> dict[str, object]:
        record("lookup_ticket")
        if hang:
            await asyncio.Event().wait()  # killed here
        return {"ticket": ticket, "status": "open"}

    @agent.tool_plain
    def customer_history(customer: str) -> list[str]:
        record("customer_history")
        return [f"{customer}: 3 orders"]

    return agent


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("side")
    parser.add_argument("worker_id")
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    side = side_connection(args.side)
    durable = DurableAgent(
        build_agent(side, hang=args.hang),
        open_store(args.store),
        worker_id=args.worker_id,
        lease_ttl=2.0,
        poll_interval=0.05,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with durable:
        serving = asyncio.create_task(durable.serve())
        print("ready", flush=True)
        await stop.wait()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    await durable.store.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
