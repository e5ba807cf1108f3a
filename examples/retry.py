"""Retries with exponential backoff: a flaky tool fails twice, the third attempt succeeds.

A failing execution makes the job ``pending`` with a durable retry timer
(``retry_delay * backoff**(n-1)``, capped by ``max_retry_delay``, with jitter); ``attempts`` counts the
executions, and a success clears ``error``. Steps journaled before the failure are not run again.
``NonRetryableError`` fails the job at once.

Run it with ``python examples/retry.py``.
"""

from __future__ import annotations

import asyncio

from durapod import DurableAgent, JobContext, MemoryStore, NonRetryableError

calls = {"load_order": 0, "charge_card": 0}


def load_order(order_id: str) -> dict[str, str | int]:
    """A reliable step."""
    calls["load_order"] += 1
    return {"id": order_id, "amount": 1250}


def charge_card(order: dict[str, str | int]) -> str:
    """A flaky tool: the payment gateway times out twice."""
    calls["charge_card"] += 1
    if calls["charge_card"] <= 2:
        raise ConnectionError(f"payment gateway timed out (call {calls['charge_card']})")
    return f"charged {order['amount']} for {order['id']}"


async def checkout(order_id: str, ctx: JobContext) -> str:
    """Load the order (journaled once), then charge the card (retried until it works)."""
    print(f"  attempt {ctx.attempt}: starting")
    if order_id == "bad-order":
        raise NonRetryableError(f"order {order_id!r} does not exist")
    order = await ctx.step("load_order", load_order, order_id)
    return await ctx.step("charge_card", charge_card, order)


async def main() -> None:
    """Run a job that needs three attempts, and one that must not be retried."""
    async with DurableAgent(checkout, MemoryStore(), max_retries=3, retry_delay=0.05, backoff=2.0) as durable:
        job = await durable.run("order-42", "order-42")
        print(f"order-42: {job.status} after attempts={job.attempts} -> {job.result!r}")
        print(
            f"  error cleared: {job.error is None}; load_order ran {calls['load_order']} time(s), "
            f"charge_card {calls['charge_card']} time(s)"
        )

        job = await durable.run("order-0", "bad-order")
        print(f"order-0: {job.status} after attempts={job.attempts}: {job.error_type}: {job.error}")


if __name__ == "__main__":
    asyncio.run(main())
