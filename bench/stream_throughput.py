"""Streaming: tokens per second of one agent with 0, 1 and 10 live subscribers (one of them slow).

A slow subscriber must not slow the agent: each subscriber has a bounded buffer, and one that falls
behind catches up from the event log. The baseline, in the same run, iterates the same async generator
with no durapod. Prints one JSON object.

    python bench/stream_throughput.py --tokens 20000 --store memory|sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from durapod import DurableAgent, JobStatus, MemoryStore, SQLiteStore, Store, TokenEvent


async def generator(count: int) -> AsyncIterator[str]:
    for index in range(count):
        yield f"t{index} "


async def baseline(count: int) -> float:
    started = time.perf_counter()
    tokens = [token async for token in generator(count)]
    elapsed = time.perf_counter() - started
    assert len(tokens) == count
    return count / elapsed


async def with_subscribers(store: Store, count: int, subscribers: int, slow_delay: float) -> dict[str, Any]:
    async def agent(total: int) -> AsyncIterator[str]:
        async for token in generator(total):
            yield token

    async with DurableAgent(agent, store, name=f"stream-{subscribers}") as durable:
        job_id = f"job-{subscribers}"
        received = [0] * subscribers

        async def consume(position: int) -> None:
            async for event in durable.stream(job_id):
                if isinstance(event, TokenEvent):
                    received[position] += 1
                    if position == 0 and slow_delay:
                        await asyncio.sleep(slow_delay)  # the slow subscriber

        # subscribers attach before the job starts, and keep reading after it ends
        started = time.perf_counter()
        job = await durable.start(job_id, count)
        consumers = [asyncio.create_task(consume(position)) for position in range(subscribers)]
        job = await durable.wait(job_id)
        agent_seconds = time.perf_counter() - started
        assert job.status is JobStatus.COMPLETED
        await asyncio.gather(*consumers)
        all_seconds = time.perf_counter() - started
    assert all(count == total for total in received), received
    return {
        "subscribers": subscribers,
        "tokens": count,
        "agent_tokens_per_second": round(count / agent_seconds, 1),
        "seconds_until_every_subscriber_has_all": round(all_seconds, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=20000)
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    parser.add_argument("--slow-delay", type=float, default=0.0002, help="seconds the slow subscriber sleeps per token")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for subscribers in (0, 1, 10):
            store: Store = MemoryStore() if args.store == "memory" else SQLiteStore(f"{folder}/s{subscribers}.db")
            runs.append(await with_subscribers(store, args.tokens, subscribers, args.slow_delay))
            await store.close()
    report = {
        "benchmark": "streaming",
        "store": args.store,
        "python": sys.version.split()[0],
        "baseline": {"name": "bare async generator", "tokens_per_second": round(await baseline(args.tokens), 1)},
        "durapod": runs,
        "slow_subscriber_sleeps_per_token": args.slow_delay,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
