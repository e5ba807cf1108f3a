"""Mailbox: a bounded message queue with an explicit overflow policy and a control lane that is never full."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar, final

from durapod._util import NoPublicConstructor
from durapod.errors import MailboxFull

__all__ = ["Mailbox", "MailboxClosed", "MailboxStatistics", "OverflowPolicy"]

M = TypeVar("M")


class OverflowPolicy(StrEnum):
    """What a full mailbox does with one more ordinary message.

    Control messages never meet this policy: their lane has no bound.
    """

    REJECT = "reject"
    """Refuse it: ``tell`` raises :class:`~durapod.MailboxFull`."""
    DROP_NEWEST = "drop_newest"
    """Discard the new message; ``tell`` returns False."""
    DROP_OLDEST = "drop_oldest"
    """Discard the oldest queued ordinary message to make room."""


class MailboxClosed(Exception):
    """Raised by ``get`` on a closed, empty mailbox (internal: the actor loop ends on it)."""


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of a mailbox.

    Attributes:
        capacity: the bound of the ordinary lane.
        overflow_policy: what happens to a message past capacity.
        queued: ordinary messages waiting.
        queued_control: control messages waiting.
        received: messages accepted since the mailbox was made.
        dropped: messages discarded by ``drop_newest`` / ``drop_oldest``.
        rejected: messages refused by ``reject``.
    """

    capacity: int
    overflow_policy: OverflowPolicy
    queued: int
    queued_control: int
    received: int
    dropped: int
    rejected: int


@final
class Mailbox(Generic[M], metaclass=NoPublicConstructor):
    """An actor's mailbox: an ordinary lane of ``capacity`` messages and an unbounded control lane.

    ``get`` serves the control lane first, so pause, resume, cancel and stop overtake queued work.
    Made by the runtime only (``Mailbox._create``); users meet it through ``ActorRef.statistics()``.
    """

    __slots__ = (
        "_closed",
        "_control",
        "_dropped",
        "_normal",
        "_owner",
        "_received",
        "_rejected",
        "_waiter",
        "capacity",
        "overflow_policy",
    )

    def __init__(self, owner: str, capacity: int, overflow_policy: OverflowPolicy) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {capacity!r}")
        self._owner = owner
        self.capacity = capacity
        self.overflow_policy = OverflowPolicy(overflow_policy)
        self._normal: deque[M] = deque()
        self._control: deque[M] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._received = 0
        self._dropped = 0
        self._rejected = 0

    def put_nowait(self, message: M, *, control: bool = False) -> bool:
        """Queue ``message`` without blocking. Returns False if it was dropped.

        Raises:
            MailboxFull: the ordinary lane is full and the policy is ``reject``.
            MailboxClosed: the mailbox is closed.
        """
        if self._closed:
            raise MailboxClosed(self._owner)
        if control:
            self._control.append(message)
        elif len(self._normal) >= self.capacity:
            if self.overflow_policy is OverflowPolicy.REJECT:
                self._rejected += 1
                raise MailboxFull(self._owner, self.capacity)
            self._dropped += 1
            if self.overflow_policy is OverflowPolicy.DROP_NEWEST:
                return False
            self._normal.popleft()
            self._normal.append(message)
        else:
            self._normal.append(message)
        self._received += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def get(self) -> M:
        """The next message, control lane first; waits while both lanes are empty."""
        while True:
            if self._control:
                return self._control.popleft()
            if self._normal:
                return self._normal.popleft()
            if self._closed:
                raise MailboxClosed(self._owner)
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """Refuse new messages; ``get`` drains what is queued, then raises ``MailboxClosed``."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def drain(self) -> list[M]:
        """Remove and return every queued message, control lane first."""
        items: list[Any] = [*self._control, *self._normal]
        self._control.clear()
        self._normal.clear()
        return items

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._closed

    def __len__(self) -> int:
        return len(self._normal) + len(self._control)

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the mailbox's capacity, policy and counters."""
        return MailboxStatistics(
            capacity=self.capacity,
            overflow_policy=self.overflow_policy,
            queued=len(self._normal),
            queued_control=len(self._control),
            received=self._received,
            dropped=self._dropped,
            rejected=self._rejected,
        )
