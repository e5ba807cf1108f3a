"""A worker's wake-up timer: when the sleeping jobs of its agent wake, and claiming them then.

A sleeping job is in the store only: pending, with no owner and a lease that ends as it wakes, so that
any worker of the agent may claim it then. Each worker keeps one timer, on the earliest lease end it knows
of: of the jobs it put to sleep, and the store's next_wake (asked at start, at every lease renewal and
after each wake-up), so that a job wakes on time whichever worker put it to sleep.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Protocol

from durapod._log import Logger
from durapod.errors import StoreError
from durapod.lowlevel.clock import Clock, Timer
from durapod.stores.base import Store

__all__ = ["WakeUps", "WakeUpsOwner"]

#: A lease is free strictly after it ends; a sleeping job's ends a microsecond (the stores' resolution)
#: before it wakes. The timer fires 0.9 µs after the lease's end: a time that rounds to the wake time,
#: whatever float error the clock's arithmetic adds.
_WAKE_MARGIN = 0.9e-6


class WakeUpsOwner(Protocol):
    """What the wake-up timer needs of its worker."""

    store: Store
    clock: Clock
    name: str
    log: Logger

    @property
    def is_running(self) -> bool:
        """True while the worker takes jobs."""
        ...

    def capacity(self) -> int:
        """How many more jobs the worker may take now."""
        ...

    async def claim_orphans(self) -> int:
        """Claim and run the agent's due jobs, up to the free capacity. Returns how many."""
        ...


class WakeUps:
    """The worker's one wake-up timer and the task that claims the jobs that woke. Owned by the worker."""

    def __init__(self, owner: WakeUpsOwner) -> None:
        self.owner = owner
        #: the wake-up timer (see expect) and the lease end it was armed for; the task that claims the
        #: jobs that woke, whether a timer fired since that task last looked, and whether it found no
        #: free slot (max_concurrency): then the next actor to end looks again
        self._wakeup: tuple[datetime, Timer] | None = None
        self._waking: asyncio.Task[None] | None = None
        self._woken = False
        self._woken_while_full = False

    def expect(self, lease_end: datetime) -> None:
        """Arm the wake-up timer just after ``lease_end`` unless it is armed for an earlier time."""
        if not self.owner.is_running:
            return
        if self._wakeup is not None:
            if self._wakeup[0] <= lease_end:
                return
            self._wakeup[1].cancel()
        delay = max((lease_end - self.owner.clock.utcnow()).total_seconds(), 0.0) + _WAKE_MARGIN
        self._wakeup = (lease_end, self.owner.clock.call_later(delay, self._wake))

    def _wake(self) -> None:
        self._wakeup = None
        self._woken = True
        if self.owner.is_running and (self._waking is None or self._waking.done()):
            self._waking = asyncio.get_running_loop().create_task(self._claim_woken(), name="durapod-wake")

    async def _claim_woken(self) -> None:
        """Claim the agent's jobs that are due (those that woke among them) up to the free capacity, then
        arm the timer on the next one to wake."""
        owner = self.owner
        try:
            while self._woken and owner.is_running:
                self._woken = False
                while owner.is_running and await owner.claim_orphans() > 0:
                    pass
                self._woken_while_full = owner.capacity() == 0
                await self.watch()
        except StoreError as exc:  # the lease keeper's next claim takes them
            owner.log.warning("cannot claim the jobs that woke; will retry", error=repr(exc))

    async def watch(self) -> None:
        """Arm the wake-up timer on the next sleeping job of this agent in the store (any worker's)."""
        owner = self.owner
        if owner.is_running:
            lease_end = await owner.store.next_wake(owner.name, now=owner.clock.utcnow())
            if lease_end is not None:
                self.expect(lease_end)

    def slot_freed(self) -> None:
        """An actor ended: if jobs woke while every slot was taken, claim them now that one is free."""
        if self._woken_while_full and self.owner.is_running and self.owner.capacity() > 0:
            self._woken_while_full = False
            self._wake()  # jobs woke while every slot was taken: one is free now

    async def close(self) -> None:
        """Disarm the timer and stop the task claiming woken jobs (the worker is stopping)."""
        if self._wakeup is not None:
            self._wakeup[1].cancel()
            self._wakeup = None
        if self._waking is not None:
            self._waking.cancel()
            await asyncio.wait([self._waking])
