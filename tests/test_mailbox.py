"""Mailbox: capacity, overflow policies, the control lane, statistics and closing."""

from __future__ import annotations

import asyncio

import pytest

from durapod.errors import DurapodError, MailboxFull
from durapod.lowlevel import ActorRef, Mailbox, MailboxStatistics, OverflowPolicy
from durapod.lowlevel.mailbox import MailboxClosed

pytestmark = pytest.mark.timeout(10)  # a hang fails fast instead of after the global 120 s


def make(capacity: int = 3, policy: OverflowPolicy = OverflowPolicy.REJECT, owner: str = "worker") -> Mailbox[str]:
    mailbox: Mailbox[str] = Mailbox[str]._create(owner, capacity, policy)
    return mailbox


async def waiting_get(mailbox: Mailbox[str]) -> asyncio.Task[str]:
    """A task that is blocked in ``mailbox.get()`` when this returns."""
    entered = asyncio.Event()

    async def consume() -> str:
        entered.set()
        return await mailbox.get()  # no yield between set() and the wait inside get()

    task = asyncio.create_task(consume())
    await entered.wait()
    assert not task.done()
    return task


async def take(mailbox: Mailbox[str], count: int) -> list[str]:
    return [await mailbox.get() for _ in range(count)]


# -- construction -------------------------------------------------------------------------------


def test_public_constructor_is_refused() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        Mailbox("worker", 3, OverflowPolicy.REJECT)


async def test_actor_ref_public_constructor_is_refused() -> None:
    mailbox = make()
    with pytest.raises(TypeError, match="no public constructor"):
        ActorRef("worker", mailbox)


@pytest.mark.parametrize("capacity", [0, -1, -100])
def test_capacity_below_one_is_refused(capacity: int) -> None:
    with pytest.raises(ValueError, match=f"at least 1, got {capacity}"):
        make(capacity)


def test_policy_given_as_string_is_accepted() -> None:
    mailbox: Mailbox[str] = Mailbox[str]._create("worker", 2, "drop_oldest")
    assert mailbox.overflow_policy is OverflowPolicy.DROP_OLDEST


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="drop_everything"):
        Mailbox._create("worker", 2, "drop_everything")


# -- capacity and overflow policies -----------------------------------------------------------


@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_holds_up_to_capacity_under_every_policy(policy: OverflowPolicy) -> None:
    mailbox = make(4, policy)
    assert all(mailbox.put_nowait(f"m{i}") for i in range(4))
    assert len(mailbox) == 4
    assert mailbox.statistics().queued == 4
    assert mailbox.statistics().received == 4


async def test_reject_raises_mailbox_full_naming_actor_and_capacity() -> None:
    mailbox = make(2, OverflowPolicy.REJECT, owner="job:42")
    mailbox.put_nowait("a")
    mailbox.put_nowait("b")
    with pytest.raises(MailboxFull) as caught:
        mailbox.put_nowait("c")
    error = caught.value
    assert isinstance(error, DurapodError)
    assert error.actor == "job:42"
    assert error.capacity == 2
    assert "'job:42'" in str(error)
    assert "2 messages" in str(error)
    with pytest.raises(MailboxFull):
        mailbox.put_nowait("d")
    stats = mailbox.statistics()
    assert stats.rejected == 2
    assert stats.dropped == 0
    assert stats.received == 2
    assert stats.queued == 2
    # the refused messages are nowhere: the queue holds exactly the accepted ones
    assert await take(mailbox, 2) == ["a", "b"]
    assert len(mailbox) == 0


async def test_reject_accepts_again_once_there_is_room() -> None:
    mailbox = make(1, OverflowPolicy.REJECT)
    mailbox.put_nowait("a")
    with pytest.raises(MailboxFull):
        mailbox.put_nowait("b")
    assert await mailbox.get() == "a"
    assert mailbox.put_nowait("c") is True
    assert await mailbox.get() == "c"


async def test_drop_newest_discards_the_new_message_and_keeps_the_old() -> None:
    mailbox = make(3, OverflowPolicy.DROP_NEWEST)
    for message in ("a", "b", "c"):
        assert mailbox.put_nowait(message) is True
    assert mailbox.put_nowait("d") is False
    assert mailbox.put_nowait("e") is False
    stats = mailbox.statistics()
    assert stats.dropped == 2
    assert stats.rejected == 0
    assert stats.received == 3
    assert stats.queued == 3
    assert await take(mailbox, 3) == ["a", "b", "c"]
    assert len(mailbox) == 0


async def test_drop_oldest_discards_the_oldest_to_make_room() -> None:
    mailbox = make(3, OverflowPolicy.DROP_OLDEST)
    for message in ("a", "b", "c"):
        mailbox.put_nowait(message)
    assert mailbox.put_nowait("d") is True
    assert mailbox.put_nowait("e") is True
    stats = mailbox.statistics()
    assert stats.dropped == 2
    assert stats.rejected == 0
    assert stats.queued == 3
    assert stats.received == 5
    assert await take(mailbox, 3) == ["c", "d", "e"]
    assert len(mailbox) == 0


async def test_drop_oldest_never_discards_control_messages() -> None:
    mailbox = make(1, OverflowPolicy.DROP_OLDEST)
    mailbox.put_nowait("ctl", control=True)
    mailbox.put_nowait("a")
    mailbox.put_nowait("b")
    assert await take(mailbox, 2) == ["ctl", "b"]


# -- control lane ------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(OverflowPolicy))
async def test_control_lane_is_never_full(policy: OverflowPolicy) -> None:
    capacity = 3
    mailbox = make(capacity, policy)
    for i in range(capacity):
        mailbox.put_nowait(f"m{i}")
    controls = [f"c{i}" for i in range(10 * capacity)]
    for message in controls:
        assert mailbox.put_nowait(message, control=True) is True
    stats = mailbox.statistics()
    assert stats.queued == capacity
    assert stats.queued_control == 10 * capacity
    assert stats.rejected == 0
    assert stats.dropped == 0
    assert len(mailbox) == 11 * capacity
    # control first, in order; then the ordinary ones, in order
    assert await take(mailbox, 11 * capacity) == [*controls, "m0", "m1", "m2"]


async def test_control_message_overtakes_queued_ordinary_messages() -> None:
    mailbox = make(5)
    mailbox.put_nowait("a")
    mailbox.put_nowait("b")
    assert await mailbox.get() == "a"
    mailbox.put_nowait("stop", control=True)
    mailbox.put_nowait("c")
    assert await take(mailbox, 3) == ["stop", "b", "c"]


async def test_get_waits_for_a_message_and_wakes_on_put() -> None:
    mailbox = make()
    getter = await waiting_get(mailbox)
    mailbox.put_nowait("hello")
    assert await getter == "hello"


async def test_get_waiting_wakes_on_control_message() -> None:
    mailbox = make()
    getter = await waiting_get(mailbox)
    mailbox.put_nowait("ctl", control=True)
    assert await getter == "ctl"


# -- statistics ----------------------------------------------------------------------------------


async def test_statistics_fields() -> None:
    mailbox = make(2, OverflowPolicy.DROP_NEWEST)
    empty = mailbox.statistics()
    assert empty == MailboxStatistics(
        capacity=2,
        overflow_policy=OverflowPolicy.DROP_NEWEST,
        queued=0,
        queued_control=0,
        received=0,
        dropped=0,
        rejected=0,
    )
    mailbox.put_nowait("a")
    mailbox.put_nowait("b")
    mailbox.put_nowait("c")  # dropped
    mailbox.put_nowait("x", control=True)
    assert mailbox.statistics() == MailboxStatistics(
        capacity=2,
        overflow_policy=OverflowPolicy.DROP_NEWEST,
        queued=2,
        queued_control=1,
        received=3,
        dropped=1,
        rejected=0,
    )
    await take(mailbox, 2)
    after = mailbox.statistics()
    assert (after.queued, after.queued_control, after.received) == (1, 0, 3)


def test_statistics_is_a_frozen_snapshot() -> None:
    mailbox = make()
    snapshot = mailbox.statistics()
    mailbox.put_nowait("a")
    assert snapshot.queued == 0
    with pytest.raises(AttributeError):
        snapshot.queued = 5  # type: ignore[misc]


# -- closing -------------------------------------------------------------------------------------


async def test_close_then_get_drains_then_raises() -> None:
    mailbox = make()
    mailbox.put_nowait("a")
    mailbox.put_nowait("b")
    mailbox.put_nowait("ctl", control=True)
    mailbox.close()
    assert mailbox.closed
    assert await take(mailbox, 3) == ["ctl", "a", "b"]
    with pytest.raises(MailboxClosed):
        await mailbox.get()
    with pytest.raises(MailboxClosed):
        await mailbox.get()


async def test_put_after_close_raises_and_counts_nothing() -> None:
    mailbox = make()
    mailbox.close()
    with pytest.raises(MailboxClosed):
        mailbox.put_nowait("a")
    with pytest.raises(MailboxClosed):
        mailbox.put_nowait("ctl", control=True)
    stats = mailbox.statistics()
    assert (stats.received, stats.queued, stats.queued_control) == (0, 0, 0)


async def test_close_wakes_a_waiting_get() -> None:
    mailbox = make()
    getter = await waiting_get(mailbox)
    mailbox.close()
    with pytest.raises(MailboxClosed):
        await getter


async def test_cancelled_get_leaves_the_mailbox_usable() -> None:
    mailbox = make()
    getter = await waiting_get(mailbox)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    mailbox.put_nowait("a")
    assert await mailbox.get() == "a"


def test_drain_returns_control_first_and_empties() -> None:
    mailbox = make()
    mailbox.put_nowait("a")
    mailbox.put_nowait("ctl", control=True)
    mailbox.put_nowait("b")
    assert mailbox.drain() == ["ctl", "a", "b"]
    assert len(mailbox) == 0
    assert mailbox.drain() == []
