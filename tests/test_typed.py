"""Typed inputs, results, steps and interrupt answers: JSON in the store, the same types in the agent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from durapod import Client, DurableAgent, InvalidInput, JobContext, JobStatus, MemoryStore
from durapod.stores.base import Store

WAIT = 10.0


class Order(BaseModel):
    sku: str
    quantity: int


class Receipt(BaseModel):
    order: Order
    total: Decimal
    at: datetime


class Approval(BaseModel):
    approved: bool
    note: str = ""


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


class Snapshot(BaseModel):
    model: Receipt
    point: Point
    moment: datetime
    amount: Decimal
    ident: uuid.UUID
    pair: tuple[int, str]
    color: Color


MOMENT = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
IDENT = uuid.UUID("12345678-1234-5678-1234-567812345678")


def make_receipt() -> Receipt:
    return Receipt(order=Order(sku="A-1", quantity=2), total=Decimal("10.10"), at=MOMENT)


def make_point() -> Point:
    return Point(1, 2.5)


def make_moment() -> datetime:
    return MOMENT


async def make_amount() -> Decimal:
    return Decimal("0.1")


def make_ident() -> uuid.UUID:
    return IDENT


def make_pair() -> tuple[int, str]:
    return (1, "a")


def make_color() -> Color:
    return Color.BLUE


async def typed_steps(order: Order, ctx: JobContext) -> Snapshot:
    receipt = await ctx.step("receipt", make_receipt)
    point = await ctx.step("point", make_point)
    moment = await ctx.step("moment", make_moment)
    amount = await ctx.step("amount", make_amount)
    ident = await ctx.step("ident", make_ident)
    pair = await ctx.step("pair", make_pair)
    color = await ctx.step("color", make_color)
    seen.append((order, receipt, point, moment, amount, ident, pair, color))
    await ctx.interrupt("look at it")  # the first run stops here; the resume replays every step
    return Snapshot(model=receipt, point=point, moment=moment, amount=amount, ident=ident, pair=pair, color=color)


seen: list[tuple[Any, ...]] = []


async def test_typed_steps_replay_equal_values_of_equal_types(store: Store) -> None:
    seen.clear()
    async with DurableAgent(typed_steps, store) as durable:
        paused = await durable.run("t", {"sku": "A-1", "quantity": 2})
        assert paused.status is JobStatus.PAUSED
        done = await durable.resume("t", "ok")
    assert done.status is JobStatus.COMPLETED
    first, replayed = seen
    assert first == replayed
    assert [type(value) for value in first] == [type(value) for value in replayed]
    assert replayed[0] == Order(sku="A-1", quantity=2)
    assert type(replayed[6]) is tuple
    assert replayed[3].utcoffset() == timedelta(hours=2)
    assert isinstance(done.result, Snapshot)
    assert done.result.pair == (1, "a")
    # the store holds JSON, and a Client (which has no agent) returns it
    steps = await durable.steps("t")
    assert steps[2].result == MOMENT.isoformat()
    assert steps[3].result == "0.1"
    async with Client(store) as client:
        raw = await client.status("t")
    assert raw is not None
    assert isinstance(raw.result, dict)
    assert raw.result["color"] == "blue"


async def receipt_agent(order: Order, ctx: JobContext) -> Receipt:
    assert isinstance(order, Order)
    return Receipt(order=order, total=Decimal(order.quantity) * Decimal("1.5"), at=MOMENT)


async def test_typed_agent_input_and_result(store: Store) -> None:
    async with DurableAgent(receipt_agent, store) as durable:
        job = await durable.run("a", Order(sku="B", quantity=3))
        assert isinstance(job.result, Receipt)
        assert job.result.total == Decimal("4.5")
        assert job.input == {"sku": "B", "quantity": 3}
        from_dict = await durable.run("b", {"sku": "B", "quantity": 3})
        assert from_dict.result == job.result
        again = await durable.status("a")
        assert again is not None
        assert again.result == job.result
        waited = await durable.wait("a", timeout=WAIT)
        assert isinstance(waited.result, Receipt)
        with pytest.raises(InvalidInput) as info:
            await durable.start("c", {"sku": "B"})
        assert "Order" in str(info.value)
        with pytest.raises(InvalidInput):
            await durable.run("d", "not an order")
        assert await durable.status("c") is None
        assert await durable.status("d") is None
        # the same order given as a model or as JSON is the same input: no conflict
        same = await durable.run("a", {"sku": "B", "quantity": 3})
        assert same.result == job.result


async def untyped(text, ctx):  # type: ignore[no-untyped-def]
    return {"echo": text}


async def test_unannotated_agent_keeps_json() -> None:
    async with DurableAgent(untyped, MemoryStore()) as durable:
        job = await durable.run("u", ["a", 1])
        assert job.result == {"echo": ["a", 1]}


class Unjournaled:
    pass


def make_unjournaled() -> Unjournaled:
    return Unjournaled()


def make_unannotated():  # type: ignore[no-untyped-def]
    return MOMENT


async def bad_steps(kind: str, ctx: JobContext) -> str:
    if kind == "annotated":
        await ctx.step("odd", make_unjournaled)
    else:
        await ctx.step("bare", make_unannotated)
    return "unreachable"


async def test_a_step_value_that_cannot_be_journaled_names_the_step_and_type() -> None:
    async with DurableAgent(bad_steps, MemoryStore(), max_retries=0) as durable:
        annotated = await durable.run("a", "annotated")
        bare = await durable.run("b", "bare")
    assert annotated.status is JobStatus.FAILED
    assert annotated.error_type == "InvalidInput"
    assert annotated.error is not None
    assert "'odd'" in annotated.error
    assert "Unjournaled" in annotated.error
    assert bare.error is not None
    assert "'bare'" in bare.error
    assert "datetime" in bare.error
    assert len(await durable.steps("a")) == 0


async def approver(amount: int, ctx: JobContext) -> str:
    answer = await ctx.interrupt(f"refund {amount}?", answer=Approval)
    assert isinstance(answer, Approval)
    return "refunded" if answer.approved else f"declined: {answer.note}"


async def test_interrupt_answer_is_validated_and_typed(store: Store) -> None:
    async with DurableAgent(approver, store) as durable:
        paused = await durable.run("r", 30)
        assert paused.status is JobStatus.PAUSED
        assert paused.waiting_for == "refund 30?"
        with pytest.raises(InvalidInput) as info:
            await durable.resume("r", {"aproved": True})  # the typo of the issue: refused, not a silent no
        assert "Approval" in str(info.value)
        untouched = await durable.status("r")
        assert untouched is not None
        assert untouched.status is JobStatus.PAUSED
        assert untouched.version == paused.version
        assert untouched.answers == []
        done = await durable.resume("r", Approval(approved=False, note="too much"))  # type: ignore[arg-type]
        assert done.result == "declined: too much"
        assert (await durable.run("s", 5)).status is JobStatus.PAUSED
        assert (await durable.resume("s", {"approved": True})).result == "refunded"


async def test_client_resume_with_a_bad_answer_fails_the_job_by_name() -> None:
    store = MemoryStore()
    async with DurableAgent(approver, store) as durable:
        assert (await durable.run("r", 1)).status is JobStatus.PAUSED
        async with Client(store) as client:
            await client.resume("r", {"nope": 1}, wait=False)
        serving = asyncio.create_task(durable.serve())
        try:
            failed = await durable.wait("r", timeout=WAIT)
        finally:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
    assert failed.status is JobStatus.FAILED
    assert failed.error_type == "InvalidInput"
    assert failed.error is not None
    assert "refund 1?" in failed.error


def test_an_aware_datetime_survives_in_utc_too() -> None:
    from durapod._typed import codec_for

    codec = codec_for(datetime)
    assert codec is not None
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    data, back = codec.round_trip(moment, "x")
    assert back == moment
    assert type(back) is datetime
    assert isinstance(data, str)
