"""Stopping a helper task (``durapod._util.cancel_and_wait``): it ends, and a cancellation of the caller is
never swallowed on the way."""

from __future__ import annotations

import asyncio

import pytest

from durapod._util import cancel_and_wait

pytestmark = pytest.mark.timeout(10)


async def test_the_task_is_cancelled_and_has_ended_when_it_returns() -> None:
    forever = asyncio.Event()
    task = asyncio.create_task(forever.wait())
    await asyncio.sleep(0)  # let it start waiting
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_an_error_the_task_ends_with_while_it_stops_is_not_raised() -> None:
    started = asyncio.Event()

    async def fails_when_stopped() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ValueError("broke while stopping") from None

    task = asyncio.create_task(fails_when_stopped())
    await started.wait()
    await cancel_and_wait(task)
    assert isinstance(task.exception(), ValueError)


async def test_a_caller_cancelled_while_it_waits_is_cancelled() -> None:
    """The task is slow to stop; the caller is cancelled meanwhile: the caller ends cancelled (with
    ``suppress(CancelledError): await task`` it would have gone on as if nothing happened)."""
    stopping = asyncio.Event()
    release = asyncio.Event()
    went_on = False

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            await release.wait()
            raise

    async def caller(task: asyncio.Task[None]) -> None:
        nonlocal went_on
        await cancel_and_wait(task)
        went_on = True

    helper = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    outer = asyncio.create_task(caller(helper))
    await stopping.wait()
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert not went_on
    release.set()
    await asyncio.wait([helper])
    assert helper.cancelled()
