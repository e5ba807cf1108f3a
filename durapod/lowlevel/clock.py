"""Clocks: the system clock, and a fake one that tests advance by hand.

Everything in durapod that waits (restart backoff, retry timers, leases, schedules) waits on a
:class:`Clock`, so tests check exact delays without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "FakeClock", "SystemClock", "Timer"]


@runtime_checkable
class Timer(Protocol):
    """A callback scheduled by :meth:`Clock.call_later`; ``asyncio.TimerHandle`` is one."""

    def cancel(self) -> None:
        """Do not call the callback (if it has not been called yet)."""
        ...


@runtime_checkable
class Clock(Protocol):
    """What durapod needs of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def utcnow(self) -> datetime:
        """The wall-clock time, timezone-aware UTC."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` on the running event loop after ``delay`` seconds, without a task."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``datetime.now(UTC)`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        """Seconds from ``time.monotonic()``."""
        return time.monotonic()

    def utcnow(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)

    async def sleep(self, delay: float) -> None:
        """``asyncio.sleep(delay)``."""
        await asyncio.sleep(max(delay, 0.0))

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """``loop.call_later(delay, callback)`` on the running loop."""
        return asyncio.get_running_loop().call_later(max(delay, 0.0), callback)


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when a test calls :meth:`advance`.

    Every ``sleep`` request is recorded in :attr:`sleeps`, so tests can assert exact delays. Its time and
    every deadline are kept to the microsecond, the resolution of :meth:`utcnow`: sums of float delays
    (ten ticks of 0.1 s) do not drift, and a deadline computed from ``utcnow()`` is reached exactly by
    advancing to it.

    Example:
        >>> clock = FakeClock()
        >>> clock.monotonic()
        0.0
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._start.tzinfo is None:
            raise ValueError(f"FakeClock start must be timezone-aware, got {self._start!r}")
        self._now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None] | _FakeTimer]] = []
        self._order = itertools.count()
        self.sleeps: list[float] = []
        """Every delay passed to ``sleep``, in call order."""

    def monotonic(self) -> float:
        """Seconds advanced since the clock was made."""
        return self._now

    def utcnow(self) -> datetime:
        """The start time plus the seconds advanced, UTC."""
        return (self._start + timedelta(seconds=self._now)).astimezone(UTC)

    async def sleep(self, delay: float) -> None:
        """Wait until the clock has been advanced by ``delay`` seconds."""
        self.sleeps.append(delay)
        if delay <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._after(delay), next(self._order), future))
        await future

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` once the clock has been advanced by ``delay`` seconds (recorded in ``sleeps``)."""
        self.sleeps.append(delay)
        if delay <= 0:
            return asyncio.get_running_loop().call_soon(callback)
        timer = _FakeTimer(callback)
        heapq.heappush(self._sleepers, (self._after(delay), next(self._order), timer))
        return timer

    def _after(self, delay: float) -> float:
        return round(self._now + delay, 6)

    @property
    def pending(self) -> int:
        """How many sleeps and timers are waiting."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper whose deadline passes, in deadline order.

        After each wake-up the event loop runs what the wake-up made ready, so chains of sleeps
        (a restart that sleeps again) play out within one call.
        """
        if seconds < 0:
            raise ValueError(f"cannot advance a clock backwards ({seconds!r})")
        target = self._after(seconds)
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                if isinstance(future, _FakeTimer):
                    future.fire()
                else:
                    future.set_result(None)
            await _settle()
        self._now = target
        await _settle()


class _FakeTimer:
    __slots__ = ("_callback", "_done")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback: Callable[[], None] | None = callback
        self._done = False

    def done(self) -> bool:
        return self._done

    def cancel(self) -> None:
        self._done = True
        self._callback = None

    def fire(self) -> None:
        callback, self._callback = self._callback, None
        self._done = True
        if callback is not None:
            callback()


async def _settle(rounds: int = 20) -> None:
    # Several loop iterations: a woken task may await other ready futures before it sleeps again.
    for _ in range(rounds):
        await asyncio.sleep(0)
