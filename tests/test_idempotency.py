"""Idempotency keys: ``submit`` / ``start`` / ``run`` with a key return the job the key made before."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from durapod import Client, DurableAgent, InvalidJobId, JobConflictError, JobContext, JobStatus, MemoryStore, Store


async def test_submit_with_a_key_seen_before_returns_the_existing_job(store: Store) -> None:
    client = Client(store)
    first = await client.submit(None, {"order": 7}, agent="billing", idempotency_key="order-7 charge")
    again = await client.submit(None, {"order": 7}, agent="billing", idempotency_key="order-7 charge")
    other = await client.submit(None, {"order": 8}, agent="billing", idempotency_key="order-8 charge")
    assert again.id == first.id
    assert again.version == first.version  # nothing written the second time
    assert other.id != first.id
    assert first.id.startswith("key-")
    assert first.metadata == {"durapod.idempotency_key": "order-7 charge"}
    with pytest.raises(JobConflictError) as conflict:
        await client.submit(None, {"order": 9}, agent="billing", idempotency_key="order-7 charge")
    assert conflict.value.job_id == first.id
    assert len(await client.list(agent="billing")) == 2


async def test_start_and_run_with_a_key_run_the_job_once(store: Store) -> None:
    ran: Counter[str] = Counter()

    async def agent(text: str, ctx: JobContext) -> str:
        return await ctx.step("charge", charge, text)

    def charge(text: str) -> str:
        ran[text] += 1
        return f"charged {text}"

    async with DurableAgent(agent, store, name="billing") as durable:
        started = await durable.start(None, "a", idempotency_key="k1")
        done = await durable.run(None, "a", idempotency_key="k1")
        raced = await asyncio.gather(*(durable.run(None, "b", idempotency_key="k2") for _ in range(5)))
    assert done.id == started.id
    assert done.status is JobStatus.COMPLETED
    assert {job.id for job in raced} == {raced[0].id}
    assert ran == Counter({"a": 1, "b": 1})


async def test_a_key_and_an_id_together_or_neither_are_refused() -> None:
    client = Client(MemoryStore())
    with pytest.raises(ValueError, match="not both"):
        await client.submit("job-1", "x", idempotency_key="k")
    with pytest.raises(InvalidJobId):
        await client.submit(None, "x")
    with pytest.raises(ValueError, match="empty"):
        await client.submit(None, "x", idempotency_key="")
    assert await client.list() == []
